"""What samsar and its child processes print, and its log records, reach the flow run's logs."""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid

CHILD = "import sys; print('child stdout line'); print('child stderr line', file=sys.stderr)"


def _messages(flow_run_id: str) -> list[tuple[str, str]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[uuid.UUID(flow_run_id)])))
    return [(log.name, log.message) for log in logs]


def test_prints_children_and_samsar_records_are_flow_run_logs(prefect_server, capfd):
    from prefect import flow, get_run_logger
    from prefect.context import FlowRunContext

    from pipelines.flows import output_to_run_logs

    @flow
    def noisy() -> str:
        run_id = str(FlowRunContext.get().flow_run.id)
        with output_to_run_logs(run_id):
            print("parent stdout line")
            print("parent stderr line", file=sys.stderr)
            logging.getLogger("samsar.training.loop").info("samsar record line")
            get_run_logger().info("prefect record line")
            subprocess.run([sys.executable, "-c", CHILD], check=True)
        print("after the block")
        return run_id

    run_id = noisy()
    messages = _messages(run_id)
    texts = [m for _, m in messages]
    for line in ("parent stdout line", "parent stderr line", "child stdout line", "child stderr line", "samsar record line"):
        assert line in texts, (line, messages)
    # Prefect's own records are not captured again from its console output, nor is anything after the block.
    assert sum("prefect record line" in m for m in texts) == 1
    assert "after the block" not in texts
    # The console still shows everything, and the descriptors are back.
    out, err = capfd.readouterr()
    assert "parent stdout line" in out + err and "child stderr line" in out + err and "after the block" in out
