"""Prefect flows (``pipelines.flows``; batch mapping of many scenes: ``pipelines.batch``) and
deployments (``pipelines/prefect.yaml``) for samsar."""

import os

# Without PREFECT_API_URL a flow run starts Prefect's temporary local server; on a busy
# machine that can take longer than Prefect's default 20 s wait.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
# The temporary server would otherwise try to send usage telemetry (and log an error offline).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
