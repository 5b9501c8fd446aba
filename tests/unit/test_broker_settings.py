"""The functions' settings under `sam local` and outside it: what AWS_SAM_LOCAL=true relaxes
(a KillB on host.docker.internal, a stand-in caller identity) and what it never does."""

from __future__ import annotations

import pytest

from killb_broker.config import BrokerConfig, RefresherConfig
from killb_broker.errors import ConfigurationError

SECRETS = {
    "CREDENTIALS_SECRET_ID": "killb/credentials",
    "SESSION_SECRET_ID": "killb/session",
    "ACCESS_TOKEN_SECRET_ID": "killb/access-token",
}
LOCAL_CALLER = "arn:aws:iam::123456789012:role/payments-api"
DOCKER_KILLB = "http://host.docker.internal:8080"


def refresher_config(base_url: str, **extra: str) -> RefresherConfig:
    return RefresherConfig.from_env({**SECRETS, "KILLB_BASE_URL": base_url, **extra})


def broker_config(**extra: str) -> BrokerConfig:
    return BrokerConfig.from_env({"ACCESS_TOKEN_SECRET_ID": "killb/access-token", **extra})


def test_sam_local_may_reach_killb_on_the_docker_host_over_http() -> None:
    config = refresher_config(DOCKER_KILLB, AWS_SAM_LOCAL="true")
    assert config.killb_base_url == DOCKER_KILLB


@pytest.mark.parametrize("sam_local", [None, "false", "1", "TRUE"])
def test_outside_sam_local_the_docker_host_over_http_is_refused(sam_local: str | None) -> None:
    extra = {"AWS_SAM_LOCAL": sam_local} if sam_local is not None else {}
    with pytest.raises(ConfigurationError, match="KILLB_BASE_URL: must use https://"):
        refresher_config(DOCKER_KILLB, **extra)


@pytest.mark.parametrize(
    "base_url",
    ["http://host.docker.internal", "http://host.docker.internal.evil.example:8080"],
)
def test_sam_local_relaxes_nothing_but_the_docker_host_with_a_port(base_url: str) -> None:
    with pytest.raises(ConfigurationError, match="must use https://"):
        refresher_config(base_url, AWS_SAM_LOCAL="true")


@pytest.mark.parametrize(
    "base_url",
    [
        "http://me:pw-Hunter2@127.0.0.1:8080",
        "https://me:pw-Hunter2@killb.app",
        "http://me:pw-Hunter2@teste-94u93qnn.uc.gateway.dev",
        "https://pw-Hunter2@killb.app",
        "http://me:pw-Hunter2@host.docker.internal:8080",
    ],
)
def test_a_base_url_with_user_info_is_refused_without_showing_it(base_url: str) -> None:
    # Given a URL that carries a password / When the refresher reads its settings
    with pytest.raises(ConfigurationError) as raised:
        refresher_config(base_url, AWS_SAM_LOCAL="true")
    # Then the error says why, and shows nothing of the URL
    assert "user info" in str(raised.value)
    assert "Hunter2" not in str(raised.value)


def test_a_base_url_with_an_unparseable_port_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigurationError) as raised:
        refresher_config("https://killb.app:pw-Hunter2")
    assert "Hunter2" not in str(raised.value)


def test_sam_local_takes_the_local_caller_arn() -> None:
    config = broker_config(AWS_SAM_LOCAL="true", LOCAL_CALLER_ARN=LOCAL_CALLER)
    assert config.local_caller_arn == LOCAL_CALLER
    assert config.ignored_variables == ()


@pytest.mark.parametrize("sam_local", [None, "false", "True", "yes"])
def test_outside_sam_local_the_local_caller_arn_is_ignored_and_named(sam_local: str | None) -> None:
    extra = {"AWS_SAM_LOCAL": sam_local} if sam_local is not None else {}
    config = broker_config(LOCAL_CALLER_ARN=LOCAL_CALLER, **extra)
    assert config.local_caller_arn is None
    assert config.ignored_variables == ("LOCAL_CALLER_ARN",)


def test_no_local_caller_arn_set_ignores_nothing() -> None:
    config = broker_config()
    assert config.local_caller_arn is None
    assert config.ignored_variables == ()


@pytest.mark.parametrize(
    "arn",
    [
        "payments-api",
        "arn:aws:s3:::bucket",
        "arn:aws:iam::not-an-account:role/x",
        "arn:aws:iam::123456789012:",
        "*",
    ],
)
def test_sam_local_refuses_a_local_caller_that_is_not_an_iam_arn(arn: str) -> None:
    with pytest.raises(ConfigurationError, match="LOCAL_CALLER_ARN: must be an IAM ARN"):
        broker_config(AWS_SAM_LOCAL="true", LOCAL_CALLER_ARN=arn)


def test_a_malformed_local_caller_outside_sam_local_is_only_ignored() -> None:
    assert broker_config(LOCAL_CALLER_ARN="*").ignored_variables == ("LOCAL_CALLER_ARN",)


# --- REFRESHER_FUNCTION_NAME: a name, or an ARN of this or another region ---------------------


@pytest.mark.parametrize(
    ("value", "region"),
    [
        ("killb-broker-refresher", None),
        ("killb-broker-refresher:live", None),
        ("arn:aws:lambda:eu-west-1:123456789012:function:killb-broker-refresher", "eu-west-1"),
        ("arn:aws:lambda:ap-southeast-2:123456789012:function:refresher:live", "ap-southeast-2"),
        ("arn:aws-us-gov:lambda:us-gov-west-1:123456789012:function:refresher", "us-gov-west-1"),
    ],
)
def test_the_refresher_may_be_named_by_name_or_by_arn(value: str, region: str | None) -> None:
    config = broker_config(REFRESHER_FUNCTION_NAME=f" {value} ")
    assert (config.refresher_function_name, config.refresher_region) == (value, region)


def test_no_refresher_set_means_no_refresher() -> None:
    config = broker_config(REFRESHER_FUNCTION_NAME="")
    assert (config.refresher_function_name, config.refresher_region) == (None, None)


@pytest.mark.parametrize(
    "value",
    [
        "killb broker refresher",
        "x" * 65,
        "arn:aws:lambda:eu-west-1:123456789012:function:",
        "arn:aws:lambda:eu-west-1:1234:function:refresher",
        "arn:aws:lambda:Europe:123456789012:function:refresher",
        "arn:aws:s3:::refresher",
        "123456789012:function:refresher",
        "https://lambda.eu-west-1.amazonaws.com/refresher",
    ],
)
def test_a_refresher_that_is_neither_a_name_nor_an_arn_is_refused_naming_the_variable(
    value: str,
) -> None:
    with pytest.raises(ConfigurationError, match="REFRESHER_FUNCTION_NAME: must be a Lambda"):
        broker_config(REFRESHER_FUNCTION_NAME=value)
