"""Registration, the promotion gate, the decision history and rollback against a real SQLite registry.

Trained adapters are stood in for by runs that hold an (empty) logged model, a metrics file and a
per-tile confusion archive built here with numpy (deterministic), so the tests are fast;
tests/tracking/test_pyfunc.py loads a real adapter.
"""

import datetime as dt
import json
import tempfile

import numpy as np
import pytest
import yaml

from samsar.io import write_json
from samsar.tracking import registry, store
from samsar.uncertainty import TileConfusions, miou

MODEL = "samsar-testset"
CLASSES = ("building", "water", "background")
BACKGROUND = 2
N_TILES = 24
TILE_IDS = tuple(f"tile_{i:03d}" for i in range(N_TILES))
# Labelled pixels per (tile, class): the same test truth for every model; background is the majority.
TRUTH = np.random.default_rng(1234).integers(300, 900, size=(N_TILES, 3)) * np.array([1, 1, 4])


def tiles_for(quality, noise=0, seeds=(0, 1, 2), tile_ids=TILE_IDS):
    """Per-(seed, tile) confusions of a model recalling ``quality`` of each class's pixels.

    ``quality``: one float or one per class. Each seed gets its own offset (seed-to-seed spread),
    each (seed, tile, class) its own noise; ``noise`` seeds the draws, so two calls with the same
    quality and different ``noise`` are the same model from different training seeds.
    """
    rng = np.random.default_rng(noise)
    quality = np.broadcast_to(np.asarray(quality, dtype=float), (3,))
    truth = TRUTH[: len(tile_ids)]
    cm = np.zeros((len(seeds), len(tile_ids), 3, 3), dtype=np.int64)
    for s in range(len(seeds)):
        offset = rng.normal(0.0, 0.02)
        for t in range(len(tile_ids)):
            for i in range(3):
                recall = float(np.clip(quality[i] + offset + rng.normal(0.0, 0.05), 0.0, 1.0))
                correct = int(round(truth[t, i] * recall))
                cm[s, t, i, i] = correct
                cm[s, t, i, [j for j in range(3) if j != i]] = rng.multinomial(truth[t, i] - correct, [0.5, 0.5])
    return TileConfusions(cm, tuple(seeds), tuple(tile_ids), CLASSES)


def majority_tiles(seeds=(0, 1, 2)):
    """A model that predicts the majority class (background) everywhere, in every seed."""
    base = tiles_for(0.5).majority(BACKGROUND)
    return TileConfusions(np.repeat(base.confusion, len(seeds), axis=0), tuple(seeds), TILE_IDS, CLASSES)


def metrics_of(tiles):
    """metrics/<variant>.json numbers computed from the archive: means and stds over seeds."""
    per_seed = tiles.confusion.sum(axis=1).astype(float)  # (S, K, K)
    tp = np.diagonal(per_seed, axis1=1, axis2=2)
    union = per_seed.sum(axis=2) + per_seed.sum(axis=1) - tp
    iou = np.divide(tp, union, out=np.zeros_like(tp), where=union > 0)  # (S, K)
    seed_miou = miou(per_seed)
    return {
        "mIoU": float(seed_miou.mean()), "mIoU_std": float(seed_miou.std(ddof=1)),
        "per_class_iou": {c: float(iou[:, k].mean()) for k, c in enumerate(CLASSES)},
    }


def fake_trained_variant(params, variant, tiles, val_miou, data_hash="abc.dir", cut_short=False,
                         log_tiles=True, per_class=None):
    """A finished selected-seed run with a logged model and (optionally) its tiles archive, plus
    models/<variant>/train_summary.json and metrics/<variant>.json as training/evaluation write them
    (metrics computed from the archive; ``per_class`` overrides class IoUs, ``None`` = absent class)."""
    client = store.client(params)
    experiment_id = store.ensure_experiment(client, params)
    selected = tiles.seeds[0]
    run = client.create_run(experiment_id, tags={"variant": variant, "data_hash": data_hash, "seed": str(selected)},
                            run_name=f"{variant}-seed{selected}")
    run_id = run.info.run_id
    client.create_logged_model(experiment_id, name="model", source_run_id=run_id)
    if log_tiles:
        archive = tiles.save(params.root / "staging" / run_id / "tiles.npz")
        client.log_artifact(run_id, str(archive), "evaluation")
    client.set_terminated(run_id)
    write_json(params.variant_dir(variant) / "train_summary.json", {
        "mlflow_run_id": run_id, "seeds": list(tiles.seeds), "selected_seed": selected,
        "runs": [{"seed": s, "mlflow_run_id": run_id if s == selected else f"other-{s}"} for s in tiles.seeds],
    })
    numbers = metrics_of(tiles)
    write_json(params.metrics_path(variant), {
        **numbers, "per_class_iou": {**numbers["per_class_iou"], **(per_class or {})},
        "mF1": numbers["mIoU"] + 0.05, "mF1_std": 0.01, "OA": 0.9, "OA_std": 0.01, "kappa": 0.8, "kappa_std": 0.01,
        "FWIoU": 0.75, "FWIoU_std": 0.01, "val_mIoU": val_miou, "val_mIoU_std": 0.01,
        "seeds": list(tiles.seeds), "selected_seed": selected, "majority_class": "background", "majority_mIoU": 0.22,
        "cut_short": cut_short, "ignore_background": {"mIoU": 0.4}, "backbone": "tiny", "n_trainable_params": 1234,
    })
    return run_id


def register(params, variant):
    """Register ``variant`` and make it the challenger (what register_and_promote does for one variant)."""
    version = registry.register_variant(params, variant)
    store.client(params).set_registered_model_alias(MODEL, registry.CHALLENGER, version.version)
    return version


def aliases(params):
    return store.client(params).get_registered_model(MODEL).aliases


def version_tags(params, version):
    return store.client(params).get_model_version(MODEL, str(version)).tags


def first_champion(params, quality=0.6):
    fake_trained_variant(params, "decoder_only", tiles_for(quality, noise=1), val_miou=0.5)
    version = register(params, "decoder_only")
    assert registry.promote(params).promoted
    return version


def write_params_yaml(params, tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params.model_dump(mode="json", exclude={"root"})))
    return str(path)


def cli(*args):
    from typer.testing import CliRunner

    from samsar.cli import app

    return CliRunner().invoke(app, list(args))


# --- tags --------------------------------------------------------------------------------------------


def test_version_carries_seed_metric_and_caveat_tags(params):
    fake_trained_variant(params, "lora", tiles_for(0.6, seeds=(3, 4)), val_miou=0.55,
                         per_class={"building": 0.5, "water": None})
    tags = register(params, "lora").tags
    assert tags["variant"] == "lora" and tags["data_hash"] == "abc.dir"
    assert tags["seed"] == "3" and json.loads(tags["seeds"]) == [3, 4] and tags["cut_short"] == "false"
    assert tags["metric.val_mIoU"] == "0.55" and "metric.mIoU_std" in tags and "metric.val_mIoU_std" in tags
    assert tags["metric.per_class_iou.building"] == "0.5"
    assert "metric.per_class_iou.water" not in tags  # absent class: no tag, no crash
    assert "metric.selected_seed" not in tags and "metric.cut_short" not in tags
    assert tags["majority_class"] == "background"


# --- the gate -----------------------------------------------------------------------------------------


def test_first_model_becomes_champion_only_clear_of_the_baseline(params, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    fake_trained_variant(params, "lora", tiles_for(0.6), val_miou=0.5)
    version = register(params, "lora")
    decision = registry.promote(params)
    assert decision.promoted and decision.champion_version is None, decision.reasons
    assert aliases(params)["champion"] == version.version
    assert version_tags(params, version.version)["promotion.decision"] == "promoted"
    baseline = decision.intervals["baseline"]
    assert baseline["majority_class"] == "background" and baseline["low"] > params.promotion.baseline_margin
    assert any("majority-class baseline" in r and "> baseline margin 0.05" in r for r in decision.reasons)
    assert list((tmp_path / "tmp").iterdir()) == []  # the downloaded archives were cleaned up


def test_clearly_better_model_is_promoted(params):
    champion = first_champion(params, quality=0.55)
    fake_trained_variant(params, "lora", tiles_for(0.8, noise=2), val_miou=0.7)
    challenger = register(params, "lora")
    decision = registry.promote(params)
    assert decision.promoted, decision.reasons
    assert aliases(params) == {"champion": challenger.version, "challenger": challenger.version}
    interval = decision.intervals["champion"]
    assert interval["against"] == int(champion.version) and interval["low"] > 0 and interval["margin"] == 0.0
    assert any(f"minus champion v{champion.version}" in r and "> margin 0" in r for r in decision.reasons)
    assert version_tags(params, champion.version)["promotion.replaced_by"] == str(challenger.version)


def test_same_model_from_another_seed_is_refused_as_within_noise(params):
    champion = first_champion(params, quality=0.7)
    # The same variant trained again: same quality, other seeds, other noise, a new run and version.
    fake_trained_variant(params, "decoder_only", tiles_for(0.7, noise=7, seeds=(5, 6, 7)), val_miou=0.5)
    again = register(params, "decoder_only")
    assert again.version != champion.version and again.tags["seed"] == "5"
    decision = registry.promote(params)
    assert not decision.promoted
    interval = decision.intervals["champion"]
    assert interval["low"] <= 0 <= interval["high"]
    assert any("<= margin 0: within noise" in r for r in decision.reasons), decision.reasons
    assert aliases(params)["champion"] == champion.version
    tags = version_tags(params, again.version)
    assert tags["promotion.decision"] == "refused" and tags["promotion.compared_to"] == str(champion.version)
    assert "within noise" in tags["promotion.reasons"]


def test_other_data_is_refused(params):
    champion = first_champion(params)
    fake_trained_variant(params, "lora", tiles_for(0.9, noise=3), val_miou=0.9, data_hash="other.dir")
    register(params, "lora")
    decision = registry.promote(params)
    assert not decision.promoted
    assert "data hash differs (other.dir vs champion abc.dir)" in decision.reasons
    assert aliases(params)["champion"] == champion.version


def test_a_champion_with_a_pre_content_hash_is_named_as_such(params):
    first_champion(params)  # data_hash "abc.dir": a dvc.lock md5 from before content-only hashes
    fake_trained_variant(params, "lora", tiles_for(0.9, noise=3), val_miou=0.9, data_hash="sha256:0123")
    register(params, "lora")
    decision = registry.promote(params)
    assert not decision.promoted
    assert any("predates content-only data hashes" in reason for reason in decision.reasons), decision.reasons


def test_unknown_data_hash_is_refused(params):
    first_champion(params)
    fake_trained_variant(params, "lora", tiles_for(0.9, noise=3), val_miou=0.9, data_hash="unknown")
    register(params, "lora")
    decision = registry.promote(params)
    assert not decision.promoted and any("data hash unknown" in r for r in decision.reasons)


def test_model_at_the_majority_baseline_is_never_champion(params):
    fake_trained_variant(params, "decoder_only", majority_tiles(), val_miou=0.3)
    register(params, "decoder_only")
    first = registry.promote(params)
    assert not first.promoted and "champion" not in aliases(params)
    assert first.intervals["baseline"]["high"] == pytest.approx(0.0)
    assert any("majority-class baseline" in r and "<= baseline margin 0.05: not a clear win" in r for r in first.reasons)

    champion = first_champion(params)  # a real model becomes champion
    fake_trained_variant(params, "lora", majority_tiles(), val_miou=0.9)
    register(params, "lora")
    later = registry.promote(params)
    assert not later.promoted and aliases(params)["champion"] == champion.version
    assert any("not a clear win over the baseline" in r for r in later.reasons)


def test_cut_short_candidate_is_refused(params):
    fake_trained_variant(params, "lora", tiles_for(0.8), val_miou=0.7, cut_short=True)
    version = register(params, "lora")
    assert version.tags["cut_short"] == "true"
    decision = registry.promote(params)
    assert not decision.promoted and "champion" not in aliases(params)
    assert any("cut short by the wall-time guard" in r for r in decision.reasons)


def test_class_iou_drop_beyond_tolerance_is_refused(params):
    first_champion(params, quality=0.7)
    fake_trained_variant(params, "lora", tiles_for((0.35, 1.0, 1.0), noise=4), val_miou=0.8)
    register(params, "lora")
    decision = registry.promote(params)
    assert not decision.promoted
    assert decision.intervals["champion"]["low"] > 0  # better overall: only the class check refuses
    assert any("class 'building' IoU fell" in r and "more than 0.05" in r for r in decision.reasons)


def test_class_absent_from_one_model_is_skipped_not_fatal(params):
    fake_trained_variant(params, "decoder_only", tiles_for(0.55, noise=1), val_miou=0.5, per_class={"water": None})
    register(params, "decoder_only")
    registry.promote(params)
    fake_trained_variant(params, "lora", tiles_for(0.8, noise=2), val_miou=0.7)
    register(params, "lora")
    decision = registry.promote(params)
    assert decision.promoted, decision.reasons
    assert any("2 classes compared" in r and "skipped" in r for r in decision.reasons)


def test_missing_archive_or_other_tiles_are_refused(params):
    champion = first_champion(params)
    fake_trained_variant(params, "lora", tiles_for(0.9, noise=3), val_miou=0.9, log_tiles=False)
    register(params, "lora")
    missing = registry.promote(params)
    assert not missing.promoted
    assert any(f"has no {registry.TILES_ARTIFACT}" in r and "samsar evaluate -v lora" in r for r in missing.reasons)

    other = tuple(f"other_{i:03d}" for i in range(N_TILES))
    fake_trained_variant(params, "lora", tiles_for(0.9, noise=3, tile_ids=other), val_miou=0.9)
    register(params, "lora")
    differ = registry.promote(params)
    assert not differ.promoted and any("test tiles differ" in r for r in differ.reasons)
    assert aliases(params)["champion"] == champion.version


def test_dry_run_decides_without_acting_or_recording(params):
    fake_trained_variant(params, "lora", tiles_for(0.6), val_miou=0.5)
    version = register(params, "lora")
    decision = registry.promote(params, dry_run=True)
    assert decision.promoted and decision.dry_run
    assert "champion" not in aliases(params)
    assert "promotion.decision" not in version_tags(params, version.version)
    assert registry.promotion_history(params) == []


# --- selection on validation ---------------------------------------------------------------------------


def test_challenger_follows_validation_when_test_disagrees(params, capsys):
    fake_trained_variant(params, "decoder_only", tiles_for(0.65, noise=1), val_miou=0.80)  # best on validation
    fake_trained_variant(params, "lora", tiles_for(0.85, noise=2), val_miou=0.70)  # best on test
    test_miou = {v: json.loads(params.metrics_path(v).read_text())["mIoU"] for v in ("decoder_only", "lora")}
    assert test_miou["lora"] > test_miou["decoder_only"]
    decision = registry.register_and_promote(params)
    versions = {mv.tags["variant"]: mv.version for mv in store.client(params).search_model_versions(f"name='{MODEL}'")}
    assert aliases(params)["challenger"] == versions["decoder_only"]
    assert decision.version == int(versions["decoder_only"]) and decision.promoted
    assert "chosen by mean validation mIoU" in " ".join(capsys.readouterr().out.split())


def test_register_and_promote_reports_intervals_and_is_idempotent(params):
    fake_trained_variant(params, "decoder_only", tiles_for(0.5, noise=1), val_miou=0.4)
    fake_trained_variant(params, "lora", tiles_for(0.7, noise=2), val_miou=0.6)
    decision = registry.register_and_promote(params)
    client = store.client(params)
    versions = client.search_model_versions(f"name='{MODEL}'")
    assert len(versions) == 2
    best = next(v for v in versions if v.tags["variant"] == "lora")
    assert aliases(params) == {"challenger": best.version, "champion": best.version}
    assert decision.promoted and decision.version == int(best.version)
    report = json.loads(params.path("reports/registry.json").read_text())
    assert report["versions"] == {v.tags["variant"]: int(v.version) for v in versions}
    assert report["aliases"] == {"challenger": int(best.version), "champion": int(best.version)}
    assert report["decision"]["promoted"] is True and report["decision"]["compared_to"] is None
    assert report["decision"]["intervals"]["baseline"]["low"] == decision.intervals["baseline"]["low"] > 0.05
    assert registry.register_and_promote(params) is None
    assert len(client.search_model_versions(f"name='{MODEL}'")) == 2
    assert json.loads(params.path("reports/registry.json").read_text())["new_versions"] == []


def test_register_with_tracking_disabled_records_it(tmp_path, make_params):
    params = make_params(tmp_path, tracking={"enabled": False})
    assert registry.register_and_promote(params) is None
    assert json.loads(params.path("reports/registry.json").read_text()) == {"tracking": "disabled"}


def test_variant_without_metrics_is_not_registered(params):
    fake_trained_variant(params, "lora", tiles_for(0.6), val_miou=0.5)
    params.metrics_path("lora").unlink()
    assert registry.register_variant(params, "lora") is None


def test_promote_without_challenger_explains_what_to_run(params):
    fake_trained_variant(params, "lora", tiles_for(0.6), val_miou=0.5)
    registry.register_variant(params, "lora")
    with pytest.raises(registry.RegistryError, match="samsar register"):
        registry.promote(params)


# --- history and rollback -------------------------------------------------------------------------------


def test_rollback_restores_the_previous_champion(params):
    first = first_champion(params, quality=0.55)
    fake_trained_variant(params, "lora", tiles_for(0.8, noise=2), val_miou=0.7)
    second = register(params, "lora")
    assert registry.promote(params).promoted and aliases(params)["champion"] == second.version
    record = registry.rollback(params)
    assert aliases(params)["champion"] == first.version
    assert record["action"] == "rollback" and record["from"] == int(second.version) and record["to"] == int(first.version)
    assert version_tags(params, second.version)["promotion.rolled_back"].startswith(f"champion moved back to v{first.version}")
    with pytest.raises(registry.RegistryError, match="no previous champion"):
        registry.rollback(params)  # the first champion had none before it
    assert aliases(params)["champion"] == first.version


def test_rollback_without_previous_champion_is_a_one_line_cli_error(params, tmp_path):
    path = write_params_yaml(params, tmp_path)
    none_yet = cli("rollback", "--params", path)
    assert none_yet.exit_code == 1 and "has no champion" in none_yet.output
    first_champion(params)
    result = cli("rollback", "--params", path)
    assert result.exit_code == 1, result.output
    assert result.output.strip().count("\n") == 0 and "no previous champion" in result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)


def test_history_lists_every_decision_with_its_numbers(params, tmp_path):
    v1 = first_champion(params, quality=0.55)
    fake_trained_variant(params, "decoder_only", tiles_for(0.55, noise=7, seeds=(5, 6, 7)), val_miou=0.5)
    v2 = register(params, "decoder_only")
    assert not registry.promote(params).promoted
    fake_trained_variant(params, "lora", tiles_for(0.8, noise=2), val_miou=0.7)
    v3 = register(params, "lora")
    assert registry.promote(params).promoted
    registry.rollback(params)

    history = registry.promotion_history(params)
    assert [r["seq"] for r in history] == [1, 2, 3, 4]
    assert [r["action"] for r in history] == ["promote", "promote", "promote", "rollback"]
    assert [r["promoted"] for r in history] == [True, False, True, True]
    v1, v2, v3 = int(v1.version), int(v2.version), int(v3.version)
    assert [(r["from"], r["to"]) for r in history] == [(None, v1), (v1, v2), (v1, v3), (v3, v1)]
    for r in history:
        assert r["who"] and r["reasons"]
        assert dt.datetime.fromisoformat(r["time"]).utcoffset() == dt.timedelta(0)
    assert "champion" not in history[0]["intervals"] and history[0]["intervals"]["baseline"]["low"] > 0.05
    refused = history[1]["intervals"]["champion"]
    assert refused["against"] == v1 and refused["low"] <= 0 <= refused["high"] and refused["margin"] == 0.0
    assert history[2]["intervals"]["champion"]["low"] > 0
    assert any("within noise" in reason for reason in history[1]["reasons"])
    # Also on the registered model, one tag per decision.
    tags = store.client(params).get_registered_model(MODEL).tags
    assert sorted(k for k in tags if k.startswith("decision.")) == [f"decision.{i:06d}" for i in (1, 2, 3, 4)]

    path = write_params_yaml(params, tmp_path)
    as_json = cli("history", "--params", path, "--json")
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output) == history
    table = cli("history", "--params", path)
    assert table.exit_code == 0, table.output
    for word in ("promotion history", "rollback", "refused", "promoted", f"v{v3} → v{v1}"):
        assert word in table.output


def test_decision_record_stays_under_the_tag_limit():
    decision = registry.Decision(model=MODEL, version=2, champion_version=1, promoted=False, dry_run=False,
                                 checks=[registry.Check(False, "x" * 3000) for _ in range(20)], sequence=1)
    text = registry._encode(decision.record())
    assert len(text) <= registry.DECISION_TAG_LIMIT
    record = json.loads(text)
    assert record["reasons"][0] == "x" * (registry.REASON_LIMIT - 1) + "…" and "more on the version" in record["reasons"][-1]


# --- CLI -------------------------------------------------------------------------------------------------


def test_promote_cli_dry_run_prints_the_decision(params, tmp_path):
    fake_trained_variant(params, "lora", tiles_for(0.6), val_miou=0.5)
    register(params, "lora")
    path = write_params_yaml(params, tmp_path)
    result = cli("promote", "--params", path, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would be promoted (dry run)" in result.output
    assert "champion" not in aliases(params)
    missing = cli("promote", "--params", path, "--version", "7")
    assert missing.exit_code == 1 and "has no version 7" in missing.output
