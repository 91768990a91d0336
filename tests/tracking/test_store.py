from pathlib import Path

from samsar.tracking import store


def test_default_store_is_sqlite_under_project_root(params, tmp_path):
    uri = store.tracking_uri(params)
    assert uri == f"sqlite:///{(tmp_path / 'mlflow' / 'mlflow.db').resolve()}"
    assert Path(uri.removeprefix("sqlite:///")).is_absolute()


def test_dvc_experiment_copies_share_the_main_project_store(tmp_path, monkeypatch, make_params):
    main, copy = tmp_path / "main", tmp_path / "main" / ".dvc" / "tmp" / "exps" / "tmpabc"
    copy.mkdir(parents=True)
    monkeypatch.setenv("DVC_ROOT", str(main))  # what DVC sets for stages of experiments run in temp copies
    params = make_params(copy)
    assert store.tracking_uri(params) == f"sqlite:///{(main / 'mlflow' / 'mlflow.db').resolve()}"
    assert store.artifact_root(params) == (main / "mlflow" / "artifacts").resolve()


def test_env_and_params_point_at_a_server(tmp_path, monkeypatch, make_params):
    configured = make_params(tmp_path, tracking={"tracking_uri": "http://127.0.0.1:5999"})
    assert store.tracking_uri(configured) == "http://127.0.0.1:5999"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:6001")
    assert store.tracking_uri(configured) == "http://127.0.0.1:6001"


def test_experiment_per_dataset_with_project_artifact_dir(params, tmp_path):
    client = store.client(params)
    experiment_id = store.ensure_experiment(client, params)
    assert store.ensure_experiment(client, params) == experiment_id
    experiment = client.get_experiment(experiment_id)
    assert experiment.name == "samsar-testset"
    assert experiment.artifact_location == (tmp_path / "mlflow" / "artifacts").resolve().as_uri()


def test_ui_command_serves_project_store_on_localhost(params, tmp_path):
    command = store.ui_command(params, 5123)
    assert command[command.index("--host") + 1] == "127.0.0.1"
    assert command[command.index("--port") + 1] == "5123"
    assert command[command.index("--backend-store-uri") + 1] == store.tracking_uri(params)
    assert command[command.index("--default-artifact-root") + 1] == (tmp_path / "mlflow" / "artifacts").resolve().as_uri()
