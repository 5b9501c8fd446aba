"""The broker's audit: one record of one shape for every outcome of every request, so that who
asked, who got which token (by fingerprint) and who was turned away read alike in the log."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from killb_broker.observability import LOGGED_NULL, logger

# The audit record's message. The template's metric filters count these lines: TokensIssued
# those whose outcome is "issued", the canary's broker-failure alarm those whose status is 500
# (never a 503: KillB or the schedule being late is not the broker's own failure).
AUDIT_MESSAGE = "broker audit"


class AuditOutcome(StrEnum):
    """What a request came to, as the audit names it; one per HTTP status the broker answers."""

    ISSUED = "issued"  # 200 with auth headers (or a health answer)
    REFUSED = "refused"  # 403: no IAM caller identity, or a caller not allowed
    UNAVAILABLE = "unavailable"  # 503 (no token lasts minTtl now), or 500
    INVALID = "invalid"  # 400, 404, 405: a request the API does not accept

    @classmethod
    def of(cls, status: int) -> AuditOutcome:
        if status < 400:
            return cls.ISSUED
        if status == 403:
            return cls.REFUSED
        if status >= 500:
            return cls.UNAVAILABLE
        return cls.INVALID


@dataclass(slots=True)
class AuditRecord:
    """What is known of one request so far; logged once, when its answer is known."""

    route: str | None = None
    source_ip: str | None = None
    caller_arn: str | None = None
    min_ttl: int | None = None
    rejected_fingerprint: str | None = None
    token_fingerprint: str | None = None
    expires_at: str | None = None

    def log(self, status: int, reason: str) -> None:
        """The record, with the HTTP status answered, its outcome and a short reason that holds
        no secret. Every key is in every record, null where there is nothing to say."""
        outcome = AuditOutcome.of(status)
        log = (
            logger.info
            if outcome is AuditOutcome.ISSUED or outcome is AuditOutcome.INVALID
            else logger.warning
        )
        log(
            AUDIT_MESSAGE,
            extra={
                "outcome": outcome,  # a str: logged as its value
                "status": status,
                "caller_arn": _nullable(self.caller_arn),
                "source_ip": _nullable(self.source_ip),
                "route": _nullable(self.route),
                "min_ttl": _nullable(self.min_ttl),
                "token_fingerprint": _nullable(self.token_fingerprint),
                "rejected_fingerprint": _nullable(self.rejected_fingerprint),
                "expires_at": _nullable(self.expires_at),
                "reason": reason,
            },
        )


def _nullable(value: object) -> object:
    return LOGGED_NULL if value is None else value
