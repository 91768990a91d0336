"""Typed configuration read once from ``params.yaml``.

Library code receives these objects (or plain arguments); only the CLI and the Prefect
flows call :func:`load_params`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from samsar.errors import SamsarError

DEFAULT_PARAMS = Path("params.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClassSpec(_Strict):
    """One semantic class: its name and display / palette colour (RGB)."""

    name: str = Field(min_length=1)
    color: tuple[Annotated[int, Field(ge=0, le=255)], Annotated[int, Field(ge=0, le=255)], Annotated[int, Field(ge=0, le=255)]]


class SyntheticConfig(_Strict):
    n_scenes: int = Field(8, ge=1)
    scene_size: int = Field(512, ge=16)
    looks: float = Field(1.0, gt=0)
    seed: int = 0
    # "target": SAR land-cover statistics; "source": the stand-in pretraining domain.
    domain: Literal["target", "source"] = "target"


class FusarMapConfig(_Strict):
    root: Path
    version: Literal[1, 2] = 1


class FolderConfig(_Strict):
    root: Path
    images: str = "images"
    masks: str = "masks"
    mask_mode: Literal["index", "rgb"] = "rgb"


class SceneConfig(_Strict):
    image: Path
    label: Path
    # label_offset / ignore_values used to live here; DataConfig moves them up to data.* (shared by sources).


# Band names usable in ``preprocess.compose`` (letters, digits, underscore; not starting with a digit).
_BAND_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_CHANNEL = re.compile(rf"^\s*({_BAND_NAME})\s*(?:([-/])\s*({_BAND_NAME})\s*)?$")


@dataclass(frozen=True)
class Channel:
    """One parsed ``preprocess.compose`` entry: one band, or two bands and an operator (``-`` or ``/``)."""

    expr: str
    bands: tuple[str, ...]
    op: str | None = None


def parse_channel(expr: str) -> Channel:
    """Parse ``NAME``, ``NAME-NAME`` or ``NAME/NAME``; ``ValueError`` naming the expression otherwise."""
    match = _CHANNEL.match(str(expr))
    if not match:
        raise ValueError(f"cannot read channel '{expr}'; use a band name, A-B (difference) or A/B (ratio), e.g. VV-VH")
    a, op, b = match.groups()
    return Channel(str(expr), (a,) if op is None else (a, b), op)
# File band: 1-based index (GDAL's numbering) or the band's description in the file.
BandRef = Annotated[int, Field(ge=1)] | Annotated[str, Field(min_length=1)]


def band_names(bands: "list[BandRef] | dict[str, BandRef] | None", count: int = 3) -> list[str]:
    """Names ``preprocess.compose`` may use: the keys of a ``data.bands`` mapping, the descriptions
    (or ``B<i>`` for indices) of a ``data.bands`` list, or ``B1..B<count>`` without ``data.bands``."""
    if bands is None:
        return [f"B{i}" for i in range(1, count + 1)]
    if isinstance(bands, dict):
        return list(bands)
    return [ref if isinstance(ref, str) else f"B{ref}" for ref in bands]


class DataConfig(_Strict):
    name: str = "synthetic"
    source: Literal["synthetic", "fusar_map", "folder", "scene"] = "synthetic"
    raw_dir: Path = Path("data/raw")
    processed_dir: Path = Path("data/processed")
    classes: list[ClassSpec] = Field(min_length=2)
    background: str | None = "background"
    ignore_index: int = Field(255, ge=0, le=255)
    unknown_labels: Literal["error", "ignore"] = "error"
    synthetic: SyntheticConfig = SyntheticConfig()
    fusar_map: FusarMapConfig | None = None
    folder: FolderConfig | None = None
    scene: SceneConfig | None = None
    # What DVC tracks as the input of `prepare` (dvc.yaml: ${data.inputs}): a folder or file holding
    # every file of the selected source, so editing or adding one reruns the pipeline. For the
    # synthetic source, the generator (src/samsar/data/synthetic.py).
    inputs: Path | None = None
    # Label values: class index = value - label_offset; ignore_values (negative ones too) -> ignore_index.
    label_offset: int = 0
    ignore_values: list[int] = Field(default_factory=list)
    # A georeferenced label on another grid (CRS, transform or size) than its image: an error, or
    # reprojected onto the image grid with nearest neighbour.
    label_grid: Literal["error", "reproject"] = "error"
    # Image bands used: a list of 1-based indices or band descriptions, or a mapping name -> index or
    # description (the names are what preprocess.compose refers to). null: every band (1 to 3).
    bands: list[BandRef] | dict[Annotated[str, Field(pattern=f"^{_BAND_NAME}$")], BandRef] | None = None
    # Image values that mean "no data", besides the file's own nodata value and mask (nan allowed:
    # NaN pixels are an error unless the file or this list declares NaN as nodata).
    nodata: list[float] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _label_keys_moved(cls, data):
        """``data.scene.label_offset`` / ``ignore_values`` (the old place) still work: moved up to ``data``."""
        if not isinstance(data, dict) or not isinstance(data.get("scene"), dict):
            return data
        scene = dict(data["scene"])
        moved = {key: scene.pop(key) for key in ("label_offset", "ignore_values") if key in scene}
        for key in moved:
            if key in data:
                raise ValueError(f"data.scene.{key} and data.{key} are both set; keep only data.{key} (shared by every source)")
        return {**data, **moved, "scene": scene}

    @field_validator("bands")
    @classmethod
    def _distinct_bands(cls, v):
        if v is None:
            return v
        if not v:
            raise ValueError("name at least one band, e.g. [1, 2] or {VV: 1, VH: 2}; or leave data.bands out to use every band")
        refs = list(v.values()) if isinstance(v, dict) else list(v)
        if len(set(refs)) != len(refs):
            raise ValueError(f"the same band is listed twice: {refs}")
        if not isinstance(v, dict) and len(set(band_names(v))) != len(refs):
            raise ValueError(f"band names collide: {band_names(v)}; use a mapping such as {{VV: 1, VH: 2}}")
        return v

    @model_validator(mode="after")
    def _source_section_present(self) -> "DataConfig":
        if self.source != "synthetic" and getattr(self, self.source) is None:
            raise ValueError(f"data.source is '{self.source}' but the data.{self.source} section is missing")
        if self.background is not None and self.background not in self.class_names:
            raise ValueError(f"data.background '{self.background}' is not one of data.classes {self.class_names}")
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"data.classes: names must be unique, got {self.class_names}")
        if self.ignore_index < self.num_classes:
            raise ValueError(f"data.ignore_index {self.ignore_index} is a class index; use a value >= {self.num_classes}, e.g. 255")
        return self

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


class SplitConfig(_Strict):
    val: float = Field(0.15, ge=0, lt=1)
    test: float = Field(0.2, gt=0, lt=1)
    block_size: int = Field(512, ge=1)  # spatial block side for scene splits (pixels)
    seed: int = 0
    # random: seeded, share-proportional; stratified: first a train unit for every class (small labelled areas)
    mode: Literal["random", "stratified"] = "random"

    @model_validator(mode="after")
    def _train_share_left(self) -> "SplitConfig":
        if self.val + self.test >= 1:
            raise ValueError(f"val + test = {self.val + self.test:g} leaves no train share; keep their sum below 1, e.g. val 0.15, test 0.2")
        return self


class PreprocessConfig(_Strict):
    # Units of the stored values: amplitude, intensity (linear power; "power" is accepted) or db.
    input_kind: Literal["amplitude", "intensity", "db"] = "intensity"
    to_db: bool = True
    clip_percentiles: tuple[float, float] = (1.0, 99.0)
    # SAM's three channels from the bands of data.bands, in working units (dB when to_db or db input):
    # a band name, "A-B" (difference) or "A/B" (ratio; in dB it equals A-B). null: 1 band replicated,
    # 2 bands -> (b1, b2, their mean), 3 bands as is.
    compose: list[str] | None = None
    # Tiles with a larger share of nodata pixels are skipped (counted in the preprocess summary).
    max_nodata_fraction: float = Field(0.5, ge=0, le=1)
    tile_size: int = Field(256, ge=16)
    stride: int = Field(256, ge=1)
    split: SplitConfig = SplitConfig()

    @field_validator("input_kind", mode="before")
    @classmethod
    def _power_is_intensity(cls, v):
        return "intensity" if v == "power" else v

    @field_validator("compose")
    @classmethod
    def _three_channels(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if len(v) != 3:
            raise ValueError(f"SAM takes 3 channels; give 3 entries, e.g. [VV, VH, VV-VH] (got {len(v)})")
        for expr in v:
            parse_channel(expr)
        return v

    @field_validator("clip_percentiles")
    @classmethod
    def _ordered_percentiles(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= v[0] < v[1] <= 100:
            raise ValueError(f"need 0 <= low < high <= 100, got {list(v)}; e.g. [1.0, 99.0]")
        return v


class ModelConfig(_Strict):
    backbone: Literal["tiny", "vit_b", "vit_l", "vit_h"] = "tiny"
    checkpoint: Path | None = None  # official SAM checkpoint; None -> pretrain stand-in base
    image_size: int = Field(256, ge=16)
    gradient_checkpointing: bool = False

    @field_validator("image_size")
    @classmethod
    def _patch_multiple(cls, v: int) -> int:
        if v % 16:
            raise ValueError(f"must be a multiple of SAM's 16 px patch, e.g. {v // 16 * 16} or {(v // 16 + 1) * 16}")
        return v


class PretrainConfig(_Strict):
    enabled: bool = True
    output: Path = Path("models/base/sam_tiny_base.pth")
    max_steps: int = Field(2000, ge=1)  # the budget: pretraining ends after this many optimizer steps
    max_seconds: float | None = Field(None, gt=0)  # guard only; when it fires the base is marked cut short
    batch_size: int = Field(8, ge=1)
    lr: float = Field(1e-3, gt=0)
    head: Literal["light", "classwise"] = "light"  # light: 1x1 class head, ~2.4x cheaper steps on CPU
    synthetic: SyntheticConfig = SyntheticConfig(domain="source", looks=8.0, seed=1000)


LORA_SLICES = ("q", "k", "v")  # slices of each block's fused attn.qkv, in SAM's order (SAMed's LoRA)
LORA_LAYERS = ("qkv", "proj", "lin1", "lin2")  # block linears LoRA can wrap whole


def split_lora_targets(targets: list[str]) -> tuple[list[str], list[str]]:
    """``(whole layers, qkv slices)`` of a LoRA target list; ``ValueError`` naming what is wrong."""
    unknown = [t for t in targets if t not in LORA_SLICES + LORA_LAYERS]
    if unknown:
        raise ValueError(f"unknown LoRA target(s) {unknown}; use q, k, v (slices of attn.qkv) or whole layers "
                         f"{', '.join(LORA_LAYERS)}, e.g. [q, v] (SAMed) or [qkv, proj]")
    if len(set(targets)) != len(targets):
        raise ValueError(f"a LoRA target is listed twice: {targets}")
    slices = [t for t in targets if t in LORA_SLICES]
    if slices and "qkv" in targets:
        raise ValueError(f"{targets} names qkv and its slices {slices}; use either qkv or q/k/v")
    return [t for t in targets if t in LORA_LAYERS], slices


class LoraOptions(_Strict):
    rank: int = Field(4, ge=1)
    alpha: float = Field(4.0, gt=0)
    # Whole block linears (qkv, proj, lin1, lin2) and/or slices q, k, v of attn.qkv (one A/B pair each).
    targets: list[str] = Field(default_factory=lambda: ["qkv", "proj"], min_length=1)

    @field_validator("targets")
    @classmethod
    def _known_targets(cls, v: list[str]) -> list[str]:
        split_lora_targets(v)
        return v


class AdapterOptions(_Strict):
    reduction: int = Field(4, ge=1)  # bottleneck d -> d / reduction
    hidden: int | None = Field(None, ge=1)  # absolute bottleneck width; set, it replaces reduction
    blocks: list[int] | None = None  # encoder block indices that get adapters; null: every block
    # Where in each block: after attention, after the MLP (sequential, Houlsby), or both.
    placement: Literal["both", "attention", "mlp"] = "both"

    @field_validator("blocks")
    @classmethod
    def _block_indices(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or min(v) < 0 or len(set(v)) != len(v)):
            raise ValueError(f"list distinct block indices >= 0, e.g. [0, 1, 2], or null for every block (got {v})")
        return v


class ParserOptions(_Strict):
    targets: list[Literal["neck", "blocks"]] = Field(default_factory=lambda: ["neck"])
    lr: float = Field(1e-2, gt=0)


class CwsamOptions(_Strict):
    mode: Literal["fixed", "faithful"] = "fixed"
    low_freq_ratio: float = Field(0.25, gt=0, le=1)
    # CWSAM's own adapter bottleneck (d -> d / reduction); independent of the Houlsby baseline's adapter.reduction.
    reduction: int = Field(4, ge=1)


class BoxPromptOptions(_Strict):
    """Box prompts of the box_prompt head, taken from the truth in training and evaluation."""

    # per_object: one box per connected component; per_image: one box around all objects of the tile (PARSER paper).
    boxes: Literal["per_object", "per_image"] = "per_object"
    jitter: int = Field(20, ge=0)  # training only: each side grows outward by 0-jitter px (evaluation: exact boxes)


class VariantOptions(_Strict):
    lora: LoraOptions = LoraOptions()
    adapter: AdapterOptions = AdapterOptions()
    parser: ParserOptions = ParserOptions()
    cwsam: CwsamOptions = CwsamOptions()
    head: Literal["classwise", "box_prompt"] = "classwise"  # of plain variant names; `<method>-box` is always box_prompt
    box_prompt: BoxPromptOptions = BoxPromptOptions()


# Variant name suffix -> head: `<method>-box` is method `<method>` with the box_prompt head.
HEAD_SUFFIXES = {"box": "box_prompt"}


def split_variant_name(name: str) -> tuple[str, str | None]:
    """``"parser-box"`` -> ``("parser", "box_prompt")``; ``"parser"`` -> ``("parser", None)`` (head from
    ``variant_options.head``). ``ValueError`` for an unknown suffix; the method is not checked here
    (``samsar.models.variants.parse_variant`` does)."""
    method, sep, suffix = name.rpartition("-")
    if not sep:
        return name, None
    if suffix not in HEAD_SUFFIXES:
        raise ValueError(f"unknown head suffix '-{suffix}' in variant '{name}'; use <method> or <method>-box")
    return method, HEAD_SUFFIXES[suffix]


def variant_head(name: str, options: VariantOptions) -> str:
    """The head variant ``name`` trains: its suffix's, else ``options.head``."""
    return split_variant_name(name)[1] or options.head


def box_head_fits(class_names: list[str], background: str | None) -> bool:
    """Whether the box_prompt head (background / object) can serve these classes: 2, the background first."""
    return len(class_names) == 2 and background in (None, class_names[0])


class TrainConfig(_Strict):
    # The budget is in optimizer steps: epochs, optionally capped by max_steps; the schedule follows it.
    epochs: int = Field(10, ge=1)
    max_steps: int | None = Field(None, ge=1)
    # Guard only: a run it stops is marked cut short (metrics, card, comparison, MLflow) and never promoted.
    max_seconds: float | None = Field(None, gt=0)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_steps: int = Field(20, ge=0)
    min_lr: float = Field(1e-7, ge=0)
    grad_accum: int = Field(1, ge=1)
    class_weights: Literal["none", "inverse_sqrt", "inverse"] | list[float] = "inverse_sqrt"
    dice_weight: float = Field(0.5, ge=0)
    augment: bool = True
    random_crop: int | None = Field(None, ge=16)
    early_stopping_patience: int = Field(5, ge=1)
    checkpoint_every: int = Field(50, ge=0)  # 0: only at the end
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    deterministic: bool = False
    num_workers: int = Field(0, ge=0)
    feature_cache: bool = True  # reuse frozen-trunk features across epochs where the variant allows
    # Every variant trains once per seed; reports give mean and std over them.
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data):
        if isinstance(data, dict) and "seed" in data:
            raise ValueError(f"train.seed is now train.seeds, a list (e.g. seeds: [{data['seed']}, 1, 2])")
        return data

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"train.seeds contains duplicates: {v}")
        return v


class EvaluateConfig(_Strict):
    overlays: int = Field(4, ge=0)
    batch_size: int = Field(8, ge=1)
    # Classes scored per object (connected components matched at IoU >= object_iou), e.g. [ship];
    # the other non-background classes get boundary F1 within boundary_tolerance pixels.
    object_classes: list[str] = Field(default_factory=list)
    object_iou: float = Field(0.5, gt=0.0, le=1.0)
    boundary_tolerance: int = Field(2, ge=0)


class TrackingConfig(_Strict):
    enabled: bool = True
    tracking_uri: str | None = None  # None -> sqlite:///<root>/mlflow/mlflow.db (or $MLFLOW_TRACKING_URI)
    artifact_dir: Path = Path("mlflow/artifacts")
    system_metrics: bool = True
    # Base checkpoints up to this size are logged with the pyfunc model; bigger ones are referenced by path and hash.
    max_logged_checkpoint_mb: float = 64.0


class CardConfig(_Strict):
    """What the model card says about the data's acquisition (not recorded in the data files).

    Left null, the card states what the data source implies (e.g. "synthetic") or "not recorded".
    """

    sensor: str | None = None
    band: str | None = None
    polarisation: str | None = None
    resolution_m: float | None = None
    owners: str | None = None


class PromotionConfig(_Strict):
    metric: str = "mIoU"
    margin: float = 0.0
    class_iou_tolerance: float = 0.05
    # The candidate's paired-bootstrap interval over the majority-class baseline must clear this.
    baseline_margin: float = 0.05


class PipelineConfig(_Strict):
    """Prefect flow settings: GPU concurrency and retries of transient failures."""

    gpu_tag: str = "gpu"  # tag of GPU tasks; its tag concurrency limit caps GPU tasks running at once
    gpu_slots: int = Field(1, ge=1)  # limit created for that tag when none exists yet
    retries: int = Field(2, ge=0)
    retry_delay_seconds: float = Field(30.0, ge=0)


class Params(_Strict):
    """The whole of ``params.yaml``."""

    seed: int = 0
    data: DataConfig
    preprocess: PreprocessConfig = PreprocessConfig()
    model: ModelConfig = ModelConfig()
    pretrain: PretrainConfig = PretrainConfig()
    variants: list[str] = Field(default_factory=lambda: ["decoder_only", "parser", "lora", "adapter", "cwsam", "parser_lora"])
    variant_options: VariantOptions = VariantOptions()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    tracking: TrackingConfig = TrackingConfig()
    promotion: PromotionConfig = PromotionConfig()
    card: CardConfig = CardConfig()
    pipeline: PipelineConfig = PipelineConfig()
    # Directory that relative paths are resolved against (the folder holding params.yaml).
    root: Path = Path(".")

    @field_validator("variants")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"variants contains duplicates: {v}")
        return v

    @model_validator(mode="after")
    def _object_classes_known(self) -> "Params":
        for name in self.evaluate.object_classes:
            if name not in self.data.class_names or name == self.data.background:
                raise ValueError(f"evaluate.object_classes: '{name}' is not a non-background class of data.classes "
                                 f"{self.data.class_names}; list object classes such as ship by name")
        if len(set(self.evaluate.object_classes)) != len(self.evaluate.object_classes):
            raise ValueError(f"evaluate.object_classes contains duplicates: {self.evaluate.object_classes}")
        return self

    @model_validator(mode="after")
    def _box_head_is_binary(self) -> "Params":
        """The box_prompt head predicts background / object: 2 classes, the background first."""
        boxed = []
        for name in self.variants:
            try:
                if variant_head(name, self.variant_options) == "box_prompt":
                    boxed.append(name)
            except ValueError:
                pass  # an unknown suffix: reported with the unknown variants (load_params)
        names, background = self.data.class_names, self.data.background
        if boxed and not box_head_fits(names, background):
            raise ValueError(
                f"variants: {boxed} use the box_prompt head, which predicts background/object: it needs 2 data.classes "
                f"with the background first, got {names} (background {background!r}); use classwise variants for this data"
            )
        return self

    @model_validator(mode="after")
    def _compose_names_bands(self) -> "Params":
        compose = self.preprocess.compose
        if compose is None:
            return self
        known = band_names(self.data.bands)
        for expr in compose:
            unknown = [name for name in parse_channel(expr).bands if name not in known]
            if unknown:
                where = "data.bands" if self.data.bands is not None else "the default names (no data.bands)"
                raise ValueError(
                    f"preprocess.compose: '{expr}' uses {unknown}, not among {known} from {where}; "
                    f"name the bands in data.bands, e.g. {{VV: 1, VH: 2}}"
                )
        return self

    def path(self, p: Path | str) -> Path:
        """Resolve a params path against the project root."""
        p = Path(p)
        return p if p.is_absolute() else (self.root / p)

    @property
    def processed_dir(self) -> Path:
        return self.path(self.data.processed_dir)

    @property
    def raw_dir(self) -> Path:
        return self.path(self.data.raw_dir)

    def variant_dir(self, variant: str) -> Path:
        """Where the trained adapter and training logs of one variant live."""
        return self.path(Path("models") / variant)

    def seed_dir(self, variant: str, seed: int) -> Path:
        """``models/<variant>/seeds/<seed>``: that seed's adapter, history.csv and train_summary.json."""
        return self.variant_dir(variant) / "seeds" / str(seed)

    def metrics_path(self, variant: str) -> Path:
        return self.path(Path("metrics") / f"{variant}.json")

    def report_dir(self, variant: str) -> Path:
        return self.path(Path("reports") / variant)


class ParamsError(SamsarError, ValueError):
    """params.yaml is missing or invalid; the message names the file and the field."""


def load_params(path: Path | str = DEFAULT_PARAMS, known_variants: Iterable[str] | None = None,
                check_inputs: bool = True) -> Params:
    """Read and validate a params file; relative paths resolve against its folder.

    With ``known_variants`` (the method registry's names), every entry of ``variants`` must be one.
    ``check_inputs``: the selected source's paths and ``model.checkpoint`` must exist (commands
    that never read them, such as ``predict`` or ``register``, pass False).
    """
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found (pass --params FILE)")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections (data, train, ...), got {type(raw).__name__}")
    raw.setdefault("root", str(path.resolve().parent))
    try:
        params = Params.model_validate(raw)
    except ValidationError as exc:
        raise ParamsError(f"{path}: " + "; ".join(_describe(error) for error in exc.errors())) from exc
    problems = _missing_paths(params) if check_inputs else []
    if known_variants is not None:
        problems += _unknown_variants(params.variants, sorted(known_variants))
    if problems:
        raise ParamsError(f"{path}: " + "; ".join(problems))
    return params


def _describe(error: dict) -> str:
    """One pydantic error as ``key.path: problem (got value)``."""
    key = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    got = "" if error["type"] in ("missing", "value_error") else f" (got {error['input']!r})"
    return f"{key}: {message}{got}" if key else message


def _missing_paths(params: Params) -> list[str]:
    """Input paths params name that do not exist (only those of the selected data source)."""
    data, wanted = params.data, {}
    if data.source == "fusar_map":
        wanted["data.fusar_map.root"] = data.fusar_map.root
    elif data.source == "folder":
        wanted["data.folder.root"] = data.folder.root
    elif data.source == "scene":
        wanted |= {"data.scene.image": data.scene.image, "data.scene.label": data.scene.label}
    if data.source != "synthetic" and data.inputs is not None:
        wanted["data.inputs"] = data.inputs
    if params.model.checkpoint is not None:
        wanted["model.checkpoint"] = params.model.checkpoint
    problems = [
        f"{key}: {params.path(value)} does not exist; fix the path (relative paths start at the params file's folder)"
        for key, value in wanted.items()
        if not params.path(value).exists()
    ]
    if not problems and data.source != "synthetic" and data.inputs is not None:
        inputs = params.path(data.inputs).resolve()
        outside = [key for key, value in wanted.items() if key.startswith(f"data.{data.source}.")
                   and not params.path(value).resolve().is_relative_to(inputs)]
        if outside:
            problems.append(
                f"data.inputs: {params.path(data.inputs)} does not hold {', '.join(outside)}; DVC reruns `prepare` "
                f"when a file under data.inputs changes, so point it at the folder holding the source files"
            )
    return problems


def _unknown_variants(variants: list[str], known: list[str]) -> list[str]:
    """``known``: method names; each is also valid with a head suffix (``parser-box``)."""
    names = known + [f"{method}-{suffix}" for suffix in HEAD_SUFFIXES for method in known]
    problems = []
    for name in variants:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            suffixes = ", ".join(f"-{s}" for s in HEAD_SUFFIXES)
            problems.append(f"variants: unknown variant '{name}'; {hint}known: {', '.join(known)} "
                            f"(each also with {suffixes} for the box_prompt head)")
    return problems
