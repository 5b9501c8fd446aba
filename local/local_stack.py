"""The whole stack on this machine, built once for whoever needs it: `make demo`, `make local`,
the TypeScript client's test launcher and the tests that want the world as deployed.

`with LocalStack() as stack:` starts, on loopback:
- Secrets Manager: moto's server (ThreadedMotoServer), also answering every other AWS call;
- KillB: the local sandbox with its one account (or a real KillB, given its URL and credentials);
- the stack's three secrets, the credentials put as an operator would;
- the refresher (functions/refresher/app.py, loaded as a cold start would, its settings from the
  environment only) behind a local Lambda endpoint (local/lambda_endpoint.py), run once;
- the broker (functions/broker/app.py, likewise) behind the local API Gateway
  (local/broker_server.py), which checks every caller's SigV4 signature; its
  REFRESHER_FUNCTION_NAME resolves through that Lambda endpoint (AWS_ENDPOINT_URL_LAMBDA);
- optionally, the refresher's schedule: a thread invoking it every `schedule_seconds`.

The functions' settings are this process's environment, as in Lambda: the stack sets them on the
way in and puts back what was there on the way out.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import boto3
import requests
from botocore.config import Config
from botocore.credentials import ReadOnlyCredentials
from botocore.exceptions import ClientError
from broker_server import BrokerServer, environment_credentials, serve_broker
from lambda_endpoint import LambdaEndpoint
from lambda_runtime import ACCOUNT_ID, REGION, load_function
from moto.server import ThreadedMotoServer

from killb_sandbox.accounts import SANDBOX_API_KEY, SANDBOX_EMAIL, SANDBOX_PASSWORD
from killb_sandbox.server import Account, KillBSandbox

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
STACK_NAME = "killb-local"
LOOPBACK = "127.0.0.1"
CALLER_ARN = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/payments-api/local"
# The credentials `make local` and the demo sign with when the environment has none.
LOCAL_AWS_CREDENTIALS = ReadOnlyCredentials("local", "local", None)
SECRET_NAMES = {
    "CREDENTIALS_SECRET_ID": "credentials",
    "SESSION_SECRET_ID": "session",
    "ACCESS_TOKEN_SECRET_ID": "access-token",
}
# The keys Powertools' inject_lambda_context adds to every record of a function's run.
CONTEXT_LOG_KEYS = ("function_name", "function_memory_size", "function_arn", "function_request_id")


class StackFailed(Exception):
    """The stack could not start; the message says which part and why, in one line."""


@dataclass(frozen=True)
class KillBAccount:
    """Where KillB is and the credentials the stack's credentials secret holds."""

    base_url: str
    email: str
    password: str
    api_key: str | None = None

    def secret_string(self) -> str:
        value = {"email": self.email, "password": self.password}
        if self.api_key:
            value["apiKey"] = self.api_key
        return json.dumps(value)


def load_event(name: str) -> dict[str, Any]:
    """One of the JSON files in events/ (the same ones `sam local invoke -e` takes)."""
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
        return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def _as_function(handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """A handler run as in its own Lambda container: its log records carry its own context's
    function name, not the keys another function run in this process left on the shared Logger."""
    from killb_broker.observability import logger  # noqa: PLC0415 - the layer's, once on the path

    def run(event: Any, context: Any) -> Any:
        logger.thread_safe_append_keys(
            function_name=context.function_name,
            function_memory_size=context.memory_limit_in_mb,
            function_arn=context.invoked_function_arn,
            function_request_id=context.aws_request_id,
        )
        try:
            return handler(event, context)
        finally:
            logger.thread_safe_remove_keys(CONTEXT_LOG_KEYS)

    return run


class LocalStack:
    """The stack on loopback; a context manager. Ports 0 are picked free; a given port that is
    taken stops the start with StackFailed naming it (nothing is written to what listens there).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        secretsmanager_port: int = 0,
        killb_port: int = 0,
        lambda_port: int = 0,
        broker_port: int = 0,
        stack_name: str = STACK_NAME,
        killb: KillBAccount | None = None,
        sandbox_accounts: dict[str, Account] | None = None,
        token_lifetime_ms: int = 3_600_000,
        caller_arn: str = CALLER_ARN,
        allowed_principals: str = "",
        invoke_refresher: bool = True,
        schedule_seconds: float | None = None,
        on_scheduled_run: Callable[[dict[str, Any]], None] | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.host = host
        # What `sam local` containers reach (moto, the sandbox) listens on `host`; what only this
        # machine's callers reach (the Lambda endpoint, the API) stays on loopback.
        self._ports = {
            "Secrets Manager (moto server)": (host, secretsmanager_port),
            "KillB sandbox": (host, killb_port if killb is None else 0),
            "Lambda endpoint": (LOOPBACK, lambda_port),
            "broker (local API Gateway)": (LOOPBACK, broker_port),
        }
        self.stack_name = stack_name
        self.refresher_name = f"{stack_name}-refresher"
        self.broker_name = f"{stack_name}-broker"
        # killb-local/credentials, killb-local/session, killb-local/access-token
        self.secret_ids = {
            variable: f"{stack_name}/{SECRET_NAMES[variable]}" for variable in SECRET_NAMES
        }
        self._killb = killb
        self._sandbox_accounts = sandbox_accounts
        self._token_lifetime_ms = token_lifetime_ms
        self.caller_arn = caller_arn
        self._allowed_principals = allowed_principals
        self._invoke_refresher = invoke_refresher
        self._schedule_seconds = schedule_seconds
        self._on_scheduled_run = on_scheduled_run
        self._settings = dict(settings or {})
        self._saved_environment: dict[str, str | None] = {}
        self._exit = contextlib.ExitStack()
        self._stopping = threading.Event()
        self.sandbox: KillBSandbox | None = None
        self.first_run: dict[str, Any] = {}

    # Life cycle

    def __enter__(self) -> Self:
        try:
            self._start()
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop()

    def _start(self) -> None:
        ports = self._claim_ports()
        self.aws_credentials = self._aws_credentials()
        moto_port = ports["Secrets Manager (moto server)"]
        # moto's server logs each request it answers on stderr; its answers are no news here.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        moto = ThreadedMotoServer(ip_address=self.host, port=moto_port, verbose=False)
        moto.start()
        self._exit.callback(moto.stop)
        self.secretsmanager_url = f"http://{self.host}:{moto_port}"
        self._exit.callback(self._reset_moto)
        self.killb = self._killb or self._start_sandbox(ports["KillB sandbox"])
        self._set_environment(self._function_environment())
        self._create_secrets()
        refresher = _as_function(load_function("refresher").lambda_handler)
        self.lambda_endpoint = LambdaEndpoint(
            {self.refresher_name: refresher}, host=LOOPBACK, port=ports["Lambda endpoint"]
        )
        self._exit.callback(self.lambda_endpoint.stop)
        self._set_environment({"AWS_ENDPOINT_URL_LAMBDA": self.lambda_endpoint.base_url})
        self.first_run = self.invoke_refresher(load_event("refresher-scheduled.json"))
        broker = _as_function(load_function("broker").lambda_handler)
        self.api: BrokerServer = serve_broker(
            broker,
            host=LOOPBACK,
            port=ports["broker (local API Gateway)"],
            caller_arn=self.caller_arn,
            account_id=ACCOUNT_ID,
            credentials=self.aws_credentials,
            region=REGION,
            function_name=self.broker_name,
        )
        self._exit.callback(self.api.stop)
        if self._schedule_seconds:
            schedule = threading.Thread(
                target=self._schedule, args=(self._schedule_seconds,), name="refresher-schedule"
            )
            schedule.daemon = True
            schedule.start()
            self._exit.callback(schedule.join, 5)
            self._exit.callback(self._stopping.set)

    def _stop(self) -> None:
        try:
            self._exit.close()
        finally:
            for name, value in self._saved_environment.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            self._saved_environment.clear()

    def _claim_ports(self) -> dict[str, int]:
        """Each given port checked free before anything starts; each 0 replaced by a free one."""
        claimed = {}
        for what, (host, port) in self._ports.items():
            if port and not port_is_free(host, port):
                raise StackFailed(
                    f"port {port} ({what}) on {host} is taken: another `make local`, or "
                    "another program, listens there; stop it or choose another port"
                )
            claimed[what] = port or free_port(host)
        return claimed

    def _aws_credentials(self) -> ReadOnlyCredentials:
        """The environment's credentials (the tests', a developer's), else local ones: the
        functions use them against moto, and callers sign with them for the local API."""
        with contextlib.suppress(ValueError):
            if os.environ.get("AWS_ACCESS_KEY_ID"):
                return environment_credentials()
        self._set_environment(
            {
                "AWS_ACCESS_KEY_ID": LOCAL_AWS_CREDENTIALS.access_key,
                "AWS_SECRET_ACCESS_KEY": LOCAL_AWS_CREDENTIALS.secret_key,
                "AWS_SESSION_TOKEN": None,
            }
        )
        return LOCAL_AWS_CREDENTIALS

    def _start_sandbox(self, port: int) -> KillBAccount:
        accounts = self._sandbox_accounts or {
            SANDBOX_EMAIL: Account(password=SANDBOX_PASSWORD, api_key=SANDBOX_API_KEY)
        }
        self.sandbox = KillBSandbox(accounts, token_lifetime_ms=self._token_lifetime_ms)
        # Beyond loopback only when asked for (the Docker bridge, for `sam local` on Linux).
        self.sandbox.start(self.host, port, allow_non_loopback=True)
        self._exit.callback(self.sandbox.stop)
        email, account = next(iter(accounts.items()))
        return KillBAccount(self.sandbox.base_url, email, account.password, account.api_key)

    def _function_environment(self) -> dict[str, str | None]:
        """Both functions' settings, as the template sets them, every AWS endpoint local."""
        return {
            "AWS_PROFILE": None,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            # Every AWS call (EventBridge's too) goes to moto; Lambda's to the local endpoint.
            "AWS_ENDPOINT_URL": self.secretsmanager_url,
            "AWS_ENDPOINT_URL_SECRETSMANAGER": self.secretsmanager_url,
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": None,
            "AWS_ENDPOINT_URL_LAMBDA": None,
            "POWERTOOLS_SERVICE_NAME": self.stack_name,  # as the template's Globals set it
            "POWERTOOLS_METRICS_NAMESPACE": "KillBCredentialBroker",
            "STACK_NAME": self.stack_name,
            "KILLB_BASE_URL": self.killb.base_url,
            **self.secret_ids,
            "REFRESHER_FUNCTION_NAME": self.refresher_name if self._invoke_refresher else "",
            "ALLOWED_PRINCIPALS": self._allowed_principals,
            **self._settings,
        }

    def _set_environment(self, values: Mapping[str, str | None]) -> None:
        for name, value in values.items():
            self._saved_environment.setdefault(name, os.environ.get(name))
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

    def _create_secrets(self) -> None:
        secrets = self.secretsmanager()
        initial = {"CREDENTIALS_SECRET_ID": self.killb.secret_string()}
        for variable, name in self.secret_ids.items():
            secrets.create_secret(Name=name, SecretString=initial.get(variable, "{}"))

    def _reset_moto(self) -> None:
        """moto's server keeps its state in this process: leave none for the next stack."""
        with contextlib.suppress(requests.RequestException):
            requests.post(f"{self.secretsmanager_url}/moto-api/reset", timeout=5)

    def _schedule(self, every: float) -> None:
        scheduled = load_event("refresher-scheduled.json")
        while not self._stopping.wait(every):
            try:
                summary = self.invoke_refresher(scheduled)
            except ClientError as error:  # throttled: a forced run is under way, as in Lambda
                summary = {"action": "skipped", "reason": error.response["Error"]["Code"]}
            if self._on_scheduled_run is not None:
                self._on_scheduled_run(summary)

    # What a user of the stack calls

    @property
    def broker_url(self) -> str:
        return self.api.base_url

    @property
    def lambda_url(self) -> str:
        return self.lambda_endpoint.base_url

    def secretsmanager(self) -> Any:
        return boto3.client("secretsmanager", endpoint_url=self.secretsmanager_url)

    def invoke_refresher(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Run the refresher through the Lambda endpoint, as EventBridge or the broker does."""
        client = boto3.client(
            "lambda",
            endpoint_url=self.lambda_url,
            config=Config(retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=90),
        )
        answer = client.invoke(FunctionName=self.refresher_name, Payload=json.dumps(event).encode())
        summary: dict[str, Any] = json.loads(answer["Payload"].read())
        return summary

    def refresher_payloads(self) -> list[Any]:
        """The payload of every refresher run the endpoint answered (the first one included)."""
        return self.lambda_endpoint.payloads(self.refresher_name)

    def caller_environment(self) -> dict[str, str]:
        """What a caller on this machine needs: credentials to sign with, the region, the URL."""
        environment = {
            "AWS_ACCESS_KEY_ID": str(self.aws_credentials.access_key),
            "AWS_SECRET_ACCESS_KEY": str(self.aws_credentials.secret_key),
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "KILLB_BROKER_URL": self.broker_url,
        }
        if self.aws_credentials.token:
            environment["AWS_SESSION_TOKEN"] = self.aws_credentials.token
        return environment
