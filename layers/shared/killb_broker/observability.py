"""The one Logger and Metrics every module shares.

The service name comes from POWERTOOLS_SERVICE_NAME (set in the template's Globals). No Tracer:
X-Ray tracing is on in the template, and the tracing SDK's import cost buys too little here.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics

METRICS_NAMESPACE = "KillBCredentialBroker"

logger = Logger(use_rfc3339=True)
metrics = Metrics(namespace=METRICS_NAMESPACE)
