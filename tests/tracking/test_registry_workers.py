"""What a team on a shared store and GPU workers needs of the registry: a clear error against the
wrong store, no version left without a gate decision, descriptions that carry the card summary,
paths that do not name a worker's temporary clone."""

import shutil

import pytest
from mlflow.exceptions import RestException
from test_registry import MODEL, fake_trained_variant, tiles_for

from samsar.io import write_json
from samsar.tracking import provenance, registry, runs, store


def test_register_against_another_store_fails_before_writing_anything(params, tmp_path, monkeypatch, empty_store):
    run_id = fake_trained_variant(params, "lora", tiles_for(0.7), val_miou=0.6)
    trained_in = store.tracking_uri(params)
    write_json(params.variant_dir("lora") / "seeds" / "0" / runs.RUN_RECORD, {"run_id": run_id, "tracking_uri": trained_in})
    shared = tmp_path / "shared.db"
    shutil.copyfile(empty_store, shared)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{shared}")

    with pytest.raises(registry.RegistryError) as error:
        registry.register_and_promote(params)
    message = str(error.value)
    assert "\n" not in message
    assert f"sqlite:///{shared}" in message and trained_in in message and run_id in message
    assert "nothing was registered" in message
    assert store.client(params).search_registered_models() == []  # not even the registered model


def test_a_version_whose_gate_broke_off_is_gated_by_the_rerun(params, monkeypatch):
    fake_trained_variant(params, "lora", tiles_for(0.7), val_miou=0.6)
    real_promote = registry.promote

    def server_error(*args, **kwargs):
        raise RestException({"error_code": "INTERNAL_ERROR", "message": "upstream connect error"})

    monkeypatch.setattr(registry, "promote", server_error)
    with pytest.raises(registry.RegistryError, match="run `samsar register` again") as error:
        registry.register_and_promote(params)
    assert "upstream connect error" in str(error.value) and "\n" not in str(error.value)
    client = store.client(params)
    (version,) = client.search_model_versions(f"name='{MODEL}'")
    assert version.tags[registry.GATE_TAG] == registry.GATE_FAILED
    assert "promotion.decision" not in version.tags

    monkeypatch.setattr(registry, "promote", real_promote)
    decision = registry.register_and_promote(params)  # nothing new to register, but an undecided version
    assert decision is not None and decision.version == int(version.version) and decision.promoted
    tags = client.get_model_version(MODEL, version.version).tags
    assert tags[registry.GATE_TAG] == "promoted" and tags["promotion.decision"] == "promoted"
    assert len(client.search_model_versions(f"name='{MODEL}'")) == 1
    assert registry.register_and_promote(params) is None  # now decided: nothing left to gate


def test_a_version_left_pending_is_gated_by_the_rerun(params):
    """A crash between registration and the gate (no chance to tag it failed) leaves ``gate=pending``."""
    fake_trained_variant(params, "lora", tiles_for(0.7), val_miou=0.6)
    version = registry.register_variant(params, "lora")
    assert version.tags[registry.GATE_TAG] == registry.GATE_PENDING
    decision = registry.register_and_promote(params)
    assert decision is not None and decision.version == int(version.version)
    assert store.client(params).get_model_version(MODEL, version.version).tags[registry.GATE_TAG] == "promoted"


def test_versions_not_chosen_as_challenger_say_so(params):
    fake_trained_variant(params, "decoder_only", tiles_for(0.5, noise=1), val_miou=0.4)
    fake_trained_variant(params, "lora", tiles_for(0.7, noise=2), val_miou=0.6)
    registry.register_and_promote(params)
    gates = {mv.tags["variant"]: mv.tags[registry.GATE_TAG]
             for mv in store.client(params).search_model_versions(f"name='{MODEL}'")}
    assert gates == {"decoder_only": registry.GATE_NOT_CHOSEN, "lora": "promoted"}


def test_version_description_is_the_card_summary(params):
    tiles = tiles_for(0.7, seeds=(0, 1))
    fake_trained_variant(params, "lora", tiles, val_miou=0.6, cut_short=True, per_class={"water": None})
    tiles.save(params.metrics_path("lora").with_suffix(".tiles.npz"))
    description = registry.register_variant(params, "lora").description
    assert description.startswith("**lora**, 2 seed(s) [0, 1]")
    assert "mIoU 0." in description and "± 0." in description and "95% interval" in description
    assert "CUT SHORT" in description and "not tested on water" in description
    assert "Base: `models/base/sam_tiny_base.pth`" in description  # the pretrain output, as params name it


def test_experiment_opens_on_the_model_training_view(params):
    client = store.client(params)
    experiment_id = client.create_experiment("samsar-testset")  # made before the tag existed
    assert store.ensure_experiment(client, params) == experiment_id
    assert client.get_experiment(experiment_id).tags[store.EXPERIMENT_KIND_TAG] == "custom_model_development"


def test_base_checkpoint_is_recorded_by_its_project_path(make_params, tmp_path):
    params = make_params(tmp_path / "clone-1234")
    checkpoint = params.path(params.pretrain.output)
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"weights")
    tags = runs.run_tags(params, "lora")
    assert tags["base_checkpoint_path"] == "models/base/sam_tiny_base.pth"
    assert tags["base_checkpoint_sha256"] == provenance.base_checkpoint_id(params) != "random-init"
    configured = make_params(tmp_path / "other", model={"checkpoint": str(tmp_path / "other" / "ckpt" / "sam.pth")})
    assert provenance.base_checkpoint_ref(configured) == "ckpt/sam.pth"
    outside = make_params(tmp_path / "third", model={"checkpoint": "/shared/sam_vit_b.pth"})
    assert provenance.base_checkpoint_ref(outside) == "/shared/sam_vit_b.pth"


def test_recorded_store_never_keeps_credentials(tmp_path):
    assert runs.public_uri("https://alice:secret@mlflow.example.com:5000/x") == "https://mlflow.example.com:5000/x"
    assert runs.public_uri("sqlite:////tmp/mlflow.db") == "sqlite:////tmp/mlflow.db"
    write_json(tmp_path / "seeds" / "3" / runs.RUN_RECORD, {"run_id": "r3", "tracking_uri": "http://a:5000"})
    assert runs.recorded_store(tmp_path / "seeds", "r3") == "http://a:5000"
    assert runs.recorded_store(tmp_path / "seeds", "r4") is None
