"""The local API Gateway's AWS_IAM check: a request's SigV4 signature, verified as API Gateway
verifies it, against the one set of credentials the local stack was started with.

The expected signature is botocore's own (`SigV4Auth`), computed over the request rebuilt from
what arrived: its method, path and query as sent, exactly the headers it names as signed, the
hash of its body, and its own X-Amz-Date. Any difference is a refusal; so is a signature for
another key, region or service, one older (or further ahead) than five minutes, and, when the
credentials have a session token, a request without that token.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import ReadOnlyCredentials

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "execute-api"
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
# How far a request's X-Amz-Date may lie from the gateway's clock, either way (API Gateway's).
MAX_SKEW_SECONDS = 300


class SignatureRefused(Exception):
    """The request is refused; `missing` when it carried no signature at all. The message says
    why for the log and never holds a signature, a key or a token."""

    def __init__(self, reason: str, *, missing: bool = False) -> None:
        super().__init__(reason)
        self.missing = missing


class _ArrivedRequestAuth(SigV4Auth):
    """botocore's signer, told which headers were signed instead of choosing them itself."""

    def __init__(
        self,
        credentials: ReadOnlyCredentials,
        region: str,
        service: str,
        signed: HTTPHeaders,
    ) -> None:
        super().__init__(credentials, service, region)
        self._signed = signed

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        return self._signed


class SigV4Check:
    """Verifies requests signed for `service` in `region` with `credentials`."""

    def __init__(
        self,
        credentials: ReadOnlyCredentials,
        region: str,
        *,
        service: str = SERVICE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not (credentials.access_key and credentials.secret_key):
            raise ValueError("SigV4Check needs an access key id and a secret access key")
        self.credentials = credentials
        self.access_key: str = credentials.access_key
        self.region = region
        self.service = service
        self._clock = clock

    def verify(
        self, method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> str:
        """The access key id that signed this request, or SignatureRefused saying why not."""
        authorization = _only(headers, "authorization")
        if authorization is None:
            raise SignatureRefused("no Authorization header", missing=True)
        algorithm, _, fields = authorization.partition(" ")
        if algorithm != ALGORITHM:
            raise SignatureRefused("not an AWS4-HMAC-SHA256 Authorization header", missing=True)
        parts = _fields(fields)
        credential, signed_names, signature = (
            parts.get("Credential"),
            parts.get("SignedHeaders"),
            parts.get("Signature"),
        )
        if not (credential and signed_names and signature):
            raise SignatureRefused("Authorization lacks Credential, SignedHeaders or Signature")
        amz_date = self._checked_date(headers, credential)
        self._check_session_token(headers)
        signed = _signed_headers(headers, signed_names.split(";"))
        body_hash = hashlib.sha256(body).hexdigest()
        claimed_hash = _only(headers, "x-amz-content-sha256")
        if claimed_hash is not None and claimed_hash != body_hash:
            raise SignatureRefused("x-amz-content-sha256 is not the hash of the body")
        expected = self._signature(method, target, signed, body, amz_date)
        if not hmac.compare_digest(expected, signature):
            raise SignatureRefused("the signature does not match the request")
        return self.access_key

    def _checked_date(self, headers: Sequence[tuple[str, str]], credential: str) -> str:
        """The request's X-Amz-Date, once its scope is this gateway's and its time is now."""
        scope = credential.split("/")
        if len(scope) != 5:
            raise SignatureRefused("Credential is not key/date/region/service/aws4_request")
        access_key, day, region, service, terminator = scope
        if not hmac.compare_digest(access_key, self.access_key):
            raise SignatureRefused("signed with another access key")
        if region != self.region:
            raise SignatureRefused(f"signed for region {region!r}, not {self.region!r}")
        if service != self.service or terminator != "aws4_request":
            raise SignatureRefused(f"signed for service {service!r}, not {self.service!r}")
        amz_date = _only(headers, "x-amz-date")
        if amz_date is None:
            raise SignatureRefused("no X-Amz-Date header")
        try:
            signed_at = datetime.strptime(amz_date, AMZ_DATE_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            raise SignatureRefused("X-Amz-Date is not YYYYMMDDTHHMMSSZ") from None
        if day != amz_date[:8]:
            raise SignatureRefused("the Credential's date is not X-Amz-Date's")
        skew = signed_at.timestamp() - self._clock()
        if abs(skew) > MAX_SKEW_SECONDS:
            when = "older" if skew < 0 else "further ahead"
            raise SignatureRefused(f"signature expired: signed {when} than 5 minutes")
        return amz_date

    def _check_session_token(self, headers: Sequence[tuple[str, str]]) -> None:
        sent = _only(headers, "x-amz-security-token")
        wanted = self.credentials.token
        if wanted is None and sent is not None:
            raise SignatureRefused("a session token the credentials do not have")
        if wanted is not None and (sent is None or not hmac.compare_digest(sent, wanted)):
            raise SignatureRefused("no session token, or not the credentials' own")

    def _signature(
        self, method: str, target: str, signed: HTTPHeaders, body: bytes, amz_date: str
    ) -> str:
        parts = urlsplit(target)
        host = signed.get("host")
        if host is None:
            raise SignatureRefused("the Host header is not signed")
        # The path and query exactly as sent: botocore encodes and sorts them as any signer did.
        url = urlunsplit(("http", host, parts.path or "/", parts.query, ""))
        request = AWSRequest(method=method, url=url, data=body)
        request.context["timestamp"] = amz_date
        auth = _ArrivedRequestAuth(self.credentials, self.region, self.service, signed)
        canonical_request = auth.canonical_request(request)
        return str(auth.signature(auth.string_to_sign(request, canonical_request), request))


def _only(headers: Sequence[tuple[str, str]], wanted: str) -> str | None:
    """The value of a header that must appear at most once (a repeated one is refused)."""
    values = [value for name, value in headers if name.lower() == wanted]
    if len(values) > 1:
        raise SignatureRefused(f"{wanted} appears more than once")
    return values[0] if values else None


def _fields(text: str) -> dict[str, str]:
    """Credential=..., SignedHeaders=..., Signature=... (commas, optional spaces)."""
    fields = {}
    for part in text.split(","):
        name, _, value = part.strip().partition("=")
        fields[name] = value
    return fields


def _signed_headers(headers: Sequence[tuple[str, str]], names: list[str]) -> HTTPHeaders:
    """The headers the signature names, every value of each, as they arrived."""
    if names != sorted(set(names)) or "host" not in names:
        raise SignatureRefused("SignedHeaders is not a sorted list that includes host")
    signed = HTTPHeaders()
    for name in names:
        values = [value for sent, value in headers if sent.lower() == name]
        if not values:
            raise SignatureRefused(f"signed header {name!r} is not in the request")
        for value in values:
            signed[name] = value
    return signed
