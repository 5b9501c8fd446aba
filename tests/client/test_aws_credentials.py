"""The caller's AWS setup going wrong is the client's own error, with one clear message and none
of what botocore quoted; the CLI prints it as one JSON line on stderr and exits 1
(docs/spec.md, "The Python caller client"). Real config files in a temporary HOME."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import botocore.credentials
import botocore.tokens
import pytest
from broker_server import BrokerServer

from killb_broker_client import AwsCredentialsError, BrokerAuth, get_auth_headers
from tests.client.scripted_broker import ScriptedBroker

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "python"
# What a broken setup may hold or print, and the client must never repeat.
CONFIG_SECRET = "wJalrXUtnFEMI-config-secret-7f3a"
PROCESS_SECRET = "process-printed-secret-9c1e"
SSO_TOKEN = "sso-cached-access-token-4b2d"
START_URL = "https://example.awsapps.com/start"
SSO_PROFILE = """\
[profile dev]
sso_start_url = https://example.awsapps.com/start
sso_region = us-east-1
sso_account_id = 123456789012
sso_role_name = BrokerCaller
region = us-east-1
"""


@dataclass(frozen=True)
class AwsHome:
    """A HOME of its own with ~/.aws/config and ~/.aws/credentials, and nothing else of AWS."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / ".aws" / "config"

    @property
    def credentials(self) -> Path:
        return self.root / ".aws" / "credentials"


@pytest.fixture
def aws_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AwsHome:
    home = AwsHome(tmp_path)
    home.config.parent.mkdir()
    home.config.write_text("")
    home.credentials.write_text("")
    for name in list(os.environ):
        if name.startswith("AWS_") and name not in {"AWS_REGION", "AWS_DEFAULT_REGION"}:
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home.root))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home.config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home.credentials))
    # No instance metadata service to wait for: this is not an EC2 instance.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # botocore read HOME for its SSO token cache when it was imported: point it at this HOME
    # too (a process of its own, as the CLI tests run, reads the HOME it is given).
    sso_cache = str(home.root / ".aws" / "sso" / "cache")
    monkeypatch.setattr(botocore.credentials.SSOProvider, "_SSO_TOKEN_CACHE_DIR", sso_cache)
    monkeypatch.setattr(botocore.tokens.SSOTokenProvider, "_SSO_TOKEN_CACHE_DIR", sso_cache)
    return home


def unknown_profile(home: AwsHome, monkeypatch: pytest.MonkeyPatch) -> None:
    home.config.write_text("[default]\nregion = eu-west-1\n")
    monkeypatch.setenv("AWS_PROFILE", "nope")


def sso_never_logged_in(home: AwsHome, monkeypatch: pytest.MonkeyPatch) -> None:
    home.config.write_text(SSO_PROFILE)
    monkeypatch.setenv("AWS_PROFILE", "dev")


def sso_login_expired(home: AwsHome, monkeypatch: pytest.MonkeyPatch) -> None:
    sso_never_logged_in(home, monkeypatch)
    cache = home.root / ".aws" / "sso" / "cache"
    cache.mkdir(parents=True)
    token = {
        "startUrl": START_URL,
        "region": "us-east-1",
        "accessToken": SSO_TOKEN,
        "expiresAt": "2020-01-01T00:00:00Z",
    }
    key = hashlib.sha1(START_URL.encode()).hexdigest()  # noqa: S324 - botocore's cache key
    (cache / f"{key}.json").write_text(json.dumps(token))


def failing_credential_process(home: AwsHome, monkeypatch: pytest.MonkeyPatch) -> None:
    script = home.root / "credentials-helper.py"
    script.write_text(
        f"import sys\nprint('vault said: {PROCESS_SECRET}', file=sys.stderr)\nsys.exit(1)\n"
    )
    home.config.write_text(f"[default]\ncredential_process = {sys.executable} {script}\n")


def garbage_config(home: AwsHome, monkeypatch: pytest.MonkeyPatch) -> None:
    home.config.write_text(f"[default\naws_secret_access_key = {CONFIG_SECRET}\n")


def no_credentials(home: AwsHome, monkeypatch: pytest.MonkeyPatch) -> None:
    home.config.write_text("[default]\nregion = us-east-1\n")


@dataclass(frozen=True)
class Trouble:
    """One way of breaking the caller's AWS setup, and what the client must say of it."""

    setup: Callable[[AwsHome, pytest.MonkeyPatch], None]
    message: str
    profile: str | None = None


TROUBLES = {
    "unknown-profile": Trouble(
        unknown_profile, 'the AWS profile "nope" is not in the AWS config files', "nope"
    ),
    "sso-never-logged-in": Trouble(
        sso_never_logged_in,
        'the AWS profile "dev" signs in with AWS SSO and there is no SSO login for it yet: '
        "run `aws sso login --profile dev`",
        "dev",
    ),
    "sso-login-expired": Trouble(
        sso_login_expired,
        'the AWS SSO login of the AWS profile "dev" has expired: run `aws sso login --profile dev`',
        "dev",
    ),
    "credential-process-fails": Trouble(
        failing_credential_process, "the credential_process of the default AWS profile failed"
    ),
    "garbage-config": Trouble(garbage_config, "cannot be parsed"),
    "no-credentials": Trouble(no_credentials, "no AWS credentials found to sign the broker call"),
}
NEVER_SHOWN = (CONFIG_SECRET, PROCESS_SECRET, SSO_TOKEN)


@pytest.mark.parametrize("trouble", TROUBLES.values(), ids=TROUBLES.keys())
def test_aws_credential_trouble_is_an_aws_credentials_error(
    aws_home: AwsHome,
    monkeypatch: pytest.MonkeyPatch,
    broker: ScriptedBroker,
    broker_api: BrokerServer,
    trouble: Trouble,
) -> None:
    # Given a caller whose AWS setup is broken in this way
    trouble.setup(aws_home, monkeypatch)

    # When it asks for headers
    with pytest.raises(AwsCredentialsError) as raised:
        BrokerAuth(broker_api.base_url).headers()

    # Then the client's own error says what is wrong and for which profile; no broker call was
    # made, and nothing botocore quoted is in it, nor chained to it
    error = raised.value
    assert trouble.message in str(error)
    assert error.profile == trouble.profile
    assert broker.calls == 0
    assert (error.__cause__, error.__context__) == (None, None)
    assert not any(secret in str(error) for secret in NEVER_SHOWN)


def test_a_garbage_config_read_for_the_region_is_an_aws_credentials_error(
    aws_home: AwsHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a broken config file, and a loopback URL whose region must come from it
    garbage_config(aws_home, monkeypatch)
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")

    # When BrokerAuth is set up
    with pytest.raises(AwsCredentialsError) as raised:
        BrokerAuth("http://127.0.0.1:9")

    # Then the error names the file, not what it holds
    assert f"the AWS config file {aws_home.config} cannot be parsed" in str(raised.value)
    assert CONFIG_SECRET not in str(raised.value)


def test_get_auth_headers_raises_the_same_error(
    aws_home: AwsHome, monkeypatch: pytest.MonkeyPatch, broker_api: BrokerServer
) -> None:
    unknown_profile(aws_home, monkeypatch)

    with pytest.raises(AwsCredentialsError, match='profile "nope"'):
        get_auth_headers(broker_api.base_url)


@pytest.mark.parametrize("trouble", TROUBLES.values(), ids=TROUBLES.keys())
def test_the_cli_prints_one_json_line_and_exits_1(
    aws_home: AwsHome,
    monkeypatch: pytest.MonkeyPatch,
    broker: ScriptedBroker,
    broker_api: BrokerServer,
    trouble: Trouble,
) -> None:
    # Given a broken AWS setup
    trouble.setup(aws_home, monkeypatch)

    # When `killb-broker headers` runs in a process of its own
    completed = subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "killb_broker_client", "headers", "--url", broker_api.base_url],
        env={**os.environ, "PYTHONPATH": str(CLIENT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # Then it exits 1 with one JSON line on stderr, no traceback and nothing botocore quoted
    assert (completed.returncode, completed.stdout) == (1, "")
    (line,) = completed.stderr.splitlines()
    printed = json.loads(line)
    assert trouble.message in printed["message"]
    assert printed.get("profile") == trouble.profile
    assert printed["url"] == broker_api.base_url
    assert not any(secret in completed.stderr for secret in NEVER_SHOWN)
    assert broker.calls == 0
