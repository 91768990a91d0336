"""Model registry: every evaluated variant becomes a version; ``champion`` moves only through a gate.

The registered model is ``samsar-<dataset>``. A new version gets tags for its test metrics
(``metric.<name>``, ``metric.per_class_iou.<class>``), ``variant`` and ``data_hash``; the best new
version gets alias ``challenger``. :func:`promote` moves ``champion`` to it only if it was tested
on the same data, beats the champion's metric by the margin, and loses no class's IoU beyond the
tolerance. Decisions are written as version tags; nothing is deleted or overwritten.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import LoggedModel
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from rich.console import Console
from rich.table import Table

from samsar.config import Params
from samsar.io import write_json
from samsar.tracking import store
from samsar.tracking.provenance import UNKNOWN

CHALLENGER = "challenger"
CHAMPION = "champion"
METRIC_PREFIX = "metric."
CLASS_IOU_PREFIX = METRIC_PREFIX + "per_class_iou."

console = Console()


class RegistryError(ValueError):
    """The registered model lacks what was asked for (a version, the challenger alias)."""


@dataclass(frozen=True)
class Check:
    """One gate condition and whether the candidate passed it."""

    passed: bool
    reason: str


@dataclass(frozen=True)
class Decision:
    """Outcome of the promotion gate for one model version."""

    model: str
    version: int
    champion_version: int | None
    promoted: bool
    dry_run: bool
    checks: list[Check] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        return [c.reason for c in self.checks]

    @property
    def tags(self) -> dict[str, str]:
        """The version tags that record this decision."""
        return {
            "promotion.decision": "promoted" if self.promoted else "refused",
            "promotion.reasons": "; ".join(self.reasons),
            "promotion.compared_to": str(self.champion_version) if self.champion_version else "none",
            "promotion.time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }


def metric_tags(metrics: dict[str, Any]) -> dict[str, str]:
    """The headline numbers of a metrics/<variant>.json as version tags.

    Top-level numbers become ``metric.<name>``, per-class IoUs ``metric.per_class_iou.<class>``;
    the other breakdowns stay in the metrics file (logged with the run).
    """
    tags = {
        METRIC_PREFIX + key: repr(float(value))
        for key, value in metrics.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    for cls, value in metrics.get("per_class_iou", {}).items():
        tags[CLASS_IOU_PREFIX + cls] = repr(float(value))
    return tags


def register_variant(params: Params, variant: str, mlflow_client: MlflowClient | None = None) -> ModelVersion | None:
    """Register the evaluated ``variant`` as a new version (alias-free); ``None`` if not ready.

    Idempotent: a run already registered is not registered again (its version is returned).
    """
    mlflow_client = mlflow_client or store.client(params)
    name = store.model_name(params)
    metrics_file = params.metrics_path(variant)
    if not metrics_file.is_file():
        console.print(f"[yellow]{variant}: no {metrics_file}; run `samsar evaluate -v {variant}` first[/]")
        return None
    run_id = find_run(params, variant, mlflow_client)
    if run_id is None:
        console.print(f"[yellow]{variant}: no finished MLflow run; train it with tracking enabled[/]")
        return None
    _ensure_registered_model(mlflow_client, name)
    existing = mlflow_client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    if existing:
        return existing[0]
    run = mlflow_client.get_run(run_id)
    tags = {
        "variant": variant,
        "data_hash": run.data.tags.get("data_hash", UNKNOWN),
        **metric_tags(json.loads(metrics_file.read_text())),
    }
    model = _logged_model(params, variant, run_id, mlflow_client)
    # The artifact location as source: a models:/ source would be resolved through MLflow's
    # global tracking URI rather than this client's.
    return mlflow_client.create_model_version(
        name, source=model.artifact_location, run_id=run_id, tags=tags, model_id=model.model_id
    )


def find_run(params: Params, variant: str, mlflow_client: MlflowClient) -> str | None:
    """The variant's training run: the one named in its train_summary.json, else its latest finished run."""
    summary = params.variant_dir(variant) / "train_summary.json"
    if summary.is_file():
        run_id = json.loads(summary.read_text()).get("mlflow_run_id")
        if run_id:
            return run_id
    experiment = mlflow_client.get_experiment_by_name(store.experiment_name(params))
    if experiment is None:
        return None
    runs = mlflow_client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.variant = '{variant}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def _logged_model(params: Params, variant: str, run_id: str, mlflow_client: MlflowClient) -> LoggedModel:
    """The run's pyfunc model, logged from ``models/<variant>/adapter`` if the run has none yet."""
    run = mlflow_client.get_run(run_id)
    logged = mlflow_client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}' and name = '{store.PYFUNC_MODEL_NAME}'",
        order_by=[{"field_name": "creation_timestamp", "ascending": False}],
        max_results=1,
    )
    if logged:
        return logged[0]
    from samsar.tracking.pyfunc import log_adapter_model  # imports torch: only when a model must be logged

    model_uri = log_adapter_model(params, run_id, params.variant_dir(variant) / "adapter")
    return mlflow_client.get_logged_model(model_uri.removeprefix("models:/"))


def _ensure_registered_model(mlflow_client: MlflowClient, name: str) -> None:
    try:
        mlflow_client.get_registered_model(name)
    except MlflowException:
        mlflow_client.create_registered_model(name, description="samsar adapters for this dataset; see alias champion.")


REGISTRY_REPORT = "reports/registry.json"


def register_and_promote(params: Params, variants: list[str] | None = None) -> Decision | None:
    """Register each evaluated variant, make the best new version the challenger, run the gate.

    Writes ``reports/registry.json`` (versions per variant, aliases, this decision). Returns the
    promotion decision, or ``None`` when nothing new was registered or tracking is off.
    """
    report = params.path(REGISTRY_REPORT)
    if not params.tracking.enabled:
        console.print("tracking.enabled is false: nothing registered")
        write_json(report, {"tracking": "disabled"})
        return None
    mlflow_client = store.client(params)
    name = store.model_name(params)
    metric_key = METRIC_PREFIX + params.promotion.metric
    _ensure_registered_model(mlflow_client, name)
    before = {mv.version for mv in mlflow_client.search_model_versions(f"name='{name}'")}
    versions = [mv for variant in (variants or params.variants) if (mv := register_variant(params, variant, mlflow_client))]
    new = [mv for mv in versions if mv.version not in before]
    decision = None
    if new:
        best = max(new, key=lambda mv: float(mv.tags.get(metric_key, "-inf")))
        mlflow_client.set_registered_model_alias(name, CHALLENGER, best.version)
        console.print(f"{name}: registered version(s) {', '.join(str(mv.version) for mv in new)}; "
                      f"challenger = version {best.version} ({best.tags.get('variant')})")
        decision = promote(params)
    else:
        console.print(f"{name}: nothing new to register")
    write_json(report, {
        "model": name,
        "tracking_uri": mlflow_client.tracking_uri,
        "versions": {mv.tags.get("variant"): int(mv.version) for mv in versions},
        "new_versions": sorted(int(mv.version) for mv in new),
        "aliases": {alias: int(version) for alias, version in mlflow_client.get_registered_model(name).aliases.items()},
        "decision": None if decision is None else {"version": decision.version, "promoted": decision.promoted,
                                                   "compared_to": decision.champion_version, "reasons": decision.reasons},
    })
    return decision


def _alias_version(mlflow_client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return mlflow_client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def gate(candidate: ModelVersion, champion: ModelVersion, params: Params) -> list[Check]:
    """The promotion conditions of ``candidate`` against ``champion`` (higher metric is better)."""
    cfg = params.promotion
    checks = []
    new_hash, old_hash = candidate.tags.get("data_hash", UNKNOWN), champion.tags.get("data_hash", UNKNOWN)
    if UNKNOWN in (new_hash, old_hash):
        checks.append(Check(False, "data hash unknown: cannot confirm both were tested on the same data"))
    else:
        same = new_hash == old_hash
        checks.append(Check(same, "same data hash" if same else f"data hash differs ({new_hash} vs champion {old_hash})"))

    key = METRIC_PREFIX + cfg.metric
    if key not in candidate.tags or key not in champion.tags:
        checks.append(Check(False, f"{cfg.metric} missing on version {candidate.version if key not in candidate.tags else champion.version}"))
    else:
        new, old = float(candidate.tags[key]), float(champion.tags[key])
        ok = new >= old + cfg.margin
        checks.append(Check(ok, f"{cfg.metric} {new:.4f} {'>=' if ok else '<'} champion {old:.4f} + margin {cfg.margin:g}"))

    for tag, old_value in champion.tags.items():
        if not tag.startswith(CLASS_IOU_PREFIX):
            continue
        cls = tag.removeprefix(CLASS_IOU_PREFIX)
        if tag not in candidate.tags:
            checks.append(Check(False, f"class '{cls}' IoU missing on version {candidate.version}"))
            continue
        new, old = float(candidate.tags[tag]), float(old_value)
        if old - new > cfg.class_iou_tolerance:
            checks.append(Check(False, f"class '{cls}' IoU fell {old:.4f} -> {new:.4f} (more than {cfg.class_iou_tolerance:g})"))
    if all(c.passed for c in checks):
        checks.append(Check(True, f"no class IoU fell by more than {cfg.class_iou_tolerance:g}"))
    return checks


def promote(params: Params, version: int | None = None, dry_run: bool = False) -> Decision:
    """Move alias ``champion`` to ``version`` (default: the challenger) if it passes the gate.

    The first version becomes champion without a gate. The decision and its reasons are
    printed and, unless ``dry_run``, written as ``promotion.*`` tags on the version.
    """
    mlflow_client = store.client(params)
    name = store.model_name(params)
    candidate = _candidate(mlflow_client, name, version)
    champion = _alias_version(mlflow_client, name, CHAMPION)
    if champion is None:
        checks = [Check(True, "first model: no champion yet")]
    elif champion.version == candidate.version:
        checks = [Check(False, f"version {candidate.version} is already the champion")]
    else:
        checks = gate(candidate, champion, params)
    decision = Decision(
        model=name,
        version=int(candidate.version),
        champion_version=int(champion.version) if champion else None,
        promoted=all(c.passed for c in checks),
        dry_run=dry_run,
        checks=checks,
    )
    if not dry_run:
        for key, value in decision.tags.items():
            mlflow_client.set_model_version_tag(name, candidate.version, key, value)
        if decision.promoted:
            mlflow_client.set_registered_model_alias(name, CHAMPION, candidate.version)
            if champion is not None:
                mlflow_client.set_model_version_tag(name, champion.version, "promotion.replaced_by", str(candidate.version))
    show(decision)
    return decision


def _candidate(mlflow_client: MlflowClient, name: str, version: int | None) -> ModelVersion:
    if version is not None:
        try:
            return mlflow_client.get_model_version(name, str(version))
        except MlflowException as exc:
            raise RegistryError(f"registered model '{name}' has no version {version}") from exc
    challenger = _alias_version(mlflow_client, name, CHALLENGER)
    if challenger is None:
        raise RegistryError(f"registered model '{name}' has no '{CHALLENGER}' alias; run `samsar register` first")
    return challenger


def show(decision: Decision) -> None:
    """Print a decision as a table of checks."""
    verdict = "PROMOTED" if decision.promoted else "NOT PROMOTED"
    if decision.dry_run:
        verdict = ("would be promoted" if decision.promoted else "would not be promoted") + " (dry run)"
    against = f"champion v{decision.champion_version}" if decision.champion_version else "no champion"
    table = Table(title=f"{decision.model} v{decision.version} vs {against}: {verdict}", show_header=False)
    table.add_column("", width=2)
    table.add_column("check")
    for check in decision.checks:
        table.add_row("[green]✓[/]" if check.passed else "[red]✗[/]", check.reason)
    console.print(table)
