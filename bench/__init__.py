"""Benchmarks (`make bench`, described in docs/benchmarks.md): each module measures one figure,
both sides of a ratio side by side in one run, and prints the figure on its last line."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The same import roots as the tests (pyproject's pythonpath): the layer, the caller client, the
# local stand-ins.
for folder in (ROOT / "local", ROOT / "layers" / "shared", ROOT / "clients" / "python", ROOT):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
# The shared Logger and Metrics read these when first imported.
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "killb-credential-broker")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "KillBCredentialBroker")
