"""Model registry: every evaluated variant becomes a version; ``champion`` moves only through a gate.

There is one registered model per head (:func:`model_name`): ``samsar-<dataset>`` for the classwise
variants and ``samsar-<dataset>-box`` for the box_prompt ones, each with its own challenger, champion,
gate and history. A box variant is tested with box prompts from the truth and cannot map a scene
without boxes, so it never competes with (or replaces) a classwise model. A new version gets tags for
its metrics (means over seeds, their stds and the validation mIoU: ``metric.<name>``,
``metric.per_class_iou.<class>``), ``variant``, ``head``, ``data_hash``, ``seed`` (the seed whose
adapter it is), ``seeds`` and ``cut_short``.

*Validation chooses, test decides*: the new version with the best mean validation mIoU gets alias
``challenger`` (test metrics never choose). :func:`promote` moves ``champion`` to it only if it was
tested on the same data, the paired-bootstrap 95 % interval of its test-mIoU gain over the
champion clears ``promotion.margin``, no class IoU falls beyond the tolerance, and it clearly beats
the majority-class baseline (also when it would be the first champion). The intervals come from
the per-tile confusion archives (``evaluation/tiles.npz``) the versions' runs hold.

Every decision (promotion, refusal, :func:`rollback`) is recorded with its numbers as a
registered-model tag ``decision.<sequence>`` (:func:`promotion_history`) and as ``promotion.*``
tags on the version; nothing is deleted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import getpass
import json
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from mlflow import MlflowClient
from mlflow.entities import LoggedModel
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from samsar.config import Params, variant_head
from samsar.errors import SamsarError
from samsar.io import is_finite_number, write_json
from samsar.tracking import store
from samsar.tracking.provenance import UNKNOWN, base_checkpoint_ref
from samsar.tracking.runs import public_uri, recorded_store
from samsar.tracking.summary import DESCRIPTION_LIMIT, model_summary, tiles_interval
from samsar.uncertainty import Interval, TileConfusions, miou, paired_bootstrap

CHALLENGER = "challenger"
CHAMPION = "champion"
METRIC_PREFIX = "metric."
CLASS_IOU_PREFIX = METRIC_PREFIX + "per_class_iou."
SELECTION_METRIC = "val_mIoU"  # the challenger is the new version with the best mean of this
GATE_METRIC = "mIoU"  # what the paired bootstrap compares
TILES_ARTIFACT = "evaluation/tiles.npz"  # per-tile confusion archive in the selected seed's run
DECISION_PREFIX = "decision."  # registered-model tags decision.000001, decision.000002, ...
DECISION_DIGITS = 6
# Registered-model tag values are VARCHAR(5000) in MLflow's SQL schema (its validator allows more,
# MySQL/PostgreSQL do not); a decision record stays well under that.
DECISION_TAG_LIMIT = 4000
VERSION_TAG_LIMIT = 5000
REASON_LIMIT = 300  # characters per reason in a decision record that would not fit otherwise
NOT_METRICS = frozenset({"selected_seed"})  # numeric keys of metrics/<variant>.json that are not scores
# Tag ``gate`` of a version: ``pending`` from registration until the gate has decided (``promoted``,
# ``refused``) or another new version was chosen as challenger (``not_chosen``); ``failed`` when
# registration broke off. `samsar register` finishes the gate of pending and failed versions.
GATE_TAG = "gate"
GATE_PENDING, GATE_FAILED, GATE_NOT_CHOSEN = "pending", "failed", "not_chosen"
UNDECIDED = (GATE_PENDING, GATE_FAILED)

console = Console()
# Registered model name suffix per head (classwise keeps the plain name).
HEAD_MODELS = {"classwise": "", "box_prompt": "-box"}
# What each head means for whoever uses the model (card summary, version description).
HEAD_SUMMARIES = {
    "classwise": "Head: classwise (one logit map per class, no prompts)",
    "box_prompt": ("Head: box_prompt (background / object inside box prompts); needs box prompts at prediction "
                   "(`samsar predict --boxes`); test scores use exact ground-truth boxes"),
}


class RegistryError(SamsarError, ValueError):
    """The registered model lacks what was asked for (a version, the challenger alias, a previous champion)."""


@dataclass(frozen=True)
class Check:
    """One gate condition and whether the candidate passed it."""

    passed: bool
    reason: str


@dataclass(frozen=True)
class Decision:
    """Outcome of the promotion gate (``action`` ``promote``) or of a rollback for one model version.

    ``champion_version`` is the champion before the decision (``from``), ``version`` the one it
    concerns (``to``). ``intervals`` holds the bootstrap numbers (``champion``, ``baseline``).
    ``sequence``, ``time`` and ``who`` are set once the decision is recorded.
    """

    model: str
    version: int
    champion_version: int | None
    promoted: bool
    dry_run: bool
    checks: list[Check] = field(default_factory=list)
    action: str = "promote"
    intervals: dict[str, dict[str, Any]] = field(default_factory=dict)
    sequence: int | None = None
    time: str | None = None
    who: str | None = None

    @property
    def reasons(self) -> list[str]:
        return [c.reason for c in self.checks]

    @property
    def tags(self) -> dict[str, str]:
        """The version tags that record this decision."""
        tags = {
            "promotion.decision": "promoted" if self.promoted else "refused",
            "promotion.reasons": _cut("; ".join(self.reasons), VERSION_TAG_LIMIT),
            "promotion.compared_to": str(self.champion_version) if self.champion_version else "none",
            "promotion.time": self.time or _now(),
        }
        if self.sequence is not None:
            tags["promotion.record"] = _decision_key(self.sequence)
        return tags

    def record(self) -> dict[str, Any]:
        """The decision as one history entry (what ``decision.<sequence>`` holds)."""
        return {
            "seq": self.sequence,
            "time": self.time,
            "who": self.who,
            "action": self.action,
            "from": self.champion_version,
            "to": self.version,
            "promoted": self.promoted,
            "reasons": self.reasons,
            "intervals": self.intervals,
        }


def model_name(params: Params, head: str = "classwise") -> str:
    """The registered model of ``head``: ``samsar-<data.name>`` (classwise), ``samsar-<data.name>-box`` (box_prompt)."""
    return store.model_name(params) + HEAD_MODELS[head]


def by_head(params: Params, variants: list[str]) -> dict[str, list[str]]:
    """``variants`` grouped by the head they train, classwise first; heads without variants left out."""
    groups = {head: [v for v in variants if variant_head(v, params.variant_options) == head] for head in HEAD_MODELS}
    return {head: group for head, group in groups.items() if group}


def resolve_head(params: Params, head: str | None) -> str:
    """``head``, else the one head of ``params.variants`` (:class:`RegistryError` when they use both)."""
    if head is not None:
        if head not in HEAD_MODELS:
            raise RegistryError(f"--head: unknown head '{head}'; pass one of {', '.join(HEAD_MODELS)}")
        return head
    heads = list(by_head(params, params.variants)) or ["classwise"]
    if len(heads) > 1:
        raise RegistryError(f"variants: {params.variants} use both heads, each with its own registered model "
                            f"({', '.join(model_name(params, h) for h in heads)}); pass --head classwise or --head box_prompt")
    return heads[0]


def _version_head(params: Params, mv: ModelVersion) -> str | None:
    """The head a version trained (tag ``head``; versions registered before it from the variant name)."""
    if mv.tags.get("head") in HEAD_MODELS:
        return mv.tags["head"]
    try:
        return variant_head(mv.tags.get("variant", ""), params.variant_options)
    except ValueError:
        return None


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): getpass raises KeyError/OSError
        return os.environ.get("USER") or "unknown"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def metric_tags(metrics: dict[str, Any]) -> dict[str, str]:
    """The numbers of a metrics/<variant>.json as version tags.

    Top-level numbers (means over seeds, ``<key>_std``, ``val_mIoU``, ...) become ``metric.<name>``,
    per-class IoUs ``metric.per_class_iou.<class>``; a class absent everywhere (``null``) gets no
    tag. Nested breakdowns and text stay in the metrics file (logged with the run).
    """
    tags = {
        METRIC_PREFIX + key: repr(float(value))
        for key, value in metrics.items()
        if key not in NOT_METRICS and is_finite_number(value)
    }
    for cls, value in (metrics.get("per_class_iou") or {}).items():
        if is_finite_number(value):
            tags[CLASS_IOU_PREFIX + cls] = repr(float(value))
    return tags


def version_tags(params: Params, variant: str, metrics: dict[str, Any], data_hash: str) -> dict[str, str]:
    """All tags of a new version of ``variant``: identity, seeds, data, metrics and the wall-time caveat."""
    summary_file = params.variant_dir(variant) / "train_summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else {}
    seed = metrics.get("selected_seed", summary.get("selected_seed"))
    seeds = metrics.get("seeds", summary.get("seeds")) or []
    tags = {
        "variant": variant,
        "head": variant_head(variant, params.variant_options),
        "data_hash": data_hash,
        "seed": UNKNOWN if seed is None else str(seed),
        "seeds": json.dumps([int(s) for s in seeds]),
        "cut_short": "true" if metrics.get("cut_short") else "false",
        **metric_tags(metrics),
    }
    if isinstance(metrics.get("majority_class"), str):
        tags["majority_class"] = metrics["majority_class"]
    return tags


def register_variant(params: Params, variant: str, mlflow_client: MlflowClient | None = None) -> ModelVersion | None:
    """Register the evaluated ``variant`` as a new version (alias-free) of its head's registered model
    (:func:`model_name`); ``None`` if not ready.

    Idempotent: a run already registered is not registered again (its version is returned).
    """
    mlflow_client = mlflow_client or store.client(params)
    name = model_name(params, variant_head(variant, params.variant_options))
    metrics_file = params.metrics_path(variant)
    if not metrics_file.is_file():
        console.print(f"[yellow]{variant}: no {metrics_file}; run `samsar evaluate -v {variant}` first[/]")
        return None
    run_id = find_run(params, variant, mlflow_client)
    if run_id is None:
        console.print(f"[yellow]{variant}: no finished MLflow run; train it with tracking enabled[/]")
        return None
    _ensure_registered_model(mlflow_client, name, variant_head(variant, params.variant_options))
    existing = mlflow_client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    if existing:
        return existing[0]
    run = mlflow_client.get_run(run_id)
    metrics = json.loads(metrics_file.read_text())
    tags = {**version_tags(params, variant, metrics, run.data.tags.get("data_hash", UNKNOWN)), GATE_TAG: GATE_PENDING}
    model = _logged_model(params, variant, run_id, mlflow_client)
    # The artifact location as source: a models:/ source would be resolved through MLflow's
    # global tracking URI rather than this client's.
    return mlflow_client.create_model_version(
        name, source=model.artifact_location, run_id=run_id, tags=tags, model_id=model.model_id,
        description=version_description(params, variant, metrics),
    )


def version_description(params: Params, variant: str, metrics: dict[str, Any]) -> str:
    """The version's description: the model card's summary (:func:`samsar.tracking.summary.model_summary`),
    its second line naming the head (:data:`HEAD_SUMMARIES`)."""
    base = f"`{base_checkpoint_ref(params)}` (id {metrics.get('base_id', UNKNOWN)})"
    interval = tiles_interval(params.metrics_path(variant).with_suffix(".tiles.npz"))
    first, _, rest = model_summary(variant, metrics, base, interval).partition("\n")
    text = f"{first}\n{HEAD_SUMMARIES[variant_head(variant, params.variant_options)]}.\n{rest}"
    return text if len(text) <= DESCRIPTION_LIMIT else text[: DESCRIPTION_LIMIT - 1] + "…"


def check_runs_in_store(params: Params, variants: list[str], mlflow_client: MlflowClient) -> None:
    """:class:`RegistryError` before anything is registered when a variant's training run (named in
    its train_summary.json) is not in this tracking store, e.g. $MLFLOW_TRACKING_URI now points at
    another server than the one training logged to."""
    uri = public_uri(mlflow_client.tracking_uri)
    for variant in variants:
        summary_file = params.variant_dir(variant) / "train_summary.json"
        if not params.metrics_path(variant).is_file() or not summary_file.is_file():
            continue
        run_id = json.loads(summary_file.read_text()).get("mlflow_run_id")  # the selected seed's: what is registered
        if run_id:
            try:
                mlflow_client.get_run(run_id)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                    raise RegistryError(f"{uri}: cannot read MLflow run {run_id} of '{variant}' ({detail}); "
                                        f"check that the tracking store is reachable") from exc
                logged_to = recorded_store(params.variant_dir(variant) / "seeds", run_id)
                where = f"it was logged to {logged_to}" if logged_to else "it was logged to another store"
                raise RegistryError(
                    f"{summary_file}: MLflow run {run_id} of '{variant}' is not in the tracking store {uri} ({where}); "
                    f"register against the store training used (MLFLOW_TRACKING_URI={logged_to or '<that store>'}), "
                    f"or train '{variant}' again with this one; nothing was registered") from exc


def find_run(params: Params, variant: str, mlflow_client: MlflowClient) -> str | None:
    """The variant's training run: the one named in its train_summary.json (the selected seed's), else
    its latest finished run that is not a parent run grouping the seeds (``run_kind`` ``variant``)."""
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
        max_results=50,
    )
    return next((run.info.run_id for run in runs if run.data.tags.get("run_kind") != "variant"), None)


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


def _ensure_registered_model(mlflow_client: MlflowClient, name: str, head: str = "classwise") -> None:
    try:
        mlflow_client.get_registered_model(name)
    except MlflowException:
        what = ("samsar adapters for this dataset; see alias champion." if head == "classwise" else
                "samsar box_prompt adapters for this dataset (they need box prompts: `samsar predict --boxes`; "
                "tested with ground-truth boxes); see alias champion.")
        mlflow_client.create_registered_model(name, description=what)


REGISTRY_REPORT = "reports/registry.json"


def _tag_float(mv: ModelVersion, key: str) -> float | None:
    try:
        value = float(mv.tags[key])
    except (KeyError, ValueError):
        return None
    return value if math.isfinite(value) else None


def choose_challenger(versions: list[ModelVersion]) -> ModelVersion | None:
    """The version with the best mean validation mIoU (``metric.val_mIoU``); test metrics never choose.

    Versions without a validation score are not eligible; ties go to the first listed.
    """
    scored = [(score, mv) for mv in versions if (score := _tag_float(mv, METRIC_PREFIX + SELECTION_METRIC)) is not None]
    if not scored:
        return None
    return max(scored, key=lambda pair: pair[0])[1]


def register_and_promote(params: Params, variants: list[str] | None = None) -> Decision | None:
    """Register each evaluated variant, make the best new version by validation the challenger, run the gate,
    once per head (:func:`register_heads`).

    Returns the classwise model's promotion decision (the box model's when every variant uses the
    box_prompt head), or ``None`` when nothing new was registered there, no new version has a
    validation score, or tracking is off; ``reports/registry.json`` holds every head's.
    """
    return next(iter(register_heads(params, variants).values()), None)


def register_heads(params: Params, variants: list[str] | None = None) -> dict[str, Decision | None]:
    """Register the evaluated ``variants`` in their head's registered model (:func:`model_name`) and
    gate each model's new versions on their own: ``model name -> decision`` (classwise first).

    Writes ``reports/registry.json``: for one registered model its versions per variant, aliases and
    decision with its intervals (``model``, ``tracking_uri``, ``versions``, ``new_versions``,
    ``aliases``, ``decision``); with both heads ``{"tracking_uri", "models": {name: those keys}}``.
    """
    report = params.path(REGISTRY_REPORT)
    if not params.tracking.enabled:
        console.print("tracking.enabled is false: nothing registered")
        write_json(report, {"tracking": "disabled"})
        return {}
    mlflow_client = store.client(params)
    variants = variants or params.variants
    check_runs_in_store(params, variants, mlflow_client)
    decisions, entries = {}, {}
    for head, group in by_head(params, variants).items():
        name = model_name(params, head)
        decisions[name], entries[name] = _register_model(params, mlflow_client, name, head, group)
    if len(entries) == 1:
        ((name, entry),) = entries.items()
        write_json(report, {"model": name, "tracking_uri": mlflow_client.tracking_uri, **entry})
    else:
        write_json(report, {"tracking_uri": mlflow_client.tracking_uri,
                            "models": {name: {"model": name, **entry} for name, entry in entries.items()}})
    return decisions


def _register_model(params: Params, mlflow_client: MlflowClient, name: str, head: str,
                    variants: list[str]) -> tuple[Decision | None, dict[str, Any]]:
    """Register ``variants`` (all of ``head``) in model ``name`` and gate its new versions; the decision
    and the model's report entry."""
    _ensure_registered_model(mlflow_client, name, head)
    before = {mv.version for mv in mlflow_client.search_model_versions(f"name='{name}'")}
    try:
        versions = [mv for variant in variants if (mv := register_variant(params, variant, mlflow_client))]
        new = [mv for mv in versions if mv.version not in before]
        decision = _gate_new(params, mlflow_client, name, new, head)
    except Exception as exc:
        error = _broke_off(mlflow_client, name, exc)
        if isinstance(exc, (MlflowException, OSError)) and not isinstance(exc, SamsarError):
            raise error from exc  # e.g. a RestException of the tracking server: one line, with the way out
        raise
    return decision, {
        "versions": {mv.tags.get("variant"): int(mv.version) for mv in versions},
        "new_versions": sorted(int(mv.version) for mv in new),
        "aliases": {alias: int(version) for alias, version in mlflow_client.get_registered_model(name).aliases.items()},
        "decision": None if decision is None else {"version": decision.version, "promoted": decision.promoted,
                                                   "compared_to": decision.champion_version, "reasons": decision.reasons,
                                                   "intervals": decision.intervals, "record": decision.sequence},
    }


def undecided_versions(mlflow_client: MlflowClient, name: str) -> list[ModelVersion]:
    """Versions registered without a gate decision (tag ``gate`` ``pending`` or ``failed``)."""
    return [mv for mv in mlflow_client.search_model_versions(f"name='{name}'") if mv.tags.get(GATE_TAG) in UNDECIDED]


def _gate_new(params: Params, mlflow_client: MlflowClient, name: str, new: list[ModelVersion],
              head: str = "classwise") -> Decision | None:
    """Challenger and gate over the new versions of model ``name`` (all of ``head``) and any left
    undecided by an earlier registration."""
    earlier = [mv for mv in undecided_versions(mlflow_client, name) if mv.version not in {v.version for v in new}]
    if earlier:
        console.print(f"{name}: version(s) {', '.join(str(mv.version) for mv in earlier)} were registered without a gate "
                      f"decision (an earlier registration broke off): finishing their gate")
    candidates = new + earlier
    other = [mv for mv in candidates if _version_head(params, mv) not in (head, None)]
    for mv in other:  # a box version in the classwise model (registered before the heads had their own)
        mlflow_client.set_model_version_tag(name, mv.version, GATE_TAG, GATE_NOT_CHOSEN)
        console.print(f"[yellow]{name}: version {mv.version} ({mv.tags.get('variant')}) uses the "
                      f"{_version_head(params, mv)} head, not {head}: never its challenger[/]")
    candidates = [mv for mv in candidates if mv not in other]
    if not candidates:
        console.print(f"{name}: nothing new to register")
        return None
    registered = ", ".join(str(mv.version) for mv in candidates)
    best = choose_challenger(candidates)
    for mv in candidates:
        if best is None or mv.version != best.version:
            mlflow_client.set_model_version_tag(name, mv.version, GATE_TAG, GATE_NOT_CHOSEN)
    if best is None:
        console.print(f"[yellow]{name}: registered version(s) {registered}, but none has metric.{SELECTION_METRIC}: "
                      f"no challenger (test metrics never choose); run `samsar evaluate` again[/]")
        return None
    mlflow_client.set_registered_model_alias(name, CHALLENGER, best.version)
    scores = ", ".join(f"{mv.tags.get('variant')} v{mv.version} {_fmt(_tag_float(mv, METRIC_PREFIX + SELECTION_METRIC))}"
                       for mv in candidates)
    console.print(f"{name}: registered version(s) {registered}; challenger = version {best.version} "
                  f"({best.tags.get('variant')}), chosen by mean validation mIoU ({scores}); "
                  f"test metrics do not choose, they only gate")
    return promote(params, head=head)


def _broke_off(mlflow_client: MlflowClient, name: str, exc: Exception) -> RegistryError:
    """Tag the versions left without a decision ``gate=failed`` (as far as the registry still answers)
    and say how to finish them."""
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    left: list[str] = []
    with contextlib.suppress(Exception):
        for mv in undecided_versions(mlflow_client, name):
            mlflow_client.set_model_version_tag(name, mv.version, GATE_TAG, GATE_FAILED)
            mlflow_client.set_model_version_tag(name, mv.version, "gate.error", _cut(detail, VERSION_TAG_LIMIT))
            left.append(str(mv.version))
    which = f"version(s) {', '.join(left)} have" if left else "versions may have"
    return RegistryError(f"{public_uri(mlflow_client.tracking_uri)}: registering '{name}' broke off ({detail}); "
                         f"{which} no gate decision yet (tag gate=failed): run `samsar register` again to finish the gate")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _alias_version(mlflow_client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    try:
        return mlflow_client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _download_tiles(mlflow_client: MlflowClient, mv: ModelVersion, dest: Path) -> TileConfusions | str:
    """The version's per-tile confusion archive, or why it cannot be had (one line)."""
    variant = mv.tags.get("variant", "?")
    dest.mkdir(parents=True, exist_ok=True)
    try:
        local = mlflow_client.download_artifacts(mv.run_id, TILES_ARTIFACT, str(dest))
    except Exception as exc:  # MlflowException / OSError: not logged, or the store is unreachable
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        return (f"version {mv.version} ({variant}) has no {TILES_ARTIFACT} in run {mv.run_id} ({detail}); "
                f"run `samsar evaluate -v {variant}` again")
    try:
        return TileConfusions.load(local)
    except ValueError as exc:
        return f"version {mv.version} ({variant}): {' '.join(str(exc).split())}"


@contextlib.contextmanager
def _quiet_downloads() -> Iterator[None]:
    """No MLflow download progress bars in the decision output (the previous setting is restored)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    saved = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = saved


def _tiles_mismatch(a: TileConfusions, b: TileConfusions, other: str) -> str | None:
    if a.class_names != b.class_names:
        return f"classes differ from {other}'s: {list(a.class_names)} vs {list(b.class_names)}"
    if a.tile_ids != b.tile_ids:
        common = len(set(a.tile_ids) & set(b.tile_ids))
        return (f"test tiles differ from {other}'s ({len(a.tile_ids)} vs {len(b.tile_ids)} tiles, {common} in common): "
                f"not a paired comparison")
    return None


def _interval_numbers(interval: Interval, **extra: Any) -> dict[str, Any]:
    return {"difference": round(interval.difference, 6), "low": round(interval.low, 6), "high": round(interval.high, 6),
            "confidence": interval.confidence, "replicates": interval.replicates, **extra}


def _show_interval(interval: Interval) -> str:
    return f"{interval.difference:+.4f} [{interval.low:+.4f}, {interval.high:+.4f}]"


def gate(
    candidate: ModelVersion, champion: ModelVersion | None, params: Params, mlflow_client: MlflowClient
) -> tuple[list[Check], dict[str, dict[str, Any]]]:
    """The promotion conditions of ``candidate`` against ``champion`` (``None``: it would be the first).

    Returns the checks (each reason with its numbers) and the bootstrap intervals (``champion``:
    candidate minus champion test mIoU, ``baseline``: candidate minus majority-class baseline).
    """
    cfg = params.promotion
    checks: list[Check] = []
    intervals: dict[str, dict[str, Any]] = {}
    if champion is None:
        checks.append(Check(True, "first model: no champion yet"))
    if candidate.tags.get("cut_short") == "true":
        checks.append(Check(False, f"version {candidate.version} was cut short by the wall-time guard (train.max_seconds): "
                                   f"its training did not run its step budget, so it is not comparable"))
    if cfg.metric != GATE_METRIC:
        checks.append(Check(False, f"promotion.metric is '{cfg.metric}', but the gate's paired bootstrap compares "
                                   f"{GATE_METRIC}; set promotion.metric: {GATE_METRIC}"))

    new_hash = candidate.tags.get("data_hash", UNKNOWN)
    if champion is None:
        if new_hash == UNKNOWN:
            checks.append(Check(False, "data hash unknown: a champion must name the data it was tested on"))
    else:
        old_hash = champion.tags.get("data_hash", UNKNOWN)
        if UNKNOWN in (new_hash, old_hash):
            checks.append(Check(False, "data hash unknown: cannot confirm both were tested on the same data"))
        else:
            same = new_hash == old_hash
            hint = ("; the champion's hash predates content-only data hashes: register a model retrained on this data"
                    if new_hash.startswith("sha256:") != old_hash.startswith("sha256:") else "")
            checks.append(Check(same, f"same data hash ({new_hash})" if same
                                else f"data hash differs ({new_hash} vs champion {old_hash}){hint}"))

    with tempfile.TemporaryDirectory(prefix="samsar-tiles-") as tmp, _quiet_downloads():
        tiles = _download_tiles(mlflow_client, candidate, Path(tmp) / "candidate")
        champion_tiles = None if champion is None else _download_tiles(mlflow_client, champion, Path(tmp) / "champion")
    if isinstance(tiles, str):
        checks.append(Check(False, tiles))

    if champion is not None:
        if isinstance(champion_tiles, str):
            checks.append(Check(False, champion_tiles))
        elif isinstance(tiles, TileConfusions):
            mismatch = _tiles_mismatch(tiles, champion_tiles, f"champion v{champion.version}")
            if mismatch:
                checks.append(Check(False, mismatch))
            else:
                interval = paired_bootstrap(tiles, champion_tiles)
                intervals["champion"] = _interval_numbers(interval, against=int(champion.version), margin=cfg.margin)
                ok = interval.low > cfg.margin
                checks.append(Check(ok, (
                    f"test mIoU minus champion v{champion.version}: {_show_interval(interval)} "
                    f"({interval.confidence:.0%} paired bootstrap over {len(tiles.tile_ids)} tiles and the seeds); "
                    f"lower bound {interval.low:+.4f} {'>' if ok else '<='} margin {cfg.margin:g}"
                    + ("" if ok else f": {interval.verdict}"))))
        checks.extend(_class_checks(candidate, champion, cfg.class_iou_tolerance))

    if isinstance(tiles, TileConfusions):
        checks.append(_baseline_check(candidate, tiles, cfg.baseline_margin, intervals))
    return checks, intervals


def _class_checks(candidate: ModelVersion, champion: ModelVersion, tolerance: float) -> list[Check]:
    """No class IoU (mean over seeds) may fall by more than ``tolerance``; classes absent from either are skipped."""
    checks, compared, skipped = [], 0, []
    class_tags = {tag for mv in (candidate, champion) for tag in mv.tags if tag.startswith(CLASS_IOU_PREFIX)}
    for tag in sorted(class_tags):
        cls = tag.removeprefix(CLASS_IOU_PREFIX)
        new, old = _tag_float(candidate, tag), _tag_float(champion, tag)
        if new is None or old is None:
            skipped.append(cls)
            continue
        compared += 1
        if old - new > tolerance:
            checks.append(Check(False, f"class '{cls}' IoU fell {old:.4f} -> {new:.4f} (by {old - new:.4f}, more than {tolerance:g})"))
    if not checks:
        note = f"; skipped (absent in one of them): {', '.join(skipped)}" if skipped else ""
        checks.append(Check(True, f"no class IoU fell by more than {tolerance:g} ({compared} classes compared{note})"))
    return checks


def _baseline_check(candidate: ModelVersion, tiles: TileConfusions, margin: float, intervals: dict) -> Check:
    """The candidate must beat predicting the majority class everywhere, on the same tiles, by the margin."""
    majority_class = candidate.tags.get("majority_class")
    source = ""
    if majority_class is None:  # derive it from the archive's truth: the class with the most labelled pixels
        majority_class = tiles.class_names[int(np.argmax(tiles.confusion[0].sum(axis=(0, 2))))]
        source = ", the majority of the test truth"
    if majority_class not in tiles.class_names:
        return Check(False, f"majority class '{majority_class}' is not among the archive's classes {list(tiles.class_names)}")
    baseline = tiles.majority(tiles.class_names.index(majority_class))
    baseline_miou = float(np.nanmean(miou(baseline.confusion.sum(axis=1))))
    interval = paired_bootstrap(tiles, baseline)
    intervals["baseline"] = _interval_numbers(interval, majority_class=majority_class,
                                              baseline_mIoU=round(baseline_miou, 6), margin=margin)
    ok = interval.low > margin
    return Check(ok, (
        f"test mIoU minus majority-class baseline ('{majority_class}' everywhere{source}, mIoU {baseline_miou:.4f}): "
        f"{_show_interval(interval)}; lower bound {interval.low:+.4f} {'>' if ok else '<='} baseline margin {margin:g}"
        + ("" if ok else ": not a clear win over the baseline")))


def promote(params: Params, version: int | None = None, dry_run: bool = False, head: str | None = None) -> Decision:
    """Move alias ``champion`` of ``head``'s registered model (default: the head of ``params.variants``,
    see :func:`resolve_head`) to ``version`` (default: the challenger) if it passes the gate.

    The first champion too must pass the gate's checks that need no champion (baseline, data
    hash, not cut short); a version of the other head never passes. The decision is printed and,
    unless ``dry_run``, recorded: ``promotion.*`` tags on the version and a ``decision.<sequence>``
    tag on the registered model.
    """
    head = resolve_head(params, head)
    mlflow_client = store.client(params, create=False)
    name = model_name(params, head)
    candidate = _candidate(mlflow_client, name, version)
    champion = _alias_version(mlflow_client, name, CHAMPION)
    candidate_head = _version_head(params, candidate)
    if champion is not None and champion.version == candidate.version:
        checks, intervals = [Check(False, f"version {candidate.version} is already the champion")], {}
    elif candidate_head not in (head, None):
        checks, intervals = [Check(False, (
            f"version {candidate.version} ({candidate.tags.get('variant')}) uses the {candidate_head} head, not {head}: "
            f"its test scores are not comparable with this model's; register it under '{model_name(params, candidate_head)}'"))], {}
    else:
        checks, intervals = gate(candidate, champion, params, mlflow_client)
    decision = Decision(
        model=name,
        version=int(candidate.version),
        champion_version=int(champion.version) if champion else None,
        promoted=all(c.passed for c in checks),
        dry_run=dry_run,
        checks=checks,
        intervals=intervals,
    )
    if not dry_run:
        decision = _stamp(mlflow_client, name, decision)
        for key, value in decision.tags.items():
            mlflow_client.set_model_version_tag(name, candidate.version, key, value)
        if decision.promoted:
            mlflow_client.set_registered_model_alias(name, CHAMPION, candidate.version)
            if champion is not None:
                mlflow_client.set_model_version_tag(name, champion.version, "promotion.replaced_by", str(candidate.version))
        _write_record(mlflow_client, name, decision)
        # Last: until here a rerun of `samsar register` still sees the version as undecided.
        mlflow_client.set_model_version_tag(name, candidate.version, GATE_TAG, "promoted" if decision.promoted else "refused")
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


# --- decision records -------------------------------------------------------------------------------


def _decision_key(sequence: int) -> str:
    return f"{DECISION_PREFIX}{sequence:0{DECISION_DIGITS}d}"


def _records(mlflow_client: MlflowClient, name: str) -> list[dict[str, Any]]:
    try:
        tags = mlflow_client.get_registered_model(name).tags
    except MlflowException:
        return []
    records = []
    for key, value in tags.items():
        suffix = key.removeprefix(DECISION_PREFIX)
        if not key.startswith(DECISION_PREFIX) or not suffix.isdigit():
            continue
        try:
            record = json.loads(value)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError:
            record = {"action": "?", "reasons": [f"unreadable record: {value[:80]}"]}
        record["seq"] = int(suffix)
        records.append(record)
    return sorted(records, key=lambda r: r["seq"])


def _stamp(mlflow_client: MlflowClient, name: str, decision: Decision) -> Decision:
    """The decision with its sequence number (next after the recorded ones), UTC time and user."""
    records = _records(mlflow_client, name)
    sequence = (records[-1]["seq"] if records else 0) + 1
    return dataclasses.replace(decision, sequence=sequence, time=_now(), who=_user())


def _encode(record: dict[str, Any]) -> str:
    """Compact JSON under DECISION_TAG_LIMIT: long reasons are cut, then trailing ones dropped."""
    text = json.dumps(record, separators=(",", ":"))
    if len(text) <= DECISION_TAG_LIMIT:
        return text
    reasons = [_cut(r, REASON_LIMIT) for r in record["reasons"]]
    kept = len(reasons)
    while True:
        shown = reasons[:kept] + ([f"... {len(reasons) - kept} more on the version's promotion.reasons tag"]
                                  if kept < len(reasons) else [])
        text = json.dumps({**record, "reasons": shown}, separators=(",", ":"))
        if len(text) <= DECISION_TAG_LIMIT or kept == 0:
            return text
        kept -= 1


def _write_record(mlflow_client: MlflowClient, name: str, decision: Decision) -> None:
    mlflow_client.set_registered_model_tag(name, _decision_key(decision.sequence), _encode(decision.record()))


def promotion_history(params: Params, head: str | None = None) -> list[dict[str, Any]]:
    """Every recorded decision (promotion, refusal, rollback) of ``head``'s registered model (see
    :func:`resolve_head`), oldest first.

    Each entry: ``seq``, ``time`` (UTC ISO), ``who``, ``action`` (``promote``/``rollback``),
    ``from`` (the champion before, or ``None``), ``to``, ``promoted``, ``reasons``, ``intervals``.
    """
    if not params.tracking.enabled:
        raise RegistryError("tracking.enabled is false: there is no registry")
    return _records(store.client(params, create=False), model_name(params, resolve_head(params, head)))


def champion_lineage(history: list[dict[str, Any]]) -> list[int]:
    """The champions in order, as the recorded decisions left them; the last is the current one.

    A promotion pushes its ``to`` (after its ``from``, if that is not already on top); a rollback
    pops back to its ``to``. So rolling back twice walks two champions back, not back and forth.
    """
    lineage: list[int] = []
    for record in history:
        if not record.get("promoted"):
            continue
        before, after = record.get("from"), record.get("to")
        if record.get("action") == "rollback":
            if lineage and lineage[-1] == before:
                lineage.pop()
            if not lineage or lineage[-1] != after:
                lineage.append(after)
        elif record.get("action") == "promote":
            if before is None:
                lineage = []
            elif not lineage or lineage[-1] != before:
                lineage.append(before)
            lineage.append(after)
    return lineage


def rollback(params: Params, head: str | None = None) -> dict[str, Any]:
    """Move ``champion`` of ``head``'s registered model (see :func:`resolve_head`) back to the champion
    before it (the ``from`` of the decision that made it).

    Records a ``rollback`` decision and returns it; raises :class:`RegistryError` when there is no
    champion, no previous one, or the alias was moved outside samsar.
    """
    history = promotion_history(params, head)
    mlflow_client = store.client(params, create=False)
    name = model_name(params, resolve_head(params, head))
    champion = _alias_version(mlflow_client, name, CHAMPION)
    if champion is None:
        raise RegistryError(f"registered model '{name}' has no champion: nothing to roll back")
    current = int(champion.version)
    lineage = champion_lineage(history)
    if not lineage or lineage[-1] != current:
        recorded = f"v{lineage[-1]}" if lineage else "none"
        raise RegistryError(f"champion v{current} of '{name}' was not set by `samsar promote` (recorded champion: {recorded}); "
                            f"move the alias in the MLflow UI")
    if len(lineage) < 2:
        raise RegistryError(f"champion v{current} of '{name}' has no previous champion to roll back to")
    target = lineage[-2]
    try:
        mlflow_client.get_model_version(name, str(target))
    except MlflowException as exc:
        raise RegistryError(f"previous champion v{target} of '{name}' no longer exists") from exc
    made_by = next(r["seq"] for r in reversed(history) if r.get("promoted") and r.get("to") == current)
    decision = _stamp(mlflow_client, name, Decision(
        model=name, version=target, champion_version=current, promoted=True, dry_run=False, action="rollback",
        checks=[Check(True, f"rolled back champion v{current} (set by decision #{made_by}) to v{target}, the champion before it")],
    ))
    mlflow_client.set_registered_model_alias(name, CHAMPION, str(target))
    mlflow_client.set_model_version_tag(name, str(current), "promotion.rolled_back",
                                        f"champion moved back to v{target} at {decision.time} by {decision.who}")
    _write_record(mlflow_client, name, decision)
    console.print(f"{name}: champion rolled back v{current} -> v{target} (decision #{decision.sequence})")
    return decision.record()


# --- printing ---------------------------------------------------------------------------------------


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
        table.add_row("[green]✓[/]" if check.passed else "[red]✗[/]", escape(check.reason))
    console.print(table)


def _result(record: dict[str, Any]) -> str:
    if record.get("action") == "rollback":
        return "[yellow]rolled back[/]"
    return "[green]promoted[/]" if record.get("promoted") else "[red]refused[/]"


def show_history(records: list[dict[str, Any]], model: str) -> None:
    """Print the promotion history as a table (one row per decision)."""
    if not records:
        console.print(f"{model}: no promotion decisions recorded yet")
        return
    table = Table(title=f"{model}: promotion history")
    for column in ("#", "time", "who", "action", "from → to", "result", "reasons"):
        table.add_column(column, overflow="fold")
    for r in records:
        before = f"v{r['from']}" if r.get("from") is not None else "none"
        table.add_row(str(r.get("seq")), str(r.get("time")), str(r.get("who")), str(r.get("action")),
                      f"{before} → v{r.get('to')}", _result(r), escape("\n".join(r.get("reasons") or [])))
    console.print(table)
