"""The students: smaller models distilled from the fine-tuned model (the teacher), and the teacher's logits they
all learn from (`distillation`, computed once by the teacher_logits stage)."""

from __future__ import annotations

import itertools

from pydantic import Field, field_validator

from quantpipe.config.base import Section, Seed, Threads

BASE_MODEL = "base"  # a variant's `model` naming the fine-tuned model itself


class DistillationParams(Section):
    """The texts every student trains on and the teacher's logits on them (the teacher_logits stage)."""

    max_samples: int | None = Field(
        None, gt=0, description="a seeded sample of the train split (null: all of it, 67,349 SST-2 sentences)"
    )
    max_length: int = Field(64, ge=8, description="tokens per training text, for the teacher and the students alike")
    batch_size: int = Field(128, gt=0, description="batch size of the teacher's pass")
    seed: Seed = Field(42, description="seed of the sample")
    threads: Threads = Field(2, description="torch threads of the teacher's pass")


class StudentParams(Section):
    """One student: the teacher's encoder cut down (layers kept, optionally a narrower FFN and fewer heads, the
    weights kept copied from the teacher), then trained on the teacher's logits mixed with the labels."""

    layers: list[int] = Field(
        min_length=1,
        description="the teacher's layers kept, by index from 0, in increasing order; each initialised from the "
        "teacher's own (e.g. [0, 2, 4, 5]: 4 of MiniLM's 6)",
    )
    ffn: int | None = Field(
        None,
        gt=0,
        description="FFN width kept per layer (null: the teacher's); the neurons with the largest "
        "|W_in row| x |W_out column| (L2 norms) are kept",
    )
    heads: int | None = Field(
        None,
        gt=0,
        description="attention heads kept per layer (null: the teacher's); the heads with the largest L2 norm of "
        "their slices of the value and output projections (product) are kept",
    )
    epochs: float = Field(1.0, gt=0, description="passes over the distillation texts (fractions allowed)")
    batch_size: int = Field(32, gt=0, description="training batch size")
    learning_rate: float = Field(1e-4, gt=0, description="AdamW peak learning rate")
    warmup_ratio: float = Field(0.06, ge=0, lt=1, description="fraction of the steps in linear warm-up")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    temperature: float = Field(2.0, gt=0, description="softmax temperature of the teacher's and student's logits")
    alpha: float = Field(
        0.5,
        ge=0,
        le=1,
        description="weight of the soft loss (KL divergence to the teacher at `temperature`, times its square); "
        "1 - alpha: cross-entropy with the labels",
    )
    freeze_embeddings: bool = Field(True, description="word embeddings stay the teacher's: faster CPU steps")
    seed: Seed = Field(42, description="seed of the batch order: the same seed gives the same student")
    threads: Threads = Field(2, description="torch threads while training")

    @field_validator("layers")
    @classmethod
    def _increasing(cls, layers: list[int]) -> list[int]:
        if any(i < 0 for i in layers):
            raise ValueError(f"layer indices start at 0 (got {layers})")
        if any(b <= a for a, b in itertools.pairwise(layers)):
            raise ValueError(f"each layer once, in increasing order (got {layers})")
        return layers


def check_students(params) -> None:
    """Student names and the models variants name (raise ValueError)."""
    if BASE_MODEL in params.students:
        raise ValueError(f"students: '{BASE_MODEL}' is the fine-tuned model's name; name the student otherwise")
    for name, variant in params.variants.items():
        check_model(f"variants.{name}.model", variant.model, params)


def check_model(where: str, model, params) -> None:
    """`model` (at the param `where`) names the base model or a student (raise ValueError)."""
    if model != BASE_MODEL and model not in params.students:
        raise ValueError(f"{where}: {model!r} is neither {BASE_MODEL} nor a student {sorted(params.students)}")
