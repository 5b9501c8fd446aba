"""`killb-broker proxy` over real HTTP: a caller on loopback, the proxy, a scripted broker and the
local KillB sandbox (or a recording upstream where KillB's answers are too plain to show it)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from broker_server import BrokerServer, environment_credentials, serve_broker
from moto import mock_aws

from killb_broker.store import access_token_to_json
from killb_broker.tokens import AccessToken
from killb_broker_client import BrokerAuth, fingerprint
from killb_broker_client.cli import main
from killb_broker_client.proxy import ProxySettings, RunningProxy, running_proxy
from killb_broker_client.proxy_cli import DEFAULT_LISTEN, parse_listen
from killb_broker_client.signing import is_loopback
from killb_sandbox.accounts import SANDBOX_API_KEY, SANDBOX_EMAIL, SANDBOX_PASSWORD
from killb_sandbox.server import Delay, KillBSandbox
from tests.client.echo_upstream import (
    HOP_HEADERS,
    STREAM_FIRST_PART,
    STREAM_REST,
    EchoUpstream,
)
from tests.client.scripted_broker import (
    ACCOUNT_ID,
    CALLER_ARN,
    ScriptedBroker,
    issued,
    json_response,
    refused,
)
from tests.support import load_function

REPO = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024


def login(sandbox: KillBSandbox) -> str:
    """A fresh access token of the sandbox's account, as the refresher would obtain it."""
    response = requests.post(
        f"{sandbox.base_url}/api/v2/auth/login",
        json={"email": SANDBOX_EMAIL, "password": SANDBOX_PASSWORD},
        headers={"x-api-key": SANDBOX_API_KEY},
        timeout=5,
    )
    assert response.status_code == 201
    return str(response.json()["accessToken"])


def issued_for(
    token: str, killb_base_url: str | None, api_key: str | None = SANDBOX_API_KEY
) -> dict[str, Any]:
    """The broker's 200 for token, naming where KillB is (as the third round's broker does)."""
    answer = issued(token, api_key=api_key)
    body = json.loads(answer["body"])
    if killb_base_url is not None:
        body["killbBaseUrl"] = killb_base_url
    answer["body"] = json.dumps(body)
    return answer


def rejected_reported(event: dict[str, Any]) -> str | None:
    return (event.get("queryStringParameters") or {}).get("rejected")


@pytest.fixture
def sandbox(killb_sandbox_with_api_key: KillBSandbox) -> KillBSandbox:
    return killb_sandbox_with_api_key


@pytest.fixture
def proxy(broker_api: BrokerServer) -> Iterator[RunningProxy]:
    with running_proxy(BrokerAuth(broker_api.base_url)) as running:
        yield running


@pytest.fixture
def upstream() -> Iterator[EchoUpstream]:
    with EchoUpstream() as echo:
        yield echo


def raw_exchange(base_url: str, request: bytes) -> bytes:
    """Send request bytes as they are (targets requests would never write) and read the answer."""
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer


def error_of(answer: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


# Credentials: replaced, never merged


def test_callers_credentials_are_replaced_by_the_brokers(
    sandbox: KillBSandbox, broker: ScriptedBroker, proxy: RunningProxy
) -> None:
    # Given a broker issuing a sandbox token, and a caller that sends credentials of its own
    token = login(sandbox)
    broker.script(issued_for(token, sandbox.base_url))

    # When the caller calls KillB through the proxy
    response = requests.get(
        f"{proxy.base_url}/api/v2/users",
        headers={
            "Authorization": "Bearer caller-own-token",
            "x-api-key": "caller-own-key",
            "Cookie": "session=caller-own-cookie",
        },
        timeout=5,
    )

    # Then KillB saw the broker's headers only, and answered
    assert response.status_code == 200
    seen = sandbox.requests[-1].headers
    assert seen["authorization"] == f"Bearer {token}"
    assert seen["x-api-key"] == SANDBOX_API_KEY
    assert "cookie" not in seen


def test_path_and_query_reach_killb_with_killbs_host(
    sandbox: KillBSandbox, broker: ScriptedBroker, proxy: RunningProxy
) -> None:
    # Given a broker issuing a sandbox token
    broker.script(issued_for(login(sandbox), sandbox.base_url))

    # When the caller asks for users by query through the proxy
    response = requests.get(
        f"{proxy.base_url}/api/v2/users", params={"email": "ana@example.test"}, timeout=5
    )

    # Then KillB answered that query, addressed to its own host
    assert [user["id"] for user in response.json()["users"]] == ["usr_0001"]
    assert sandbox.requests[-1].headers["host"] == sandbox.base_url.removeprefix("http://")


# Hop-by-hop headers


def test_hop_by_hop_headers_of_the_request_stay_on_the_first_hop(
    sandbox: KillBSandbox, broker: ScriptedBroker, proxy: RunningProxy
) -> None:
    # Given a broker issuing a sandbox token
    broker.script(issued_for(login(sandbox), sandbox.base_url))

    # When a request carries hop-by-hop headers, one named by its Connection header
    requests.get(
        f"{proxy.base_url}/api/v2/users",
        headers={
            "Connection": "keep-alive, X-Caller-Hop",
            "X-Caller-Hop": "1",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Proxy-Authorization": "Basic Y2FsbGVyOmhvcA==",
            "X-Kept": "1",
        },
        timeout=5,
    )

    # Then none of them reached KillB, and the end-to-end ones did
    seen = sandbox.requests[-1].headers
    for name in ("x-caller-hop", "keep-alive", "te", "proxy-authorization"):
        assert name not in seen
    assert seen["x-kept"] == "1"


@pytest.mark.parametrize("path", ["/hop", "/hop-stream"], ids=["sized", "streamed"])
def test_hop_by_hop_headers_of_the_answer_stay_on_the_last_hop(
    upstream: EchoUpstream, broker: ScriptedBroker, proxy: RunningProxy, path: str
) -> None:
    # Given an upstream whose answer (small and sized, or chunked) carries hop-by-hop headers
    broker.script(issued_for("kb-token-hop", upstream.base_url))

    # When the caller gets that answer through the proxy
    response = requests.get(f"{proxy.base_url}{path}", timeout=5)

    # Then none of them reach the caller, and the end-to-end ones do
    for name in HOP_HEADERS:
        if name != "Connection":
            assert name not in response.headers
    assert response.headers["X-Kept"] == "1"


# Streaming both ways


def test_answer_is_streamed_before_killb_has_finished_it(
    upstream: EchoUpstream, broker: ScriptedBroker, proxy: RunningProxy
) -> None:
    # Given an upstream that sends the first part of its answer and holds the rest back
    broker.script(issued_for("kb-token-stream", upstream.base_url))

    # When the caller reads the answer through the proxy
    with requests.get(f"{proxy.base_url}/stream", stream=True, timeout=5) as response:
        first = response.raw.read(len(STREAM_FIRST_PART))
        # Then the first part arrives while the upstream still holds the rest
        assert first == STREAM_FIRST_PART
        upstream.release.set()
        assert response.raw.read() == STREAM_REST


def test_large_request_body_is_streamed_up_unchanged_with_its_length(
    upstream: EchoUpstream, broker: ScriptedBroker, proxy: RunningProxy
) -> None:
    # Given an 8 MiB body, above what the proxy keeps for a retry
    broker.script(issued_for("kb-token-upload", upstream.base_url))
    body = os.urandom(8 * MIB)

    # When the caller posts it through the proxy
    response = requests.post(f"{proxy.base_url}/upload", data=body, timeout=30)

    # Then the upstream received it whole, framed by the length the caller announced
    assert response.status_code == 200
    received = upstream.received[-1]
    assert received.body_length == len(body)
    assert received.headers["content-length"] == str(len(body))
    assert received.body_sha256 == hashlib.sha256(body).hexdigest()


def test_chunked_upload_reaches_killb_before_the_caller_has_sent_it_all(
    upstream: EchoUpstream, broker: ScriptedBroker, proxy: RunningProxy
) -> None:
    # Given a caller that sends 2 MiB, then waits until the upstream has seen them before the rest
    broker.script(issued_for("kb-token-chunked", upstream.base_url))
    reached_upstream: list[bool] = []

    def body() -> Iterator[bytes]:
        yield b"a" * (2 * MIB)
        reached_upstream.append(upstream.body_started.wait(timeout=10))
        yield b"b" * MIB

    # When it posts that chunked body through the proxy
    response = requests.post(f"{proxy.base_url}/upload", data=body(), timeout=30)

    # Then the first part reached the upstream while the caller still held the rest
    assert response.status_code == 200
    assert reached_upstream == [True]
    assert upstream.received[-1].body_length == 3 * MIB


def test_expect_100_continue_is_answered_before_the_body_is_sent(
    upstream: EchoUpstream, broker: ScriptedBroker, proxy: RunningProxy
) -> None:
    # Given a caller that announces a body and waits for 100 Continue before sending it
    broker.script(issued_for("kb-token-expect", upstream.base_url))
    host, port = proxy.base_url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as connection:
        connection.sendall(
            b"POST /upload HTTP/1.1\r\nHost: proxy\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )

        # When it waits
        interim = connection.recv(65536)

        # Then the proxy says to go on, and the body then reaches the upstream
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        connection.sendall(b"hello")
        assert b"200 OK" in connection.recv(65536)
    assert upstream.received[-1].body_length == 5
    assert "expect" not in upstream.received[-1].headers


# A token KillB refuses


def test_refused_token_is_reported_and_the_request_sent_once_more(
    sandbox: KillBSandbox, broker: ScriptedBroker, proxy: RunningProxy
) -> None:
    # Given a broker that issued a token KillB has since revoked, and holds a new one
    revoked, fresh = login(sandbox), login(sandbox)
    sandbox.revoke(revoked)
    broker.script(issued_for(revoked, sandbox.base_url), issued_for(fresh, sandbox.base_url))

    # When the caller posts a quotation through the proxy
    response = requests.post(
        f"{proxy.base_url}/api/v2/quotations",
        json={"fromCurrency": "MXN", "toCurrency": "USDC", "amount": 1000},
        timeout=5,
    )

    # Then the broker was told which token KillB refused, and the retry with the new one worked
    assert response.status_code == 201
    assert broker.calls == 2
    assert rejected_reported(broker.events[1]) == fingerprint(revoked)
    assert [r.headers["authorization"] for r in sandbox.requests[-2:]] == [
        f"Bearer {revoked}",
        f"Bearer {fresh}",
    ]
    assert sandbox.requests[-1].json == sandbox.requests[-2].json


def test_second_refusal_in_a_row_reaches_the_caller_without_a_third_request(
    sandbox: KillBSandbox, broker: ScriptedBroker, proxy: RunningProxy
) -> None:
    # Given a broker whose tokens KillB refuses, the new one as well
    first, second = login(sandbox), login(sandbox)
    sandbox.revoke(first)
    sandbox.revoke(second)
    broker.script(issued_for(first, sandbox.base_url), issued_for(second, sandbox.base_url))

    # When the caller calls KillB through the proxy
    response = requests.get(f"{proxy.base_url}/api/v2/users", timeout=5)

    # Then KillB's 401 reaches the caller after two requests, not three
    assert response.status_code == 401
    assert response.json()["errorCode"] == "AUTH.0003"
    assert sandbox.count("users") == 2


def test_body_above_one_mib_is_not_sent_again_after_a_refusal(
    sandbox: KillBSandbox, broker: ScriptedBroker, proxy: RunningProxy
) -> None:
    # Given a broker that issued a token KillB has since revoked
    revoked, fresh = login(sandbox), login(sandbox)
    sandbox.revoke(revoked)
    broker.script(issued_for(revoked, sandbox.base_url), issued_for(fresh, sandbox.base_url))

    # When the caller posts a body above 1 MiB through the proxy
    big = json.dumps({"amount": 1000, "note": "x" * (MIB + 10)}).encode()
    response = requests.post(f"{proxy.base_url}/api/v2/quotations", data=big, timeout=10)

    # Then KillB's 401 reaches the caller after one request, and the broker was still told
    assert response.status_code == 401
    assert sandbox.count("quotations") == 1
    assert rejected_reported(broker.events[-1]) == fingerprint(revoked)


# Requests it will not forward


def test_absolute_form_target_is_refused(proxy: RunningProxy, broker: ScriptedBroker) -> None:
    # Given a caller that uses the proxy as a forward proxy to another host
    request = b"GET http://example.com/api/v2/users HTTP/1.1\r\nHost: example.com\r\n\r\n"

    # When it sends that absolute-form request
    status, body = error_of(raw_exchange(proxy.base_url, request))

    # Then the proxy refuses it in the contract's shape, without asking the broker
    assert (status, body["errorCode"], body["statusCode"]) == (400, "BROKER.0001", "400")
    assert broker.calls == 0


@pytest.mark.parametrize("target", [b"example.com:443", b"/api/v2/users"])
def test_connect_is_refused(proxy: RunningProxy, broker: ScriptedBroker, target: bytes) -> None:
    # Given a caller that asks for a tunnel (to a host, or with a path for a target)
    request = b"CONNECT " + target + b" HTTP/1.1\r\nHost: example.com:443\r\n\r\n"

    # When it sends CONNECT
    status, body = error_of(raw_exchange(proxy.base_url, request))

    # Then the proxy refuses it
    assert (status, body["errorCode"]) == (400, "BROKER.0001")
    assert broker.calls == 0


# KillB or the broker unavailable


def test_killb_unreachable_is_502(broker: ScriptedBroker, proxy: RunningProxy) -> None:
    # Given a broker pointing at a KillB that accepts no connection
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    broker.script(issued_for("kb-token-nowhere", f"http://127.0.0.1:{port}"))

    # When the caller calls KillB through the proxy
    response = requests.get(f"{proxy.base_url}/api/v2/users", timeout=5)

    # Then the proxy answers 502 BROKER.0006
    assert response.status_code == 502
    assert response.json()["errorCode"] == "BROKER.0006"


def test_killb_too_slow_is_502(
    sandbox: KillBSandbox, broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given a KillB slower than the proxy's read timeout
    broker.script(issued_for(login(sandbox), sandbox.base_url))
    sandbox.inject("users", Delay(2.0))
    settings = ProxySettings(read_timeout=0.3)

    # When the caller calls KillB through the proxy
    with running_proxy(BrokerAuth(broker_api.base_url), settings) as proxy:
        response = requests.get(f"{proxy.base_url}/api/v2/users", timeout=5)

    # Then the proxy answers 502 BROKER.0006, saying it timed out
    assert response.status_code == 502
    assert response.json()["errorCode"] == "BROKER.0006"
    assert "timed out" in response.json()["message"][0]


def test_no_token_from_the_broker_is_503_with_retry_after(
    broker: ScriptedBroker, proxy: RunningProxy
) -> None:
    # Given a broker that has no token now, and says to come back in 30 s
    broker.script(refused(503, "BROKER.0003", "No token available", retry_after="30"))

    # When the caller calls KillB through the proxy
    response = requests.get(f"{proxy.base_url}/api/v2/users", timeout=5)

    # Then the proxy answers 503 BROKER.0003 with the broker's Retry-After
    assert response.status_code == 503
    assert response.json()["errorCode"] == "BROKER.0003"
    assert response.headers["Retry-After"] == "30"


def test_broker_naming_no_killb_url_is_503_saying_so(
    sandbox: KillBSandbox, broker: ScriptedBroker, proxy: RunningProxy
) -> None:
    # Given a broker whose answer names no killbBaseUrl (its refresher predates it)
    broker.script(issued_for(login(sandbox), None))

    # When the caller calls KillB through the proxy
    response = requests.get(f"{proxy.base_url}/api/v2/users", timeout=5)

    # Then the proxy answers 503 BROKER.0003, naming the missing field and the option
    assert response.status_code == 503
    assert "killbBaseUrl" in response.json()["message"][0]
    assert "--killb-url" in response.json()["message"][0]
    assert sandbox.count("users") == 0


def test_killb_url_option_serves_a_broker_that_names_none(
    sandbox: KillBSandbox, broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given a broker whose answer names no killbBaseUrl, and a proxy told where KillB is
    broker.script(issued_for(login(sandbox), None))
    settings = ProxySettings(killb_url=sandbox.base_url)

    # When the caller calls KillB through the proxy
    with running_proxy(BrokerAuth(broker_api.base_url), settings) as proxy:
        response = requests.get(f"{proxy.base_url}/api/v2/users", timeout=5)

    # Then KillB answered
    assert response.status_code == 200


def test_several_brokers_the_first_down_the_next_serves(
    sandbox: KillBSandbox, broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given two brokers in order, the first of which accepts no connection
    broker.script(issued_for(login(sandbox), sandbox.base_url))
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{closed.getsockname()[1]}"

    # When the caller calls KillB through a proxy given both
    with running_proxy(BrokerAuth([down, broker_api.base_url])) as proxy:
        response = requests.get(f"{proxy.base_url}/api/v2/users", timeout=10)

    # Then the second broker's token served the call
    assert response.status_code == 200
    assert broker.calls == 1


# Its own routes, addresses and logs


def test_health_route_answers_the_brokers_health(
    broker: ScriptedBroker, proxy: RunningProxy
) -> None:
    # Given a broker that is refreshing its token
    health = {"status": "refreshing", "expiresAt": "2026-11-28T02:00:00Z", "expiresIn": 120}
    broker.script(json_response(200, health))

    # When the caller asks the proxy's health route
    response = requests.get(f"{proxy.base_url}/_broker/health", timeout=5)

    # Then it answers the broker's /v1/health
    assert response.status_code == 200
    assert response.json() == health
    assert broker.events[0]["path"] == "/v1/health"


def test_default_listen_address_is_loopback() -> None:
    # Given the proxy's default listen address
    host, port = parse_listen(DEFAULT_LISTEN)

    # Then it is loopback, port 8787
    assert is_loopback(host)
    assert port == 8787


def test_one_line_per_request_without_query_or_secret(
    sandbox: KillBSandbox,
    broker: ScriptedBroker,
    proxy: RunningProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a broker issuing a sandbox token
    token = login(sandbox)
    broker.script(issued_for(token, sandbox.base_url))

    # When the caller asks for a user by email through the proxy
    with caplog.at_level(logging.INFO, logger="killb_broker_client.proxy"):
        requests.get(
            f"{proxy.base_url}/api/v2/users", params={"email": "ana@example.test"}, timeout=5
        )
        # (the line is written once the answer is out, on the proxy's thread)
        deadline = time.monotonic() + 5
        while not caplog.records and time.monotonic() < deadline:
            time.sleep(0.01)

    # Then one line says method, path, status, latency and the token's fingerprint, no query
    lines = [r.getMessage() for r in caplog.records if r.name == "killb_broker_client.proxy"]
    assert len(lines) == 1
    method, path, status, latency, token_field = lines[0].split()
    assert (method, path, status) == ("GET", "/api/v2/users", "200")
    assert latency.endswith("ms")
    assert token_field == f"token={fingerprint(token)}"
    assert "ana@example.test" not in lines[0]


def test_killb_url_over_plain_http_is_a_usage_error(
    broker_api: BrokerServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the proxy is started with a KillB URL over plain http beyond loopback
    status = main(["proxy", "--broker-url", broker_api.base_url, "--killb-url", "http://killb.app"])

    # Then it does not start, and says why on stderr
    assert status == 2
    assert "https" in json.loads(capsys.readouterr().err)["message"]


# The command, as a process


class ProxyProcess:
    """`python -m killb_broker_client proxy ...` in a process of its own, its stderr collected."""

    def __init__(self, *arguments: str) -> None:
        environment = {**os.environ, "PYTHONPATH": str(REPO / "clients" / "python")}
        self.process = subprocess.Popen(  # noqa: S603 - a fixed command line
            [sys.executable, "-m", "killb_broker_client", "proxy", *arguments],
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
        )
        self.lines: list[str] = []
        self.base_url = ""
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            if "proxy listening on " in line:
                self.base_url = line.rsplit("proxy listening on ", 1)[1].strip()
                break
        assert self.base_url, "".join(self.lines)

    def stop(self) -> tuple[int, str]:
        """SIGTERM, then the exit status and everything it wrote on stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        _, rest = self.process.communicate(timeout=20)
        return self.process.returncode, "".join(self.lines) + rest


def test_sigterm_lets_a_request_in_flight_finish(
    sandbox: KillBSandbox, broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given a proxy process forwarding a request KillB takes 1.5 s to answer
    broker.script(issued_for(login(sandbox), sandbox.base_url))
    sandbox.inject("users", Delay(1.5))
    process = ProxyProcess("--listen", "127.0.0.1:0", "--broker-url", broker_api.base_url)
    answers: list[requests.Response] = []
    caller = threading.Thread(
        target=lambda: answers.append(requests.get(f"{process.base_url}/api/v2/users", timeout=10))
    )
    caller.start()
    deadline = time.monotonic() + 5
    while sandbox.count("users") == 0 and time.monotonic() < deadline:
        time.sleep(0.02)

    # When the process gets SIGTERM while that request is in flight
    status, log = process.stop()
    caller.join(timeout=10)

    # Then the request was answered in full, and the process exited cleanly
    assert [answer.status_code for answer in answers] == [200]
    assert status == 0
    assert "stopped" in log


def test_listening_beyond_loopback_warns(broker_api: BrokerServer) -> None:
    # Given a proxy told to listen on every address
    process = ProxyProcess("--listen", "0.0.0.0:0", "--broker-url", broker_api.base_url)

    # When it has started
    _, log = process.stop()

    # Then it warned that anything reaching the port calls KillB as this service
    assert "WARNING" in log
    assert "beyond loopback" in log


def test_listening_on_loopback_does_not_warn(broker_api: BrokerServer) -> None:
    # Given a proxy listening on loopback
    process = ProxyProcess("--listen", "127.0.0.1:0", "--broker-url", broker_api.base_url)

    # When it has started
    _, log = process.stop()

    # Then it gave no warning
    assert "WARNING" not in log


def test_no_secret_in_the_proxy_log_at_debug(
    sandbox: KillBSandbox, broker: ScriptedBroker, broker_api: BrokerServer
) -> None:
    # Given a proxy process logging at DEBUG, a revoked token and a fresh one
    revoked, fresh = login(sandbox), login(sandbox)
    sandbox.revoke(revoked)
    broker.script(issued_for(revoked, sandbox.base_url), issued_for(fresh, sandbox.base_url))
    process = ProxyProcess(
        "--listen", "127.0.0.1:0", "--broker-url", broker_api.base_url, "--log-level", "DEBUG"
    )

    # When a caller with credentials of its own calls KillB through it (a refusal, a retry)
    response = requests.get(
        f"{process.base_url}/api/v2/users?email=ana@example.test",
        headers={"Authorization": "Bearer caller-own-token", "Cookie": "sid=caller-cookie"},
        timeout=10,
    )
    _, log = process.stop()

    # Then the log names the tokens by fingerprint only, and holds no secret
    assert response.status_code == 200
    assert fingerprint(revoked) in log
    assert fingerprint(fresh) in log
    for secret in (revoked, fresh, SANDBOX_API_KEY, "caller-own-token", "caller-cookie"):
        assert secret not in log


# In front of the real broker


@pytest.fixture
def real_broker_api(monkeypatch: pytest.MonkeyPatch, sandbox: KillBSandbox) -> Iterator[str]:
    """The real broker handler over loopback, its access-token secret (moto) holding a sandbox
    token and the sandbox as its baseUrl, as the refresher writes it."""
    secret_name = "killb-proxy-test/access-token"
    stored = AccessToken(
        token=login(sandbox),
        expires_at=int(time.time()) + 3600,
        api_key=SANDBOX_API_KEY,
        base_url=sandbox.base_url,
    )
    with mock_aws():
        boto3.client("secretsmanager").create_secret(
            Name=secret_name, SecretString=access_token_to_json(stored)
        )
        monkeypatch.setenv("ACCESS_TOKEN_SECRET_ID", secret_name)
        monkeypatch.delenv("ALLOWED_PRINCIPALS", raising=False)
        monkeypatch.delenv("REFRESHER_FUNCTION_NAME", raising=False)
        app = load_function("broker")
        with serve_broker(
            app.lambda_handler,
            caller_arn=CALLER_ARN,
            account_id=ACCOUNT_ID,
            credentials=environment_credentials(),
        ) as api:
            yield api.base_url


def test_proxy_serves_killb_with_the_real_brokers_token(
    sandbox: KillBSandbox, real_broker_api: str
) -> None:
    # Given the real broker holding a sandbox token, and a proxy told where KillB is (a broker
    # that names killbBaseUrl itself is served the same way: the broker's name wins)
    settings = ProxySettings(killb_url=sandbox.base_url)

    # When a caller asks for users through the proxy
    with running_proxy(BrokerAuth(real_broker_api), settings) as proxy:
        response = requests.get(f"{proxy.base_url}/api/v2/users", timeout=5)

    # Then KillB answered with the account's users
    assert response.status_code == 200
    assert len(response.json()["users"]) == 2
