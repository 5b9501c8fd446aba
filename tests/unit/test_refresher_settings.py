"""The refresher's settings of the third round: TOKEN_CHECK_SECONDS and STACK_NAME, parsed once at
cold start like the others, a malformed value failing by name (docs/spec.md, "Settings")."""

from __future__ import annotations

import pytest

from killb_broker.config import RefresherConfig
from killb_broker.errors import ConfigurationError

REQUIRED = {
    "KILLB_BASE_URL": "https://killb.app",
    "CREDENTIALS_SECRET_ID": "killb/credentials",
    "SESSION_SECRET_ID": "killb/session",
    "ACCESS_TOKEN_SECRET_ID": "killb/access-token",
}


def config(**extra: str) -> RefresherConfig:
    return RefresherConfig.from_env({**REQUIRED, **extra})


def test_unset_the_token_check_runs_every_1800_s_for_stack_killb_broker() -> None:
    # Given only the required settings, When they are read
    settings = config()

    # Then the defaults of docs/spec.md hold
    assert (settings.token_check_seconds, settings.stack_name) == (1800, "killb-broker")


@pytest.mark.parametrize(("raw", "seconds"), [("0", 0), ("600", 600), (" 86400 ", 86400)])
def test_token_check_seconds_is_whole_seconds_and_0_turns_it_off(raw: str, seconds: int) -> None:
    assert config(TOKEN_CHECK_SECONDS=raw).token_check_seconds == seconds


@pytest.mark.parametrize("raw", ["-1", "1.5", "soon", "86401", "1e3"])
def test_a_malformed_token_check_seconds_fails_naming_it(raw: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        config(TOKEN_CHECK_SECONDS=raw)
    assert raised.value.variable == "TOKEN_CHECK_SECONDS"


def test_stack_name_is_taken_as_set() -> None:
    assert config(STACK_NAME="killb-broker-sandbox").stack_name == "killb-broker-sandbox"


@pytest.mark.parametrize("raw", ["9lives", "killb broker", "killb_broker", "a" * 129, '"x"'])
def test_a_malformed_stack_name_fails_naming_it(raw: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        config(STACK_NAME=raw)
    assert raised.value.variable == "STACK_NAME"


@pytest.mark.parametrize(
    ("raw", "regions"),
    [
        ("", ()),
        ("eu-west-1", ("eu-west-1",)),
        (" eu-west-1, ap-southeast-2 ", ("eu-west-1", "ap-southeast-2")),
    ],
)
def test_replica_regions_are_a_comma_separated_list_of_region_names(
    raw: str, regions: tuple[str, ...]
) -> None:
    assert config(REPLICA_REGIONS=raw).replica_regions == regions


@pytest.mark.parametrize(
    "raw", ["Europe", "eu-west-1;us-east-1", "arn:aws:secretsmanager:eu-west-1"]
)
def test_a_malformed_replica_regions_fails_naming_it(raw: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        config(REPLICA_REGIONS=raw)
    assert raised.value.variable == "REPLICA_REGIONS"
