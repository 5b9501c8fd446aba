"""The refresher's Lambda handler: on a schedule (or {"force": true}), keep a fresh KillB session
in Secrets Manager through killb_broker.policy, count what happened, return the summary."""

from __future__ import annotations

import os
import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from killb_broker.aws import secretsmanager_client
from killb_broker.client import KillBAuthClient
from killb_broker.config import RefresherConfig, is_sam_local
from killb_broker.errors import ConfigurationError, StoreError
from killb_broker.observability import logger, metrics
from killb_broker.policy import Action, KillB, Outcome, RefreshSettings, keep_fresh
from killb_broker.store import TokenStore

try:
    CONFIG = RefresherConfig.from_env(os.environ)
except ConfigurationError as error:
    logger.error(f"refresher configuration is invalid: {error}", extra={"variable": error.variable})
    raise

STORE = TokenStore(
    secretsmanager_client(),
    credentials_secret_id=CONFIG.credentials_secret_id,
    session_secret_id=CONFIG.session_secret_id,
    access_token_secret_id=CONFIG.access_token_secret_id,
)
SETTINGS = RefreshSettings(
    refresh_window=CONFIG.refresh_window_seconds, login_backoff=CONFIG.login_backoff_seconds
)
clock = time.time  # tests replace it to move through the refresh window and the backoff


def killb_client(api_key: str | None) -> KillB:
    """The KillB client for one run; tests replace it to keep the retries' backoff tiny."""
    return KillBAuthClient(
        CONFIG.killb_base_url,
        api_key=api_key,
        timeout=CONFIG.killb_timeout_seconds,
        # The URL the configuration accepted: under sam local, http://host.docker.internal too.
        allow_docker_host=is_sam_local(os.environ),
    )


def is_forced(event: Any) -> bool:
    """{"force": true} refreshes now; any other event is a scheduled run, its payload ignored."""
    force = event.get("force", False) if isinstance(event, dict) else None
    if not isinstance(force, bool):
        logger.warning(
            "event is not a scheduled event nor {'force': true}: running as not forced",
            extra={"event_type": type(event).__name__, "force_type": type(force).__name__},
        )
        return False
    return force


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics(raise_on_empty_metrics=False)
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, str | int | None]:
    logger.set_correlation_id(context.aws_request_id)
    now = clock()
    try:
        outcome = keep_fresh(
            STORE, killb_client, now=now, force=is_forced(event), settings=SETTINGS
        )
    except StoreError as error:
        # A summary, not an exception: the contract's callers (the schedule, the broker's
        # on-demand invoke) read the summary, and the RefresherFailed alarm counts it.
        logger.error(f"Secrets Manager failed: {error}", extra={"secret_id": error.secret_id})
        outcome = Outcome(Action.FAILED, None, f"Secrets Manager failed: {error}")

    for happened in outcome.events:
        metrics.add_metric(name=happened.value, unit=MetricUnit.Count, value=1)
    if outcome.action is Action.FAILED:
        metrics.add_metric(name="RefresherFailed", unit=MetricUnit.Count, value=1)
    if outcome.expires_at is not None:
        seconds_left = max(0, int(outcome.expires_at - now))
        metrics.add_metric(
            name="AccessTokenSecondsLeft", unit=MetricUnit.Seconds, value=seconds_left
        )

    summary = outcome.summary()
    logger.info(f"refresher run: {outcome.action.value}", extra=summary)
    return summary
