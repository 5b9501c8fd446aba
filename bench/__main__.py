"""`python -m bench` (`make bench`): every figure of issue 7, one after another."""

from bench import (
    p1_warm_request,
    p2_cold_import,
    p3_secret_reads,
    p4_killb_calls,
    p5_layer_size,
    simulation,
)

for benchmark in (
    p1_warm_request,
    p2_cold_import,
    p3_secret_reads,
    p4_killb_calls,
    p5_layer_size,
    simulation,
):
    print(f"== {benchmark.__name__}", flush=True)
    benchmark.main()
