"""`killb-broker headers` and `health`: formats, exit statuses, errors, help, and
`python -m killb_broker_client`."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from broker_server import BrokerServer, serve_broker

from killb_broker_client import fingerprint
from killb_broker_client.cli import main
from tests.client.scripted_broker import (
    ACCESS_TOKEN,
    ACCOUNT_ID,
    API_KEY,
    SECOND_TOKEN,
    ScriptedBroker,
    issued,
    issued_headers,
    json_response,
    refused,
    stopped_broker_url,
)

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "python"
SANDBOX_URL = "https://teste-94u93qnn.uc.gateway.dev"


def test_answer_format_prints_the_brokers_answer(
    broker: ScriptedBroker, broker_api: BrokerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a broker that names where KillB is for its token
    broker.script(issued(killb_base_url=SANDBOX_URL))

    # When the CLI is asked for the broker's whole answer
    status = main(["headers", "--url", broker_api.base_url, "--format", "answer"])

    # Then it prints the broker's headers, expiry and KillB URL, unchanged, and succeeds
    assert status == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {
        "headers": {"Authorization": f"Bearer {ACCESS_TOKEN}", "x-api-key": API_KEY},
        "expiresAt": json.loads(broker.answers[0]["body"])["expiresAt"],
        "killbBaseUrl": SANDBOX_URL,
    }


def test_answer_format_of_an_older_broker_has_a_null_killb_base_url(
    broker_api: BrokerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a broker older than killbBaseUrl (the scripted default sends none)
    # When the CLI is asked for the broker's whole answer
    status = main(["headers", "--url", broker_api.base_url, "--format", "answer"])

    # Then the headers are there, and killbBaseUrl is null
    assert status == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["headers"]["Authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert printed["killbBaseUrl"] is None


def test_json_format_prints_the_headers_alone_as_it_always_has(
    broker_api: BrokerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a broker that issues a token and an API key
    # When the CLI is asked for headers in its default format
    status = main(["headers", "--url", broker_api.base_url])

    # Then it prints the headers object, nothing else: scripts reading .Authorization still work
    assert status == 0
    assert json.loads(capsys.readouterr().out) == {
        "Authorization": f"Bearer {ACCESS_TOKEN}",
        "x-api-key": API_KEY,
    }


def test_env_format_exports_killb_base_url_when_the_broker_names_it(
    broker: ScriptedBroker, broker_api: BrokerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a broker that names where KillB is for its token
    broker.script(issued(killb_base_url=SANDBOX_URL))

    # When the CLI is asked for headers as shell variables
    status = main(["headers", "--url", broker_api.base_url, "--format", "env"])

    # Then KILLB_BASE_URL comes after the headers
    assert status == 0
    assert capsys.readouterr().out.splitlines() == [
        f"export KILLB_AUTHORIZATION='Bearer {ACCESS_TOKEN}'",
        f"export KILLB_API_KEY={API_KEY}",
        f"export KILLB_BASE_URL={SANDBOX_URL}",
    ]


def test_curl_format_carries_only_headers_even_with_a_killb_base_url(
    broker: ScriptedBroker, broker_api: BrokerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    broker.script(issued(killb_base_url=SANDBOX_URL))

    status = main(["headers", "--url", broker_api.base_url, "--format", "curl"])

    assert status == 0
    assert shlex.split(capsys.readouterr().out) == [
        "-H",
        f"Authorization: Bearer {ACCESS_TOKEN}",
        "-H",
        f"x-api-key: {API_KEY}",
    ]


def test_env_format_prints_shell_assignments(
    broker_api: BrokerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the CLI is asked for headers as shell variables
    status = main(["headers", "--api-url", broker_api.base_url, "--format", "env"])

    # Then it prints one quoted export per header
    assert status == 0
    assert capsys.readouterr().out.splitlines() == [
        f"export KILLB_AUTHORIZATION='Bearer {ACCESS_TOKEN}'",
        f"export KILLB_API_KEY={API_KEY}",
    ]


def test_env_format_names_any_other_header_as_a_shell_variable(
    broker: ScriptedBroker, broker_api: BrokerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a broker that also sends a header the CLI has no name for
    broker.script(
        issued_headers({"Authorization": f"Bearer {ACCESS_TOKEN}", "x-killb-tenant": "t-1"})
    )

    status = main(["headers", "--api-url", broker_api.base_url, "--format", "env"])

    assert status == 0
    assert capsys.readouterr().out.splitlines()[1] == "export KILLB_X_KILLB_TENANT=t-1"


def test_curl_format_prints_header_arguments_a_shell_reads_back(
    broker_api: BrokerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the CLI is asked for headers as curl arguments
    status = main(["headers", "--api-url", broker_api.base_url, "--format", "curl"])

    # Then a shell splits them into curl's -H arguments, one per header
    assert status == 0
    printed = capsys.readouterr().out.strip()
    assert printed == f"-H 'Authorization: Bearer {ACCESS_TOKEN}' -H 'x-api-key: {API_KEY}'"
    assert shlex.split(printed) == [
        "-H",
        f"Authorization: Bearer {ACCESS_TOKEN}",
        "-H",
        f"x-api-key: {API_KEY}",
    ]


def test_url_and_min_ttl_come_from_the_environment_and_flags(
    broker: ScriptedBroker,
    broker_api: BrokerServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the broker URL in KILLB_BROKER_URL
    monkeypatch.setenv("KILLB_BROKER_URL", broker_api.base_url)

    # When the CLI is run with only --min-ttl
    status = main(["headers", "--min-ttl", "900"])

    # Then it asked that broker for that minTtl, and printed JSON (the default format)
    assert status == 0
    assert broker.events[0]["queryStringParameters"] == {"minTtl": "900"}
    printed = json.loads(capsys.readouterr().out)
    assert printed["Authorization"] == f"Bearer {ACCESS_TOKEN}"


def test_broker_error_goes_to_stderr_with_its_error_code_and_exit_1(
    broker: ScriptedBroker, broker_api: BrokerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a broker that has no token to give
    broker.script(refused(503, "BROKER.0003", "No token available", retry_after="30"))

    # When the CLI asks for headers
    status = main(["headers", "--api-url", broker_api.base_url])

    # Then it exits 1, prints nothing on stdout and the errorCode on stderr
    assert status == 1
    printed = capsys.readouterr()
    assert printed.out == ""
    assert json.loads(printed.err) == {
        "message": "No token available",
        "errorCode": "BROKER.0003",
        "status": 503,
        "retryAfter": 30,
        "url": broker_api.base_url,
    }


def test_insecure_url_is_an_error_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["headers", "--api-url", "http://broker.example.com/v1"])

    assert status == 1
    assert "https" in json.loads(capsys.readouterr().err)["message"]


def test_missing_url_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KILLB_BROKER_URL", raising=False)

    with pytest.raises(SystemExit) as exited:
        main(["headers"])

    assert exited.value.code == 2
    assert "KILLB_BROKER_URL" in capsys.readouterr().err


@pytest.mark.parametrize("min_ttl", ["-1", "1801", "1.5", "abc"])
def test_min_ttl_outside_0_to_1800_is_a_usage_error(min_ttl: str) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["headers", "--api-url", "http://127.0.0.1:9", "--min-ttl", min_ttl])

    assert exited.value.code == 2


def test_python_dash_m_runs_the_same_command_without_the_broker_package(
    broker: ScriptedBroker, broker_api: BrokerServer, tmp_path: Path
) -> None:
    # Given an account without an API key, and the client alone on the path, as a pip install
    # of clients/python leaves it: no killb_broker to import
    broker.script(issued(api_key=None))
    shutil.copytree(CLIENT / "killb_broker_client", tmp_path / "killb_broker_client")

    # When the package is run as a module, in a process of its own
    completed = subprocess.run(
        [sys.executable, "-m", "killb_broker_client", "headers", "--format", "env"],
        env={**os.environ, "PYTHONPATH": str(tmp_path), "KILLB_BROKER_URL": broker_api.base_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    # Then it prints the one header as a shell assignment
    assert (completed.returncode, completed.stderr) == (0, "")
    assert completed.stdout == f"export KILLB_AUTHORIZATION='Bearer {ACCESS_TOKEN}'\n"


def test_rejected_fingerprint_is_passed_to_the_broker(
    broker: ScriptedBroker, broker_api: BrokerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a token KillB refused
    rejected = fingerprint(ACCESS_TOKEN)

    # When the CLI is asked for headers with its fingerprint
    status = main(["headers", "--api-url", broker_api.base_url, "--rejected", rejected])

    # Then the broker is told, with the minTtl as usual
    assert status == 0
    assert broker.events[0]["queryStringParameters"] == {"minTtl": "300", "rejected": rejected}
    printed = json.loads(capsys.readouterr().out)
    assert printed["Authorization"] == f"Bearer {ACCESS_TOKEN}"


def test_a_token_passed_as_rejected_is_a_usage_error_that_does_not_echo_it(
    broker: ScriptedBroker, broker_api: BrokerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["headers", "--api-url", broker_api.base_url, "--rejected", ACCESS_TOKEN])

    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "12 lowercase hex digits" in error
    assert ACCESS_TOKEN not in error
    assert broker.calls == 0


def test_unreachable_broker_error_names_the_url_and_the_cause(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a broker that has stopped
    with serve_broker(lambda _e, _c: issued(), caller_arn=None, account_id=ACCOUNT_ID) as api:
        url = api.base_url

    # When the CLI asks it for headers
    status = main(["headers", "--api-url", url])

    # Then stderr says which URL could not be reached and why, with no empty fields
    assert status == 1
    assert json.loads(capsys.readouterr().err) == {
        "message": f"could not reach {url}/v1/auth-headers (connection refused)",
        "url": url,
    }


def test_gateway_error_without_error_code_prints_no_null(
    broker: ScriptedBroker, broker_api: BrokerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given API Gateway's own 403, which has no errorCode
    broker.script(json_response(403, {"message": "Missing Authentication Token"}))

    status = main(["headers", "--api-url", broker_api.base_url])

    assert status == 1
    printed = capsys.readouterr().err
    assert "null" not in printed
    assert json.loads(printed) == {
        "message": "Missing Authentication Token",
        "status": 403,
        "url": broker_api.base_url,
    }


@pytest.mark.parametrize("command", ["headers", "health"])
def test_no_region_error_names_the_flag(
    command: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a custom domain that names no region, and no region in the environment
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))

    status = main([command, "--api-url", "https://broker.example.com/prod"])

    assert status == 1
    message = json.loads(capsys.readouterr().err)["message"]
    assert "--region" in message
    assert "region=" not in message


@pytest.mark.parametrize(
    ("health", "exit_status"),
    [
        ({"status": "ok", "expiresAt": "2026-12-01T12:00:00Z", "expiresIn": 3000}, 0),
        ({"status": "refreshing", "expiresAt": "2026-12-01T12:00:00Z", "expiresIn": 200}, 0),
        ({"status": "expired", "expiresAt": "2026-12-01T10:00:00Z", "expiresIn": 0}, 3),
        ({"status": "missing", "expiresAt": None, "expiresIn": None}, 3),
    ],
    ids=["ok", "refreshing", "expired", "missing"],
)
def test_health_prints_the_status_and_exits_0_only_while_a_token_can_be_had(
    broker: ScriptedBroker,
    broker_api: BrokerServer,
    capsys: pytest.CaptureFixture[str],
    health: dict[str, object],
    exit_status: int,
) -> None:
    # Given a broker in that state
    broker.script(json_response(200, health))

    # When the CLI asks for its health
    status = main(["health", "--api-url", broker_api.base_url])

    # Then it asked GET /v1/health (signed), printed the answer, and exits as documented
    event = broker.events[0]
    assert (event["httpMethod"], event["path"]) == ("GET", "/v1/health")
    assert event["headers"]["Authorization"].startswith("AWS4-HMAC-SHA256 ")
    assert json.loads(capsys.readouterr().out) == health
    assert status == exit_status


def test_health_of_a_broker_that_refuses_exits_1(
    broker: ScriptedBroker, broker_api: BrokerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    broker.script(refused(503, "BROKER.0003", "No token available", retry_after="5"))

    status = main(["health", "--api-url", broker_api.base_url])

    assert status == 1
    printed = capsys.readouterr()
    assert printed.out == ""
    assert json.loads(printed.err)["errorCode"] == "BROKER.0003"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--help"], "headers"),
        (["headers", "--help"], "--rejected"),
        (["health", "--help"], "exit status"),
    ],
)
def test_every_command_has_help(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)

    assert exited.value.code == 0
    assert says in capsys.readouterr().out


def test_url_may_be_repeated_for_several_brokers(
    second: ScriptedBroker, second_api: BrokerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a first broker that is down and a second that answers
    # When the CLI is given both, in order
    status = main(["headers", "--url", stopped_broker_url(), "--url", second_api.base_url])

    # Then the second one's headers are printed
    assert status == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["Authorization"] == f"Bearer {SECOND_TOKEN}"


def test_killb_broker_url_may_hold_a_comma_separated_list(
    second: ScriptedBroker,
    second_api: BrokerServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("KILLB_BROKER_URL", f"{stopped_broker_url()},{second_api.base_url}")

    status = main(["headers", "--format", "env"])

    assert status == 0
    assert capsys.readouterr().out.splitlines()[0] == (
        f"export KILLB_AUTHORIZATION='Bearer {SECOND_TOKEN}'"
    )


def test_when_every_broker_fails_the_error_names_the_last_one(
    second: ScriptedBroker, second_api: BrokerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a first broker that is down and a second without a token
    second.script(refused(503, "BROKER.0003", "No token available", retry_after="30"))

    status = main(["headers", "--url", f"{stopped_broker_url()},{second_api.base_url}"])

    # Then the one JSON line is the second broker's refusal, with its URL
    assert status == 1
    printed = json.loads(capsys.readouterr().err)
    assert (printed["errorCode"], printed["url"]) == ("BROKER.0003", second_api.base_url)
