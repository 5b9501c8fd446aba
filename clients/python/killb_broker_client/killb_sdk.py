"""The official KillB Python SDK (killb-sdk-python 1.0.4), fed by the broker.

A service that uses the SDK changes one line, and keeps the rest as it is:

    from killb.client import Client                       # before: logs in with the password
    client = Client(environment="SANDBOX", email=..., password=..., api_key=...)

    from killb_broker_client.killb_sdk import Client      # after: the broker's headers
    client = Client()                                     # $KILLB_BROKER_URL, or broker_url=
    client.User.get_by_query({"email": "ana@example.test"})

Built on the SDK's own classes (its services take an ApiRequests; this one asks the broker), so
`client.Account`, `User`, `Quotation`, `Savings` and `Ramps` are the SDK's. What the plain SDK
gets wrong and this adapter does not:

- it reads expiresIn (milliseconds) as seconds and keeps a one-hour token for ~41 days: here the
  broker's expiresIn decides, and a token KillB refuses is replaced;
- its production URL is plain http://killb.app: here each request goes to the broker's
  killbBaseUrl, over https:// (or to a loopback host) only;
- its login check (`status_code >= 200`) takes a refused login for a token: here nothing logs
  in, and no password is needed;
- it never retries a 401: here the refused token is reported to the broker (`rejected`) and the
  request sent once more with the new one; a second 401 in a row is the SDK's
  AuthenticationError, with no third request.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import requests
from killb.account import Account
from killb.api_requests import ApiRequests
from killb.client import Client as SdkClient
from killb.exceptions import AuthenticationError, KillBApiError
from killb.quotations import Quotation
from killb.ramp import Ramps
from killb.savings import Savings
from killb.user import User

from killb_broker_client.auth import BrokerAuth, IssuedHeaders
from killb_broker_client.errors import BrokerClientError, InsecureRequest

BROKER_URL_VARIABLE = "KILLB_BROKER_URL"
# The SDK's endpoints are relative to KillB's API root.
API_ROOT = "/api/v2"
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0


class BrokerTokenUnavailable(AuthenticationError):
    """No KillB headers could be had from the broker (it refused, has none now, or could not be
    reached); the broker's own error is the __cause__."""


class BrokerApiRequests(ApiRequests):
    """The SDK's ApiRequests, with the broker in place of the login: each request goes to the
    broker's killbBaseUrl with the broker's current headers (BrokerAuth: cached while the token
    lasts min_ttl, a 401 reported and retried once)."""

    def __init__(self, auth: BrokerAuth, session: requests.Session | None = None) -> None:
        # No environment, email or password: the SDK's login is never used.
        super().__init__(environment="BROKER", email="", password="")
        self.auth = auth
        self.session = session or requests.Session()

    def get_base_url(self) -> str:
        """KillB's API root for the broker's current token, https:// (or loopback) only."""
        issued = self._issued()
        if not issued.killb_base_url:
            raise KillBApiError(
                "the broker's answer names no usable killbBaseUrl (https://, or http:// to "
                "loopback): its refresher predates it, or names a KillB only it can reach"
            )
        # BrokerAuth took it only as https:// (or http:// to loopback), and checks again each
        # request's destination before putting the headers on it.
        self.base_url = issued.killb_base_url.rstrip("/") + API_ROOT
        return str(self.base_url)

    def token_expired(self) -> bool:
        return False  # BrokerAuth keeps the headers only while their token lasts min_ttl

    def authenticate(self) -> None:
        """Nothing to log in to: fetches the broker's current headers."""
        self._issued()

    def refresh_token(self) -> None:
        self.authenticate()

    def request(self, method: str, endpoint: str, **kwargs: Any) -> Any:
        """As the SDK's request: the answer's JSON, AuthenticationError for a 401, KillBApiError
        for any other failure."""
        url = f"{self.get_base_url()}/{endpoint}"
        kwargs.setdefault("timeout", (CONNECT_TIMEOUT, READ_TIMEOUT))
        try:
            response = self.session.request(method, url, auth=self.auth, **kwargs)
        except InsecureRequest as error:  # a redirect to plain http, say: KillB, not the broker
            raise KillBApiError(error.message) from error
        except BrokerClientError as error:
            raise BrokerTokenUnavailable(f"no KillB token from the broker: {error}") from error
        if response.status_code == 401:
            raise AuthenticationError("Authentication Failed")
        if not response.ok:
            raise KillBApiError(f"Error: {response.status_code} - {response.text}")
        return response.json()

    def _issued(self) -> IssuedHeaders:
        try:
            return self.auth.issued()
        except BrokerClientError as error:
            raise BrokerTokenUnavailable(f"no KillB token from the broker: {error}") from error


class Client(SdkClient):
    """killb.client.Client with the broker's headers instead of a login.

    broker_url: the broker API's URL, stage included (one, or several in order for failover);
    default $KILLB_BROKER_URL. min_ttl: seconds a token must still last when a request carries
    it. region: the region to sign for, when the URL names none.
    """

    def __init__(
        self,
        broker_url: str | Sequence[str] | None = None,
        *,
        min_ttl: int = 300,
        region: str | None = None,
    ) -> None:
        # The SDK's own __init__ logs in with a password: its services are built here instead.
        url = broker_url or os.environ.get(BROKER_URL_VARIABLE)
        if not url:
            raise ValueError(f"broker_url or ${BROKER_URL_VARIABLE} is required")
        self.api_requests = BrokerApiRequests(BrokerAuth(url, min_ttl=min_ttl, region=region))
        self.Account = Account(self.api_requests)
        self.User = User(self.api_requests)
        self.Quotation = Quotation(self.api_requests)
        self.Savings = Savings(self.api_requests)
        self.Ramps = Ramps(self.api_requests)
