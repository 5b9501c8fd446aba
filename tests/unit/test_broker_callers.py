"""Who may call the broker: ALLOWED_PRINCIPALS against the caller's IAM ARN (no AWS, no network)."""

from __future__ import annotations

import pytest

from killb_broker.audit import AuditRecord
from killb_broker.broker import Broker
from killb_broker.callers import Callers, principal_matches
from killb_broker.errors import CallerNotAllowed
from killb_broker.token_source import TokenSource

ROLE = "arn:aws:iam::123456789012:role/payments-api"
ROLE_WITH_PATH = "arn:aws:iam::123456789012:role/service-role/payments-api"
SESSION = "arn:aws:sts::123456789012:assumed-role/payments-api/i-0abc"
USER = "arn:aws:iam::123456789012:user/ops-alice"


class NoSecrets:
    """A secret reader that must not be reached: the caller check comes first."""

    def get_secret_value(self, *, SecretId: str) -> dict[str, str]:  # noqa: N803
        raise AssertionError("the secret was read before the caller was checked")


def broker_allowing(*principals: str) -> Broker:
    return Broker(TokenSource(NoSecrets(), "access-token"), Callers(principals))


def test_role_arn_matches_its_assumed_role_sessions() -> None:
    # Given a role ARN / When a session of that role calls / Then it matches
    assert principal_matches(ROLE, SESSION)


def test_role_arn_with_a_path_matches_its_sessions() -> None:
    # Assumed-role ARNs carry the role's name, never its path.
    assert principal_matches(ROLE_WITH_PATH, SESSION)


def test_caller_arn_matches_itself_exactly() -> None:
    assert principal_matches(SESSION, SESSION)


def test_session_arn_does_not_match_another_session_of_the_same_role() -> None:
    other = "arn:aws:sts::123456789012:assumed-role/payments-api/i-0def"
    assert not principal_matches(SESSION, other)


def test_role_arn_does_not_match_a_session_of_another_role() -> None:
    assert not principal_matches(ROLE, "arn:aws:sts::123456789012:assumed-role/ledger/i-0abc")


def test_role_arn_does_not_match_a_role_of_the_same_name_in_another_account() -> None:
    assert not principal_matches(ROLE, "arn:aws:sts::210987654321:assumed-role/payments-api/i-0abc")


def test_role_arn_does_not_match_a_session_in_another_partition() -> None:
    assert not principal_matches(ROLE, "arn:aws-cn:sts::123456789012:assumed-role/payments-api/s")


def test_role_arn_matches_sessions_within_its_own_partition() -> None:
    role = "arn:aws-us-gov:iam::123456789012:role/payments-api"
    assert principal_matches(role, "arn:aws-us-gov:sts::123456789012:assumed-role/payments-api/s")


def test_role_name_matching_is_case_sensitive() -> None:
    assert not principal_matches(ROLE, "arn:aws:sts::123456789012:assumed-role/Payments-API/i-0abc")


def test_user_arn_matches_only_itself() -> None:
    assert principal_matches(USER, USER)
    assert not principal_matches(USER, "arn:aws:sts::123456789012:assumed-role/ops-alice/s")


def test_role_arn_does_not_match_the_role_arn_prefix_of_a_longer_name() -> None:
    assert not principal_matches(ROLE, "arn:aws:sts::123456789012:assumed-role/payments-api-v2/s")


def test_malformed_session_arn_matches_nothing() -> None:
    assert not principal_matches(ROLE, "arn:aws:sts::123456789012:assumed-role/payments-api")
    assert not principal_matches(ROLE, "arn:aws:sts::123456789012:assumed-role/payments-api/a/b")


def test_no_allowed_principals_admits_every_caller_api_gateway_let_through() -> None:
    assert broker_allowing().callers.admit(USER) == USER


def test_caller_named_through_its_role_is_admitted() -> None:
    assert broker_allowing(USER, ROLE_WITH_PATH).callers.admit(SESSION) == SESSION


def test_caller_not_in_allowed_principals_is_refused() -> None:
    with pytest.raises(CallerNotAllowed, match="not allowed"):
        broker_allowing(ROLE).callers.admit(USER)


@pytest.mark.parametrize("caller_arn", [None, ""])
def test_request_without_iam_identity_is_refused_even_when_everyone_is_allowed(
    caller_arn: str | None,
) -> None:
    with pytest.raises(CallerNotAllowed, match="no IAM caller identity"):
        broker_allowing().callers.admit(caller_arn)


def test_refused_caller_gets_no_token_read() -> None:
    # Given a broker whose secret must not be touched / When a stranger asks / Then 403 first
    audit = AuditRecord()
    with pytest.raises(CallerNotAllowed):
        broker_allowing(ROLE).auth_headers(USER, {}, audit)
    assert audit.caller_arn == USER


def test_refused_caller_gets_no_health_read() -> None:
    with pytest.raises(CallerNotAllowed):
        broker_allowing(ROLE).health(USER, AuditRecord())


def test_local_caller_stands_in_only_for_a_request_without_identity() -> None:
    callers = Callers((ROLE,), local_caller_arn=SESSION)
    assert callers.identify(None) == SESSION
    assert callers.identify("") == SESSION
    assert callers.identify(USER) == USER


def test_without_a_local_caller_a_request_without_identity_stays_without() -> None:
    assert Callers((ROLE,)).identify(None) is None
