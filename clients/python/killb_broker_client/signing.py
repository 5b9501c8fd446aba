"""Where the broker is and how a call to it is signed: SigV4 with botocore's own signer.

API Gateway checks the signature (AWS_IAM authorization) with service `execute-api` and the
region the API lives in, which its default URL names:
https://{api-id}.execute-api.{region}.amazonaws.com/{stage}.
"""

from __future__ import annotations

import ipaddress
import os
import re
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.session import Session as BotocoreSession

SERVICE = "execute-api"
EXECUTE_API_HOST = re.compile(
    r"^[a-z0-9]+\.execute-api\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+)\.amazonaws\.com(?:\.cn)?$"
)


class RegionNotFound(ValueError):
    """Neither the caller, the URL nor the environment names the region to sign for."""


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


def region_of(api_url: str, explicit: str | None, botocore_session: BotocoreSession) -> str:
    """The region to sign for: given, else the URL's, else AWS_REGION, else botocore's config."""
    if explicit:
        return explicit
    match = EXECUTE_API_HOST.match(urlsplit(api_url).hostname or "")
    if match:
        return match["region"]
    # A custom domain or a loopback demo URL names no region: fall back to the environment
    # (Lambda sets AWS_REGION), then to AWS_DEFAULT_REGION and the profile's config.
    configured = os.environ.get("AWS_REGION") or botocore_session.get_config_variable("region")
    if not configured:
        raise RegionNotFound("no region for the broker URL: pass region= or set AWS_REGION")
    return str(configured)


def sigv4_headers(method: str, url: str, credentials: Credentials, region: str) -> dict[str, str]:
    """Authorization, X-Amz-Date (and X-Amz-Security-Token) for this request, signed now."""
    request = AWSRequest(method=method, url=url)
    # Frozen, so the key, secret and session token all come from the same refresh.
    SigV4Auth(credentials.get_frozen_credentials(), SERVICE, region).add_auth(request)
    return dict(request.headers.items())
