"""What the Lambda runtime does for a handler, for the demo, the benchmarks and the tests: import
functions/<name>/app.py as a cold start would, and pass a context with what Powertools reads."""

from __future__ import annotations

import importlib.util
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

FUNCTIONS = Path(__file__).resolve().parent.parent / "functions"
# The one account id and region of everything local: the demo, `make local`, the tests.
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"


def load_function(name: str) -> ModuleType:
    """Import functions/<name>/app.py afresh (both are named app.py, so each gets its own module
    name); its configuration is read at import, so set its environment variables first."""
    module_name = f"{name}_app"
    sys.modules.pop(module_name, None)
    spec = importlib.util.spec_from_file_location(module_name, FUNCTIONS / name / "app.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load functions/{name}/app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class LambdaContext:
    """The attributes of a Lambda context that Powertools reads; a new request id each time."""

    function_name: str = "local-function"
    remaining_ms: int = 60_000
    memory_limit_in_mb: int = 256
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms
