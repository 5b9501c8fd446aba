"""Settings of each function, parsed once at cold start from its environment variables.

A missing or malformed variable raises ConfigurationError naming it; logic code never reads
os.environ. Plain dataclasses: no validation library, to keep the cold start short.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from killb_broker.errors import ConfigurationError

LOOPBACK_NAMES = frozenset({"localhost"})
# The host machine as Docker Desktop (and `--add-host host.docker.internal:host-gateway`) names
# it from inside a container: where a local KillB listens when `sam local` runs the functions.
DOCKER_HOST_NAME = "host.docker.internal"
DEFAULT_STACK_NAME = "killb-broker"
STACK_NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,127}")
# An AWS region name: us-east-1, eu-west-1, ap-southeast-2, us-gov-west-1, cn-north-1.
REGION_PATTERN = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d+")


def is_sam_local(environ: Mapping[str, str]) -> bool:
    """True only inside SAM CLI's containers: SAM sets AWS_SAM_LOCAL=true there, Lambda never."""
    return environ.get("AWS_SAM_LOCAL") == "true"


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def secure_base_url(url: str, *, allow_docker_host: bool = False) -> str:
    """The KillB API root without a trailing slash; https only, except to a loopback host (and,
    with allow_docker_host, to http://host.docker.internal:PORT).

    No message quotes the URL: one with user info (http://me:pw@host) holds a password.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ValueError("must be an absolute https:// URL") from None
    # Checked first, so that whatever else is wrong, the answer is "no user info" and nothing
    # of the URL is shown back.
    if "@" in parts.netloc:
        raise ValueError("must not carry user info (user:password@); put no secret in a URL")
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise ValueError("must be an absolute https:// URL")
    docker_host = allow_docker_host and parts.hostname == DOCKER_HOST_NAME and port is not None
    if parts.scheme == "http" and not (is_loopback(parts.hostname) or docker_host):
        raise ValueError("must use https:// (plain http is allowed only to a loopback host)")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query or a fragment")
    return url.strip().rstrip("/")


def is_iam_arn(arn: str) -> bool:
    """arn:PARTITION:iam|sts::ACCOUNT:RESOURCE: the shape of an IAM caller's ARN."""
    parts = arn.split(":", 5)
    return (
        len(parts) == 6
        and parts[0] == "arn"
        and bool(parts[1])
        and parts[2] in {"iam", "sts"}
        and parts[3] == ""
        and parts[4].isdigit()
        and bool(parts[5])
    )


# A function name, with an optional version or alias, or a function ARN (a replica stack's broker
# names the primary's refresher by its ARN, in another region).
_FUNCTION_NAME = r"[A-Za-z0-9_-]{1,64}(?::(?:\$LATEST|[A-Za-z0-9_-]{1,128}))?"
_FUNCTION = re.compile(
    rf"(?:arn:aws[a-z-]*:lambda:(?P<region>{REGION_PATTERN.pattern}):\d{{12}}:function:)?"
    rf"{_FUNCTION_NAME}"
)


def function_region(function: str) -> str | None:
    """The region of a Lambda function ARN; None for a plain name (the function's own region).
    ValueError for anything that is neither."""
    match = _FUNCTION.fullmatch(function)
    if match is None:
        raise ValueError(
            "must be a Lambda function name or a function ARN "
            "(arn:aws:lambda:REGION:ACCOUNT:function:NAME)"
        )
    return match["region"]


def _required(environ: Mapping[str, str], name: str) -> str:
    value = environ.get(name, "").strip()
    if not value:
        raise ConfigurationError(name, "is required but not set")
    return value


def _seconds(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(name, "must be a whole number of seconds") from None
    if not low <= value <= high:
        raise ConfigurationError(name, f"must be between {low} and {high}")
    return value


@dataclass(frozen=True, slots=True)
class RefresherConfig:
    killb_base_url: str
    credentials_secret_id: str
    session_secret_id: str
    access_token_secret_id: str
    refresh_window_seconds: int
    login_backoff_seconds: int
    killb_timeout_seconds: int
    # How long a token may go without KillB confirming it (GET /api/v2/auth/me); 0: never asked.
    token_check_seconds: int = 1800
    # The stack's name, in the detail of every event the refresher puts on EventBridge.
    stack_name: str = DEFAULT_STACK_NAME
    # The regions the secrets replicate to (a primary stack's ReplicaRegions): before it calls
    # KillB, the refresher checks that none of them was promoted to primary.
    replica_regions: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> RefresherConfig:
        try:
            base_url = secure_base_url(
                _required(environ, "KILLB_BASE_URL"), allow_docker_host=is_sam_local(environ)
            )
        except ValueError as error:
            raise ConfigurationError("KILLB_BASE_URL", str(error)) from None
        return cls(
            killb_base_url=base_url,
            credentials_secret_id=_required(environ, "CREDENTIALS_SECRET_ID"),
            session_secret_id=_required(environ, "SESSION_SECRET_ID"),
            access_token_secret_id=_required(environ, "ACCESS_TOKEN_SECRET_ID"),
            # A token lives 3600 s: a window of 3600 or more would refresh on every run.
            refresh_window_seconds=_seconds(environ, "REFRESH_WINDOW_SECONDS", 1800, 60, 3300),
            login_backoff_seconds=_seconds(environ, "LOGIN_BACKOFF_SECONDS", 900, 0, 86400),
            killb_timeout_seconds=_seconds(environ, "KILLB_TIMEOUT_SECONDS", 10, 1, 60),
            token_check_seconds=_seconds(environ, "TOKEN_CHECK_SECONDS", 1800, 0, 86400),
            stack_name=_stack_name(environ),
            replica_regions=_regions(environ, "REPLICA_REGIONS"),
        )


def _regions(environ: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list of AWS region names (us-east-1, eu-west-1, ...); empty: none."""
    regions = tuple(part.strip() for part in environ.get(name, "").split(",") if part.strip())
    for region in regions:
        if not REGION_PATTERN.fullmatch(region):
            raise ConfigurationError(name, "must be comma-separated AWS region names")
    return regions


def _stack_name(environ: Mapping[str, str]) -> str:
    """STACK_NAME as CloudFormation allows it: a letter, then letters, digits and hyphens."""
    value = environ.get("STACK_NAME", "").strip()
    if not value:
        return DEFAULT_STACK_NAME
    if not STACK_NAME_PATTERN.fullmatch(value):
        raise ConfigurationError(
            "STACK_NAME", "must be a stack name: a letter, then letters, digits or hyphens"
        )
    return value


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    access_token_secret_id: str
    # A name or an ARN; unset: no on-demand refresh.
    refresher_function_name: str | None = None
    # The refresher's region when REFRESHER_FUNCTION_NAME is an ARN (maybe another region's).
    refresher_region: str | None = None
    allowed_principals: tuple[str, ...] = ()
    # The caller's identity for requests that carry none: `sam local start-api` cannot emulate
    # AWS_IAM. Only ever set under sam local (AWS_SAM_LOCAL=true), never where Lambda runs.
    local_caller_arn: str | None = None
    # Variables that are set but have no effect here (named in one warning at cold start).
    ignored_variables: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> BrokerConfig:
        principals = tuple(
            arn.strip() for arn in environ.get("ALLOWED_PRINCIPALS", "").split(",") if arn.strip()
        )
        for arn in principals:
            if not arn.startswith("arn:") or arn.count(":") < 5:
                raise ConfigurationError("ALLOWED_PRINCIPALS", "must be comma-separated IAM ARNs")
        local_caller_arn = environ.get("LOCAL_CALLER_ARN", "").strip() or None
        ignored: tuple[str, ...] = ()
        if local_caller_arn is not None and not is_sam_local(environ):
            # Nothing deployed may be made to accept an unsigned caller by a setting.
            local_caller_arn, ignored = None, ("LOCAL_CALLER_ARN",)
        if local_caller_arn is not None and not is_iam_arn(local_caller_arn):
            raise ConfigurationError(
                "LOCAL_CALLER_ARN",
                "must be an IAM ARN (arn:aws:iam::ACCOUNT:... or arn:aws:sts::...)",
            )
        refresher = environ.get("REFRESHER_FUNCTION_NAME", "").strip() or None
        try:
            refresher_region = function_region(refresher) if refresher else None
        except ValueError as error:
            raise ConfigurationError("REFRESHER_FUNCTION_NAME", str(error)) from None
        return cls(
            access_token_secret_id=_required(environ, "ACCESS_TOKEN_SECRET_ID"),
            refresher_function_name=refresher,
            refresher_region=refresher_region,
            allowed_principals=principals,
            local_caller_arn=local_caller_arn,
            ignored_variables=ignored,
        )

    @classmethod
    def at_cold_start(cls, environ: Mapping[str, str]) -> BrokerConfig:
        """from_env, with the cold start's log lines: one error naming a missing or malformed
        variable (then the ConfigurationError stops the function), one warning for each
        variable that is set but ignored."""
        # Imported here, not with the module: reading settings must not create the functions'
        # Logger (tools that only parse a URL, as the local servers do, would fix its service
        # name and output before the functions' environment is set).
        from killb_broker.observability import logger  # noqa: PLC0415

        try:
            config = cls.from_env(environ)
        except ConfigurationError as error:
            logger.error(
                f"broker configuration is invalid: {error}", extra={"variable": error.variable}
            )
            raise
        for variable in config.ignored_variables:
            logger.warning(
                f"{variable} is set but ignored: it applies only under sam local "
                "(AWS_SAM_LOCAL=true)",
                extra={"variable": variable},
            )
        return config
