"""Where a broker is and how a call to it is signed: SigV4 with botocore's own signer.

API Gateway checks the signature (AWS_IAM authorization) with service `execute-api` and the
region the API lives in, which each of its host forms names:

  {api-id}.execute-api.{region}.amazonaws.com               the default endpoint
  {api-id}-{vpce-id}.execute-api.{region}.amazonaws.com     a private API's endpoint alias
  {vpce-id}-{suffix}.execute-api.{region}.vpce.amazonaws.com  a VPC endpoint's own name; the
                                                            API is named in x-apigw-api-id

(`.amazonaws.com.cn` in the China partition). A custom domain or a loopback URL names no region.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.session import Session as BotocoreSession

from killb_broker_client.credentials import with_aws_trouble_as_client_error

SERVICE = "execute-api"
# The header that names the API when the host is a VPC endpoint's: many APIs share that host.
API_ID_HEADER = "x-apigw-api-id"
_REGION = r"(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+)"
_PARTITION_DOMAIN = r"amazonaws\.com(?:\.cn)?"
_VPCE_ID = r"vpce-[0-9a-z]+"
_API_ID = r"[a-z0-9]+"
DEFAULT_HOST = re.compile(rf"^(?P<api_id>{_API_ID})\.execute-api\.{_REGION}\.{_PARTITION_DOMAIN}$")
ENDPOINT_ALIAS_HOST = re.compile(
    rf"^(?P<api_id>{_API_ID})-{_VPCE_ID}\.execute-api\.{_REGION}\.{_PARTITION_DOMAIN}$"
)
VPCE_HOST = re.compile(
    rf"^{_VPCE_ID}(?:-[a-z0-9]+)+\.execute-api\.{_REGION}\.vpce\.{_PARTITION_DOMAIN}$"
)
API_ID = re.compile(_API_ID)


class RegionNotFound(ValueError):
    """Neither the caller, the URL nor the environment names the region to sign for."""


MISSING_API_ID = (
    "a VPC endpoint host serves many APIs: pass the broker API's id (api_id=, --api-id), or use "
    "the API's endpoint alias {api-id}-{vpce-id}.execute-api.{region}.amazonaws.com"
)


@dataclass(frozen=True, slots=True)
class BrokerEndpoint:
    """One broker API: its root URL (stage included), the region its calls are signed for, and
    the headers its host needs besides the signature (x-apigw-api-id for a VPC endpoint host).

    api_id_missing: a VPC endpoint host given without the API id; no call can reach the API.
    """

    url: str
    region: str
    routing_headers: dict[str, str] = field(default_factory=dict)
    api_id_missing: bool = False


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: the only hosts plain http:// may carry a token to."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def broker_base_url(api_url: str) -> str:
    """The API's root (stage included) without a trailing slash; https, or http to loopback."""
    parts = urlsplit(api_url.strip())
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise ValueError("the broker URL must be an absolute https:// URL")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ValueError("the broker URL must use https:// (http only to a loopback host)")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("the broker URL must not carry a query, a fragment or user info")
    return api_url.strip().rstrip("/")


def broker_endpoint(
    api_url: str,
    *,
    region: str | None = None,
    api_id: str | None = None,
    botocore_session: BotocoreSession,
) -> BrokerEndpoint:
    """The endpoint of one broker URL: where it is, the region to sign for, the routing headers.

    api_id: the API's id, sent as x-apigw-api-id when the host is a VPC endpoint's own name
    (other host forms carry the API in the host, and ignore it). Without it such an endpoint
    is still made, its region known, but marked api_id_missing: each call to it is refused.
    """
    url = broker_base_url(api_url)
    if api_id is not None and not API_ID.fullmatch(api_id):
        raise ValueError("api_id must be an API Gateway API id: lowercase letters and digits")
    routing: dict[str, str] = {}
    is_vpce_host = bool(VPCE_HOST.match(urlsplit(url).hostname or ""))
    if is_vpce_host and api_id is not None:
        routing[API_ID_HEADER] = api_id
    missing = is_vpce_host and api_id is None
    return BrokerEndpoint(url, region_of(url, region, botocore_session), routing, missing)


def region_in_host(host: str) -> str | None:
    """The region an API Gateway host names, in any of its three forms; None for another host."""
    for form in (DEFAULT_HOST, ENDPOINT_ALIAS_HOST, VPCE_HOST):
        match = form.match(host.lower())
        if match:
            return match["region"]
    return None


def region_of(api_url: str, explicit: str | None, botocore_session: BotocoreSession) -> str:
    """The region to sign for: given, else the URL's, else AWS_REGION, else botocore's config."""
    if explicit:
        return explicit
    named = region_in_host(urlsplit(api_url).hostname or "")
    if named:
        return named
    # A custom domain or a loopback demo URL names no region: fall back to the environment
    # (Lambda sets AWS_REGION), then to AWS_DEFAULT_REGION and the profile's config (which may
    # be missing or broken: that is the caller's AWS setup at fault, said as such).
    configured = os.environ.get("AWS_REGION") or with_aws_trouble_as_client_error(
        botocore_session, lambda: botocore_session.get_config_variable("region")
    )
    if not configured:
        raise RegionNotFound("no region for the broker URL: pass region= or set AWS_REGION")
    return str(configured)


def sigv4_headers(
    method: str,
    url: str,
    credentials: Credentials,
    region: str,
    signed_headers: dict[str, str] | None = None,
) -> dict[str, str]:
    """Authorization, X-Amz-Date (and X-Amz-Security-Token) for this request, signed now, with
    signed_headers among the headers signed (and returned, to be sent as they were signed)."""
    request = AWSRequest(method=method, url=url, headers=dict(signed_headers or {}))
    # Frozen, so the key, secret and session token all come from the same refresh.
    SigV4Auth(credentials.get_frozen_credentials(), SERVICE, region).add_auth(request)
    return dict(request.headers.items())
