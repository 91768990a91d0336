"""Four training processes logging at once to one tracking server lose nothing."""

import json
import subprocess
import sys
import textwrap

from mlflow import MlflowClient

from samsar.config import Params
from samsar.tracking.runs import flatten_params

N_PROCESSES = 4
N_STEPS = 50
N_EXTRA_PARAMS = 20

WRITER = textwrap.dedent("""
    import json, sys
    from samsar.config import Params
    from samsar.tracking.runs import training_run

    params, index, steps = Params.model_validate(json.loads(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3])
    with training_run(params, f"writer{index}", seed=0) as run:
        run.log_params({f"extra.p{k}": k * index for k in range(20)})
        for step in range(steps):
            run.log_metrics({"loss": 1.0 / (step + 1), "writer": float(index)}, step=step)
""")


def test_parallel_writers_lose_no_run_param_or_metric(mlflow_server, tmp_path):
    raw = {
        "root": str(tmp_path),
        "data": {"name": "concurrent", "classes": [{"name": "water", "color": [0, 0, 255]}, {"name": "land", "color": [0, 255, 0]}],
                 "background": None},
        "tracking": {"tracking_uri": mlflow_server, "system_metrics": False},
    }
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, json.dumps(raw), str(i), str(N_STEPS)],
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
    assert sorted(r.info.run_name for r in runs) == [f"writer{i}-seed0" for i in range(N_PROCESSES)]
    params_keys = set(flatten_params(Params.model_validate(raw)))
    for run in runs:
        index = int(run.info.run_name.removeprefix("writer").removesuffix("-seed0"))
        assert run.info.status == "FINISHED"
        assert set(run.data.params) == params_keys | {"seed"} | {f"extra.p{k}" for k in range(N_EXTRA_PARAMS)}
        assert all(run.data.params[f"extra.p{k}"] == str(k * index) for k in range(N_EXTRA_PARAMS))
        history = client.get_metric_history(run.info.run_id, "loss")
        assert sorted(m.step for m in history) == list(range(N_STEPS))
        assert {m.value for m in client.get_metric_history(run.info.run_id, "writer")} == {float(index)}
