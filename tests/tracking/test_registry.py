"""Registration and the promotion gate against a real SQLite-backed registry.

The gate reads only version tags, so these tests stand in for trained adapters with runs that
hold an (empty) logged model; tests/tracking/test_pyfunc.py loads a real adapter.
"""

import json

import pytest
import yaml

from samsar.io import write_json
from samsar.tracking import registry, store

CLASSES = ("building", "water", "background")


def fake_trained_variant(params, variant, miou, ious=(0.6, 0.7, 0.8), data_hash="abc.dir"):
    """A finished training run with a logged model, its train_summary.json and metrics/<variant>.json."""
    client = store.client(params)
    experiment_id = store.ensure_experiment(client, params)
    run = client.create_run(experiment_id, tags={"variant": variant, "data_hash": data_hash}, run_name=variant)
    client.create_logged_model(experiment_id, name="model", source_run_id=run.info.run_id)
    client.set_terminated(run.info.run_id)
    write_json(params.variant_dir(variant) / "train_summary.json", {"mlflow_run_id": run.info.run_id})
    write_json(params.metrics_path(variant), {
        "mIoU": miou, "mF1": miou + 0.05, "OA": 0.9, "kappa": 0.8, "FWIoU": 0.75,
        "per_class_iou": dict(zip(CLASSES, ious)), "n_trainable_params": 1234, "train_seconds": 5.0,
    })
    return run.info.run_id


def register(params, variant):
    version = registry.register_variant(params, variant)
    store.client(params).set_registered_model_alias("samsar-testset", registry.CHALLENGER, version.version)
    return version


def aliases(params):
    return store.client(params).get_registered_model("samsar-testset").aliases


def test_first_model_becomes_champion(params):
    fake_trained_variant(params, "lora", 0.5)
    version = register(params, "lora")
    assert version.tags["variant"] == "lora" and version.tags["data_hash"] == "abc.dir"
    assert version.tags["metric.mIoU"] == "0.5" and version.tags["metric.per_class_iou.water"] == "0.7"
    decision = registry.promote(params)
    assert decision.promoted and decision.champion_version is None
    assert aliases(params)["champion"] == version.version
    tags = store.client(params).get_model_version("samsar-testset", version.version).tags
    assert tags["promotion.decision"] == "promoted"


def test_better_challenger_is_promoted(params):
    fake_trained_variant(params, "decoder_only", 0.5)
    registry.promote(params, version=int(register(params, "decoder_only").version))
    fake_trained_variant(params, "lora", 0.6, ious=(0.58, 0.75, 0.85))  # building -0.02, within tolerance
    challenger = register(params, "lora")
    decision = registry.promote(params)
    assert decision.promoted, decision.reasons
    assert aliases(params) == {"champion": challenger.version, "challenger": challenger.version}
    previous = store.client(params).get_model_version("samsar-testset", decision.champion_version)
    assert previous.tags["promotion.replaced_by"] == str(challenger.version)


def test_worse_challenger_is_refused_and_decision_recorded(params):
    fake_trained_variant(params, "decoder_only", 0.6)
    champion = register(params, "decoder_only")
    registry.promote(params)
    fake_trained_variant(params, "lora", 0.55)
    challenger = register(params, "lora")
    decision = registry.promote(params)
    assert not decision.promoted
    assert any("mIoU 0.5500 < champion 0.6000" in r for r in decision.reasons)
    assert aliases(params)["champion"] == champion.version
    tags = store.client(params).get_model_version("samsar-testset", challenger.version).tags
    assert tags["promotion.decision"] == "refused"
    assert tags["promotion.compared_to"] == str(champion.version)
    assert "mIoU" in tags["promotion.reasons"]


def test_other_data_hash_is_refused(params):
    fake_trained_variant(params, "decoder_only", 0.5)
    register(params, "decoder_only")
    registry.promote(params)
    fake_trained_variant(params, "lora", 0.9, ious=(0.9, 0.9, 0.9), data_hash="other.dir")
    register(params, "lora")
    decision = registry.promote(params)
    assert not decision.promoted
    assert any("data hash differs" in r for r in decision.reasons)


def test_class_iou_drop_beyond_tolerance_is_refused(params):
    fake_trained_variant(params, "decoder_only", 0.5, ious=(0.6, 0.7, 0.8))
    register(params, "decoder_only")
    registry.promote(params)
    fake_trained_variant(params, "lora", 0.7, ious=(0.4, 0.9, 0.9))
    register(params, "lora")
    decision = registry.promote(params)
    assert not decision.promoted
    assert any("class 'building' IoU fell" in r for r in decision.reasons)


def test_dry_run_decides_without_acting(params):
    fake_trained_variant(params, "lora", 0.5)
    version = register(params, "lora")
    decision = registry.promote(params, dry_run=True)
    assert decision.promoted and decision.dry_run
    assert "champion" not in aliases(params)
    assert "promotion.decision" not in store.client(params).get_model_version("samsar-testset", version.version).tags


def test_register_and_promote_picks_best_new_version_and_is_idempotent(params):
    fake_trained_variant(params, "decoder_only", 0.4)
    fake_trained_variant(params, "lora", 0.6)
    decision = registry.register_and_promote(params)
    client = store.client(params)
    versions = client.search_model_versions("name='samsar-testset'")
    assert len(versions) == 2
    best = next(v for v in versions if v.tags["variant"] == "lora")
    assert aliases(params) == {"challenger": best.version, "champion": best.version}
    assert decision.promoted and decision.version == int(best.version)
    report = json.loads(params.path("reports/registry.json").read_text())
    assert report["versions"] == {v.tags["variant"]: int(v.version) for v in versions}
    assert report["aliases"] == {"challenger": int(best.version), "champion": int(best.version)}
    assert report["decision"]["promoted"] is True
    assert registry.register_and_promote(params) is None
    assert len(client.search_model_versions("name='samsar-testset'")) == 2
    assert json.loads(params.path("reports/registry.json").read_text())["new_versions"] == []


def test_register_with_tracking_disabled_records_it(tmp_path, make_params):
    params = make_params(tmp_path, tracking={"enabled": False})
    assert registry.register_and_promote(params) is None
    assert json.loads(params.path("reports/registry.json").read_text()) == {"tracking": "disabled"}


def test_variant_without_metrics_is_not_registered(params):
    fake_trained_variant(params, "lora", 0.6)
    params.metrics_path("lora").unlink()
    assert registry.register_variant(params, "lora") is None


def test_promote_without_challenger_explains_what_to_run(params):
    fake_trained_variant(params, "lora", 0.6)
    registry.register_variant(params, "lora")
    with pytest.raises(registry.RegistryError, match="samsar register"):
        registry.promote(params)


def test_promote_cli_dry_run_prints_the_decision(params, tmp_path):
    from typer.testing import CliRunner

    from samsar.cli import app

    fake_trained_variant(params, "lora", 0.5)
    register(params, "lora")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params.model_dump(mode="json", exclude={"root"})))
    result = CliRunner().invoke(app, ["promote", "--params", str(tmp_path / "params.yaml"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would be promoted (dry run)" in result.output
    assert "champion" not in aliases(params)
    missing = CliRunner().invoke(app, ["promote", "--params", str(tmp_path / "params.yaml"), "--version", "7"])
    assert missing.exit_code == 1 and "has no version 7" in missing.output
