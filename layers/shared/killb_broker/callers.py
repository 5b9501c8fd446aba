"""Who may call the broker: the IAM caller API Gateway vouched for, against ALLOWED_PRINCIPALS."""

from __future__ import annotations

import functools
from collections.abc import Sequence

from killb_broker.errors import CallerNotAllowed
from killb_broker.observability import logger


def _arn(arn: str, service: str) -> tuple[str, str, str] | None:
    """(partition, account, resource) of arn:PARTITION:SERVICE::ACCOUNT:RESOURCE, else None."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2:4] != [service, ""]:
        return None
    partition, account, resource = parts[1], parts[4], parts[5]
    return (partition, account, resource) if partition and account else None


def _role(arn: str) -> tuple[str, str, str] | None:
    """(partition, account, role name) of arn:PART:iam::ACCT:role/[path/]NAME, else None."""
    parsed = _arn(arn, "iam")
    if parsed is None:
        return None
    partition, account, resource = parsed
    kind, _, path_and_name = resource.partition("/")
    name = path_and_name.rsplit("/", 1)[-1]
    return (partition, account, name) if kind == "role" and name else None


def _assumed_role(arn: str) -> tuple[str, str, str] | None:
    """(partition, account, role name) of arn:PART:sts::ACCT:assumed-role/NAME/SESSION, or None."""
    parsed = _arn(arn, "sts")
    if parsed is None:
        return None
    partition, account, resource = parsed
    segments = resource.split("/")
    if len(segments) != 3 or segments[0] != "assumed-role" or not all(segments):
        return None
    return partition, account, segments[1]


def principal_matches(allowed: str, caller_arn: str) -> bool:
    """True when caller_arn is the allowed ARN, or a session of the allowed role.

    Assumed-role ARNs carry the role's name but not its path, so a role is matched by
    partition, account and name. Any other ARN (a user, a session) matches only itself.
    """
    if caller_arn == allowed:
        return True
    role = _role(allowed)
    return role is not None and role == _assumed_role(caller_arn)


class Callers:
    """The callers ALLOWED_PRINCIPALS admits (empty: every caller API Gateway let through)."""

    def __init__(
        self, allowed_principals: Sequence[str] = (), *, local_caller_arn: str | None = None
    ) -> None:
        self._allowed_principals = tuple(allowed_principals)
        self._local_caller_arn = local_caller_arn
        # A warm container sees the same few callers again and again: decide each once.
        self._admits = functools.lru_cache(maxsize=1024)(self._matches_allowed)

    def _matches_allowed(self, caller_arn: str) -> bool:
        return any(principal_matches(allowed, caller_arn) for allowed in self._allowed_principals)

    def identify(self, caller_arn: str | None) -> str | None:
        """The caller's ARN: API Gateway's, else (sam local only) LOCAL_CALLER_ARN's."""
        if caller_arn or not self._local_caller_arn:
            return caller_arn
        logger.warning(
            "no IAM caller identity in the event: sam local cannot emulate AWS_IAM, so the "
            "caller is taken from LOCAL_CALLER_ARN",
            extra={"caller_arn": self._local_caller_arn},
        )
        return self._local_caller_arn

    def admit(self, caller_arn: str | None) -> str:
        """The caller's ARN, if there is one and ALLOWED_PRINCIPALS admits it; else 403."""
        if not caller_arn:
            raise CallerNotAllowed("no IAM caller identity")
        if self._allowed_principals and not self._admits(caller_arn):
            raise CallerNotAllowed("caller not allowed")
        return caller_arn
