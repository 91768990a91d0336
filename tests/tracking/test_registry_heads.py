"""One registered model per head: box_prompt variants (tested with ground-truth boxes) never compete
with, or become champion of, the classwise model."""

import json

import pytest
from test_registry import cli, fake_trained_variant, tiles_for, write_params_yaml

from samsar.tracking import registry, store

BINARY = [{"name": "background", "color": [0, 0, 0]}, {"name": "ship", "color": [0, 255, 0]}]


@pytest.fixture
def mixed(tmp_path, make_params):
    return make_params(tmp_path, data={"name": "testset", "classes": BINARY, "background": "background"},
                       variants=["decoder_only", "lora", "decoder_only-box", "lora-box"])


def _aliases(params, name):
    return store.client(params).get_registered_model(name).aliases


def _variants(params, name):
    return {mv.tags["variant"]: mv for mv in store.client(params).search_model_versions(f"name='{name}'")}


def test_a_mixed_variant_list_never_makes_a_box_variant_champion_of_the_classwise_model(mixed):
    # The box variants score far higher on validation and test (their prompts come from the truth).
    fake_trained_variant(mixed, "decoder_only", tiles_for(0.6, noise=1), val_miou=0.5)
    fake_trained_variant(mixed, "lora", tiles_for(0.65, noise=2), val_miou=0.55)
    fake_trained_variant(mixed, "decoder_only-box", tiles_for(0.85, noise=3), val_miou=0.85)
    fake_trained_variant(mixed, "lora-box", tiles_for(0.9, noise=4), val_miou=0.9)

    decisions = registry.register_heads(mixed)
    assert list(decisions) == ["samsar-testset", "samsar-testset-box"]
    classwise, boxed = _variants(mixed, "samsar-testset"), _variants(mixed, "samsar-testset-box")
    assert set(classwise) == {"decoder_only", "lora"} and set(boxed) == {"decoder_only-box", "lora-box"}
    assert {mv.tags["head"] for mv in classwise.values()} == {"classwise"}
    assert {mv.tags["head"] for mv in boxed.values()} == {"box_prompt"}
    assert _aliases(mixed, "samsar-testset")["challenger"] == classwise["lora"].version
    assert _aliases(mixed, "samsar-testset-box")["challenger"] == boxed["lora-box"].version
    assert decisions["samsar-testset"].version == int(classwise["lora"].version)
    assert decisions["samsar-testset-box"].version == int(boxed["lora-box"].version)
    assert _aliases(mixed, "samsar-testset").get("champion") in (None, classwise["lora"].version)

    report = json.loads(mixed.path("reports/registry.json").read_text())
    assert set(report["models"]) == {"samsar-testset", "samsar-testset-box"}
    assert report["models"]["samsar-testset"]["versions"] == {v: int(mv.version) for v, mv in classwise.items()}
    assert report["models"]["samsar-testset-box"]["decision"]["version"] == int(boxed["lora-box"].version)
    # what the flows receive: the classwise model's decision
    assert registry.register_and_promote(mixed) is None  # nothing new now


def test_promote_refuses_a_box_version_in_the_classwise_model_and_names_the_head(mixed):
    fake_trained_variant(mixed, "lora-box", tiles_for(0.9, noise=4), val_miou=0.9)
    version = registry.register_variant(mixed, "lora-box")
    client = store.client(mixed)
    # a registry from before the heads had their own model: the box version sits in the classwise one
    client.create_registered_model("samsar-testset")
    old = client.create_model_version("samsar-testset", source=version.source, run_id=version.run_id,
                                      tags={"variant": "lora-box"})
    decision = registry.promote(mixed, version=int(old.version), head="classwise", dry_run=True)
    assert not decision.promoted and "uses the box_prompt head, not classwise" in decision.reasons[0]
    assert "samsar-testset-box" in decision.reasons[0]
    with pytest.raises(registry.RegistryError, match="use both heads.*--head classwise or --head box_prompt"):
        registry.promote(mixed)


def test_history_and_rollback_take_the_head(mixed, tmp_path):
    fake_trained_variant(mixed, "lora-box", tiles_for(0.9, noise=4), val_miou=0.9)
    registry.register_heads(mixed, ["lora-box"])
    assert [r["to"] for r in registry.promotion_history(mixed, "box_prompt")] == [1]
    assert registry.promotion_history(mixed, "classwise") == []
    path = write_params_yaml(mixed, tmp_path)
    result = cli("history", "--params", path, "--head", "box_prompt", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["promoted"] is True
    ambiguous = cli("rollback", "--params", path)
    assert ambiguous.exit_code == 1 and "--head" in ambiguous.output and "\n" not in ambiguous.output.strip()
    only_box = cli("rollback", "--params", path, "--head", "box_prompt")
    assert only_box.exit_code == 1 and "samsar-testset-box" in only_box.output and "no previous champion" in only_box.output
