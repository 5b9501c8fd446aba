"""`python -m bench` (`make bench`): every benchmark figure (P1-P5, then the simulated week), one
after another; docs/benchmarks.md says what each measures and its goal."""

import importlib

for name in (
    "p1_warm_request",
    "p2_cold_import",
    "p3_secret_reads",
    "p4_killb_calls",
    "p5_layer_size",
    "p8_proxy_overhead",
    "p9_adapter_overhead",
    "simulation",
):
    print(f"== bench.{name}", flush=True)
    importlib.import_module(f"bench.{name}").main()
