"""Four training processes logging at once to one tracking server lose nothing."""

import subprocess
import sys
import textwrap

from mlflow import MlflowClient

N_PROCESSES = 4
N_STEPS = 50

WRITER = textwrap.dedent("""
    import sys
    from samsar.config import Params
    from samsar.tracking.runs import training_run

    uri, root, index = sys.argv[1], sys.argv[2], int(sys.argv[3])
    params = Params.model_validate({
        "root": root,
        "data": {"name": "concurrent", "classes": [{"name": "water", "color": [0, 0, 255]}]},
        "tracking": {"tracking_uri": uri, "system_metrics": False},
    })
    with training_run(params, f"writer{index}") as run:
        run.log_params({f"extra.p{k}": k * index for k in range(20)})
        for step in range({steps}):
            run.log_metrics({{"loss": 1.0 / (step + 1), "writer": float(index)}}, step=step)
""").replace("{steps}", str(N_STEPS))


def test_parallel_writers_lose_no_run_param_or_metric(mlflow_server, tmp_path, make_params):
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, mlflow_server, str(tmp_path), str(i)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(N_PROCESSES)
    ]
    try:
        outcomes = [w.communicate(timeout=300) for w in writers]
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
    for writer, (_, stderr) in zip(writers, outcomes):
        assert writer.returncode == 0, stderr[-3000:]

    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("samsar-concurrent")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == [f"writer{i}" for i in range(N_PROCESSES)]
    n_flat_params = len(make_params(tmp_path).model_dump(exclude={"root"}))  # at least one per section
    for run in runs:
        index = int(run.info.run_name.removeprefix("writer"))
        assert run.info.status == "FINISHED"
        assert all(run.data.params[f"extra.p{k}"] == str(k * index) for k in range(20))
        assert len(run.data.params) > 20 + n_flat_params
        history = client.get_metric_history(run.info.run_id, "loss")
        assert sorted(m.step for m in history) == list(range(N_STEPS))
        assert {m.value for m in client.get_metric_history(run.info.run_id, "writer")} == {float(index)}
