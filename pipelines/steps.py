"""Deployment steps of pipelines/prefect.yaml that a worker runs before a flow run starts.

A failing pull step otherwise shows up only on the worker's console, and the run ends Crashed
with an unrelated error of Prefect's. :func:`dvc_pull` reports its error in the flow run's logs
and as the message of its Failed state.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
from pathlib import Path
from typing import Any

from samsar.errors import one_line


def dvc_pull(targets: list[str] | str = ("preprocess", "pretrain"), directory: str | None = None) -> dict[str, Any]:
    """``dvc pull`` of ``targets`` (stages or paths) in ``directory`` (default: the working directory,
    the clone); its output is in the step's result (``stdout``)."""
    from samsar.remote import pull

    targets = targets.split() if isinstance(targets, str) else list(targets)
    try:
        return {"stdout": pull(Path(directory or "."), targets)}
    except Exception as exc:
        report_failure(f"pull step: {one_line(exc)}")
        raise


def report_failure(message: str) -> None:
    """``message`` in the flow run's logs and as its Failed state (a worker sets ``PREFECT__FLOW_RUN_ID``);
    on stderr only outside a flow run. Never hides the original error."""
    print(message, file=sys.stderr, flush=True)
    flow_run_id = os.environ.get("PREFECT__FLOW_RUN_ID")
    if not flow_run_id:
        return
    try:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import LogCreate
        from prefect.states import Failed

        with get_client(sync_client=True) as client:
            client.create_logs([LogCreate(name="samsar.pull", level=logging.ERROR, message=message,
                                          timestamp=dt.datetime.now(dt.timezone.utc), flow_run_id=flow_run_id)])
            # Terminal before the worker sees the process fail: its Crashed proposal is then refused.
            client.set_flow_run_state(flow_run_id, Failed(message=message), force=True)
    except Exception as exc:  # the server is unreachable: the worker's console still has the message
        print(f"could not report the pull failure to Prefect: {exc}", file=sys.stderr, flush=True)
