"""The refresher's Lambda handler: on a schedule, or when asked ({"force": true}, a rejected
token's fingerprint, {"revoke": true}), keep a fresh KillB session in Secrets Manager through
killb_broker.policy, tell operators what they must know (EventBridge), count what happened,
return the summary."""

from __future__ import annotations

import os
import time
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from killb_broker.aws import secretsmanager_client
from killb_broker.config import RefresherConfig, is_sam_local
from killb_broker.errors import ConfigurationError
from killb_broker.killb_api import KillBAuthClient
from killb_broker.notifications import Notifier
from killb_broker.observability import logger, metrics
from killb_broker.policy import KillB, RefreshSettings, run
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
    replica_regions=CONFIG.replica_regions,
)
SETTINGS = RefreshSettings(
    refresh_window=CONFIG.refresh_window_seconds,
    login_backoff=CONFIG.login_backoff_seconds,
    base_url=CONFIG.killb_base_url,
    token_check=CONFIG.token_check_seconds,
)
NOTIFIER = Notifier(CONFIG.stack_name)


def connect_killb(api_key: str | None) -> KillB:
    """The KillB client for one run, with the credentials' API key."""
    return KillBAuthClient(
        CONFIG.killb_base_url,
        api_key=api_key,
        timeout=CONFIG.killb_timeout_seconds,
        # The URL the configuration accepted: under sam local, http://host.docker.internal too.
        allow_docker_host=is_sam_local(os.environ),
    )


# log_event=False: an explicit choice wins over POWERTOOLS_LOGGER_LOG_EVENT, so no setting can
# make Powertools log the event.
@logger.inject_lambda_context(clear_state=True, log_event=False)
@metrics.log_metrics(raise_on_empty_metrics=False)
def lambda_handler(event: Any, context: LambdaContext) -> dict[str, str | int | None]:
    logger.set_correlation_id(context.aws_request_id)
    now = time.time()
    outcome = run(event, STORE, connect_killb, now=now, settings=SETTINGS)
    delivery = NOTIFIER.send(outcome.notices, now=now)
    for name, unit, value in outcome.metrics(now):
        metrics.add_metric(name=name, unit=unit, value=value)
    if delivery.sent:
        metrics.add_metric(name="EventsSent", unit=MetricUnit.Count, value=delivery.sent)
    if delivery.not_sent:
        metrics.add_metric(name="EventsNotSent", unit=MetricUnit.Count, value=delivery.not_sent)
    summary = outcome.summary()
    logger.info(f"refresher run: {outcome.action.value}", extra=summary)
    return summary
