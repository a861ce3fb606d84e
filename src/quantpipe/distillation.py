"""Students: smaller models distilled from the fine-tuned model (the teacher).

The teacher's logits on the distillation texts are computed once (`teacher_logits`) and read by every student.
A student is the teacher's encoder cut down (`make_student`: layers kept, FFN neurons and attention heads kept by a
weight-magnitude importance score, every kept weight copied from the teacher), then trained (`distil`) on the
teacher's logits at a temperature mixed with the labels' cross-entropy (Hinton et al. 2015; DistilBERT)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from quantpipe.config.students import DistillationParams, StudentParams
from quantpipe.errors import QuantpipeError
from quantpipe.inference import length_sorted_batches
from quantpipe.io import check_model_dir, loading, read_parquet
from quantpipe.training import train_loop

LOGITS_FILE = "logits.parquet"  # text, label, logit_0 .. logit_<n-1>


def distillation_texts(train: pd.DataFrame, cfg: DistillationParams) -> pd.DataFrame:
    """The train rows the students learn from: a seeded sample of `max_samples` (all rows without it)."""
    if train.empty:
        raise QuantpipeError("distillation: the train split is empty")
    if cfg.max_samples and cfg.max_samples < len(train):
        return train.sample(n=cfg.max_samples, random_state=cfg.seed).reset_index(drop=True)
    return train.reset_index(drop=True)


def load_classifier(model_dir: Path):
    """A saved sequence classifier (safetensors only: nothing loaded can run code) and its tokenizer."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    check_model_dir(model_dir)
    with loading(model_dir, "PyTorch model directory", (OSError, ValueError)):
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, use_safetensors=True).eval()
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return model, tokenizer


def teacher_logits(teacher_dir: Path, rows: pd.DataFrame, cfg: DistillationParams) -> pd.DataFrame:
    """`rows` (text, label) with the teacher's logits on each text (`logit_<class>` columns), in the rows' order."""
    import torch

    torch.set_num_threads(cfg.threads)
    model, tokenizer = load_classifier(teacher_dir)
    texts = rows["text"].tolist()
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=cfg.max_length)["input_ids"]]
    logits = np.empty((len(texts), model.config.num_labels), dtype=np.float32)
    with torch.inference_mode():
        for idx in tqdm(length_sorted_batches(lengths, cfg.batch_size), desc="teacher logits", unit="batch"):
            batch = tokenizer(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=cfg.max_length, return_tensors="pt"
            )
            logits[idx] = model(**batch).logits.float().numpy()
    out = rows[["text", "label"]].reset_index(drop=True)
    for k in range(logits.shape[1]):
        out[f"logit_{k}"] = logits[:, k]
    return out


def read_logits(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """The teacher_logits stage's table and its logits as one (texts x classes) array."""
    frame = read_parquet(path, columns=("text", "label", "logit_0"))
    columns = sorted((c for c in frame.columns if c.startswith("logit_")), key=lambda c: int(c.split("_")[1]))
    return frame, frame[columns].to_numpy(dtype=np.float32)


def _encoder_layers(model):
    """The teacher's list of transformer layers (BERT-style encoders: BERT, RoBERTa, MiniLM, ...)."""
    layers = getattr(getattr(model.base_model, "encoder", None), "layer", None)
    if layers is None or not hasattr(layers[0], "intermediate"):
        raise QuantpipeError(
            f"students: the teacher is a {model.config.model_type} model; students are cut from BERT-style encoders "
            "(base_model.encoder.layer[i] with attention, intermediate and output)"
        )
    return layers


def check_student(name: str, cfg: StudentParams, teacher_config) -> None:
    """The student's layers, FFN width and heads against the teacher's config (one line naming the key)."""
    layers = teacher_config.num_hidden_layers
    if len(cfg.layers) > layers or cfg.layers[-1] >= layers:
        raise QuantpipeError(
            f"students.{name}.layers: {cfg.layers} is not a subset of the teacher's {layers} layers (0..{layers - 1})"
        )
    if cfg.ffn and cfg.ffn > teacher_config.intermediate_size:
        raise QuantpipeError(
            f"students.{name}.ffn: {cfg.ffn} is wider than the teacher's FFN ({teacher_config.intermediate_size})"
        )
    if cfg.heads and cfg.heads > teacher_config.num_attention_heads:
        raise QuantpipeError(
            f"students.{name}.heads: {cfg.heads} is more than the teacher's {teacher_config.num_attention_heads} heads"
        )


def _narrow_ffn(layer, width: int) -> None:
    """Keep the `width` FFN neurons with the largest |W_in row| x |W_out column| (in place)."""
    import torch

    w_in, w_out = layer.intermediate.dense, layer.output.dense
    score = w_in.weight.norm(dim=1) * w_out.weight.norm(dim=0)
    keep = torch.sort(torch.topk(score, width).indices).values
    narrow_in = torch.nn.Linear(w_in.in_features, width)
    narrow_in.weight.data, narrow_in.bias.data = w_in.weight.data[keep].clone(), w_in.bias.data[keep].clone()
    narrow_out = torch.nn.Linear(width, w_out.out_features)
    narrow_out.weight.data, narrow_out.bias.data = w_out.weight.data[:, keep].clone(), w_out.bias.data.clone()
    layer.intermediate.dense, layer.output.dense = narrow_in, narrow_out


def _heads_to_drop(layer, heads: int, keep: int) -> list[int]:
    """The heads of `layer` outside the `keep` with the largest |value slice| x |output projection slice|."""
    import torch

    size = layer.attention.self.attention_head_size
    value, out = layer.attention.self.value.weight, layer.attention.output.dense.weight
    score = torch.stack(
        [value[h * size : (h + 1) * size].norm() * out[:, h * size : (h + 1) * size].norm() for h in range(heads)]
    )
    kept = set(torch.topk(score, keep).indices.tolist())
    return [h for h in range(heads) if h not in kept]


def make_student(teacher, cfg: StudentParams):
    """A copy of `teacher` cut down to the layers of `cfg` (in their order), each with its `ffn` widest neurons and
    `heads` strongest heads; every kept weight is the teacher's."""
    import torch

    student = copy.deepcopy(teacher)
    encoder_layers = _encoder_layers(student)
    kept = torch.nn.ModuleList([encoder_layers[i] for i in cfg.layers])
    student.base_model.encoder.layer = kept
    student.config.num_hidden_layers = len(kept)
    if cfg.ffn and cfg.ffn < teacher.config.intermediate_size:
        for layer in kept:
            _narrow_ffn(layer, cfg.ffn)
        student.config.intermediate_size = cfg.ffn
    if cfg.heads and cfg.heads < teacher.config.num_attention_heads:
        heads = teacher.config.num_attention_heads
        student.prune_heads({i: _heads_to_drop(layer, heads, cfg.heads) for i, layer in enumerate(kept)})
    return student.eval()


def distillation_loss(student_logits, teacher_logits, labels, temperature: float, alpha: float):
    """alpha x T² x KL(teacher || student) at temperature T, plus (1 - alpha) x cross-entropy with the labels."""
    import torch.nn.functional as F

    soft = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=-1),
        F.log_softmax(teacher_logits / temperature, dim=-1),
        reduction="batchmean",
        log_target=True,
    )
    return alpha * temperature**2 * soft + (1 - alpha) * F.cross_entropy(student_logits, labels)


def distil(student, tokenizer, frame: pd.DataFrame, logits: np.ndarray, cfg: StudentParams, max_length: int) -> dict:
    """Train `student` on the texts of `frame` against the teacher's `logits` and the labels (`train_loop`: AdamW,
    warm-up then linear decay, length-grouped batches, a progress bar). Returns the loss statistics."""
    import torch

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    texts, labels = frame["text"].tolist(), torch.tensor(frame["label"].to_numpy(), dtype=torch.long)
    soft_targets = torch.tensor(logits)
    lengths = np.array([len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]])
    if cfg.freeze_embeddings:
        student.get_input_embeddings().weight.requires_grad_(False)
    objective = _Objective(student, cfg.temperature, cfg.alpha)

    def batch(idx: np.ndarray) -> dict:
        encoded = tokenizer(
            [texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        )
        return {**encoded, "teacher_logits": soft_targets[idx], "labels": labels[idx]}

    losses = train_loop(objective, [p for p in student.parameters() if p.requires_grad], lengths, batch, cfg, "distil")
    return {
        "train_samples": len(texts),
        "steps": len(losses),
        "first_loss": losses[0],
        "final_loss": float(np.mean(losses[-50:])),
    }


class _Objective:
    """The student under `train_loop`: called with its inputs, the teacher's logits and the labels, it returns
    an object whose `loss` is the distillation loss."""

    def __init__(self, student, temperature: float, alpha: float):
        self.student, self.temperature, self.alpha = student, temperature, alpha

    def __call__(self, teacher_logits, labels, **inputs):
        from types import SimpleNamespace

        logits = self.student(**inputs).logits
        return SimpleNamespace(loss=distillation_loss(logits, teacher_logits, labels, self.temperature, self.alpha))

    def train(self) -> None:
        self.student.train()

    def eval(self) -> None:
        self.student.eval()


def build_student(name: str, teacher_dir: Path, logits_file: Path, cfg: StudentParams, max_length: int, out: Path):
    """The student `name` cut from the teacher in `teacher_dir`, distilled on the teacher_logits stage's table, saved
    with the teacher's tokenizer into `out`; returns a summary (sizes and the loss statistics)."""
    teacher, tokenizer = load_classifier(teacher_dir)
    _encoder_layers(teacher)
    check_student(name, cfg, teacher.config)
    frame, logits = read_logits(logits_file)
    if logits.shape[1] != teacher.config.num_labels:
        raise QuantpipeError(
            f"{logits_file}: {logits.shape[1]} logits per text, the teacher has {teacher.config.num_labels} labels"
        )
    student = make_student(teacher, cfg)
    del teacher
    summary = {
        "layers": cfg.layers,
        "ffn": student.config.intermediate_size,
        "parameters": sum(p.numel() for p in student.parameters()),
        **distil(student, tokenizer, frame, logits, cfg, max_length),
    }
    student.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return summary
