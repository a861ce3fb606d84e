"""Ship the answer: per dataset, the model the comparison chose, copied (not re-built) into a directory its engine's
own Hugging Face class loads, with `serving.json` (every setting its measurement used) and a model card
(`README.md` with Hub-style YAML metadata). `quantpipe.predict` serves such a directory as `serving.json` says."""

from __future__ import annotations

import itertools
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from quantpipe.config.registry import KINDS, get_kind
from quantpipe.config.sections import EvaluateParams, VariantParams
from quantpipe.errors import QuantpipeError
from quantpipe.inference import head_tail
from quantpipe.io import read_json, write_json, write_text
from quantpipe.kinds.base import Kind
from quantpipe.rendering import cpu_line

SERVING_FILE = "serving.json"
CARD_FILE = "README.md"
EXAMPLES = ["a gripping, funny and moving film", "two hours I will never get back"]


# the top-level settings of serving.json that predict serves with (they override the same keys of `params`/`evaluate`)
SERVED_VARIANT_KEYS = ("threads", "streams", "max_length", "truncation")


def serving_settings(
    name: str,
    dataset: str,
    kind: Kind,
    variant: VariantParams,
    cfg: EvaluateParams,
    resolved: dict,
    labels: list,
    text_fields: list[str],
) -> dict:
    """What `serving.json` holds: the settings the model was measured with, which `quantpipe.predict` serves it
    with (`threads`, `streams`, `batch_size`, `max_length`, `truncation`: edit these to serve it otherwise), what
    it computes in, then the variant's params and the evaluate section they were read from."""
    policy = variant.length_policy(cfg)
    return {
        "variant": name,
        "dataset": dataset,
        "task": "text-classification",
        "engine": kind.engine,
        "hub_class": kind.hub_class,
        "labels": list(labels),
        "text_fields": list(text_fields),
        "threads": variant.runtime_threads(cfg),
        "streams": variant.streams,
        "batch_size": cfg.batch_size,
        "max_length": policy.max_length,
        "truncation": policy.truncation,
        "hint": resolved.get("performance_hint"),
        "precision": kind.precision(variant, resolved),
        "resolved": resolved,
        "params": variant.model_dump(mode="json"),
        "evaluate": cfg.model_dump(mode="json"),
    }


@dataclass(frozen=True)
class Served:
    """A shipped directory as `serving.json` describes it: the variant's name, kind and params and the evaluate
    settings it is served with, its label names and the fields of a JSON record its text is joined from."""

    name: str
    kind: Kind
    variant: VariantParams
    cfg: EvaluateParams
    labels: list[str]
    text_fields: list[str]


def read_serving(model_dir: str | Path) -> Served:
    """A shipped directory's `serving.json`; a directory that is not a shipped model, or a file the ship stage did
    not write, is one line."""
    model_dir = Path(model_dir)
    path = model_dir / SERVING_FILE
    if not model_dir.is_dir():
        raise QuantpipeError(f"{model_dir}: no such directory")
    if not path.is_file():
        raise QuantpipeError(f"{model_dir}: not a shipped model (no {SERVING_FILE}; the ship stage writes models/ship)")
    settings = read_json(path, expect=dict)
    try:
        raw, evaluate = settings["params"], settings["evaluate"]
        if not isinstance(raw, dict) or raw.get("kind") not in KINDS:
            raise QuantpipeError(f"{path}: params.kind: not one of {sorted(KINDS)}")
        if not isinstance(evaluate, dict):
            raise QuantpipeError(f"{path}: evaluate: not a mapping")
        kind = get_kind(raw["kind"])
        served = {key: settings[key] for key in SERVED_VARIANT_KEYS}
        variant = kind.params.model_validate(raw | served)
        cfg = EvaluateParams.model_validate(evaluate | {"batch_size": settings["batch_size"]})
        labels, fields = settings["labels"], settings["text_fields"]
    except KeyError as exc:
        raise QuantpipeError(f"{path}: no {exc.args[0]!r} (not a serving file the ship stage wrote)") from None
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise QuantpipeError(f"{path}: {where}: {error['msg']}") from None
    for key, value in (("labels", labels), ("text_fields", fields)):
        if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
            raise QuantpipeError(f"{path}: {key}: not a list of names")
    return Served(str(settings.get("variant", model_dir.name)), kind, variant, cfg, labels, fields)


def _encode_lines(max_length: int, truncation: str) -> list[str]:
    """Tokenizer lines giving `inputs` as the measurement read each text (its length policy)."""
    if truncation == "head":
        return [
            f'inputs = tokenizer(texts, truncation=True, max_length={max_length}, padding=True, return_tensors="pt")'
        ]
    kept = head_tail([1, *[0] * (2 * max_length), 1], max_length)  # [CLS] text [SEP]: the positions kept
    head = next(i for i, (a, b) in enumerate(itertools.pairwise(kept)) if b != a + 1) + 1
    tail = max_length - head
    return [
        f"# at most {max_length} tokens: the first {head} and the last {tail} of a longer text, as measured",
        f'ids = [x if len(x) <= {max_length} else x[:{head}] + x[-{tail}:] for x in tokenizer(texts)["input_ids"]]',
        'inputs = tokenizer.pad({"input_ids": ids}, return_tensors="pt")',
    ]


def hub_snippet(kind: Kind, variant: VariantParams, cfg: EvaluateParams, path: str) -> str | None:
    """Python that loads the shipped directory `path` with its engine's Hugging Face class as measured and defines
    `classify(texts) -> labels`; None when no such class loads the kind."""
    loading = kind.hub_loading(variant, cfg)
    if not loading:
        return None
    split = loading.index("") if "" in loading else 0  # the kind's imports, a blank line, then its loading lines
    imports, body = loading[:split], loading[split + 1 if split else 0 :]
    policy = variant.length_policy(cfg)
    classify = [*_encode_lines(policy.max_length, policy.truncation), *kind.hub_call(variant)]
    return "\n".join(
        [
            *imports,
            "from transformers import AutoTokenizer",
            "",
            f'path = "{path}"',
            *body,
            "tokenizer = AutoTokenizer.from_pretrained(path)",
            "",
            "",
            "def classify(texts):",
            *(f"    {line}" for line in classify),
            "    return [model.config.id2label[int(i)] for i in logits.argmax(-1)]",
            "",
            "",
            f"print(classify({EXAMPLES!r}))",
        ]
    )


def _ratio(answer: dict, name: str) -> str:
    return f"{answer[name]:.2f}x [{answer[name + '_low']:.2f}, {answer[name + '_high']:.2f}]"


def _ci(metrics: dict, name: str) -> str:
    return f"{metrics[name]:.4f} [{metrics[name + '_ci_low']:.4f}, {metrics[name + '_ci_high']:.4f}]"


def figures(answer: dict, metrics: dict, majority: float, baseline: str) -> list[tuple[str, str]]:
    """The card's table: what the model scores beside doing nothing, and its speed against what a user has."""
    rows = [
        (f"accuracy [95% CI], {metrics['n']} texts", _ci(metrics, "accuracy")),
        ("the majority class alone (no model)", f"{majority:.4f}"),
        (f"Δ accuracy vs `{baseline}` (fp32)", f"{100 * answer['accuracy_delta']:+.2f} pt"),
        ("F1 [95% CI]", _ci(metrics, "f1")),
    ]
    if "agreement" in answer:
        agreement = f"{answer['agreement']:.4f} [{answer['agreement_ci_low']:.4f}, {answer['agreement_ci_high']:.4f}]"
        rows.append((f"agreement with `{baseline}`", agreement))
    rows.append((f"speed vs `{baseline}` (samples/s, side by side)", _ratio(answer, "speed_ratio")))
    if "vs_reference" in answer:
        ranked = "ranked" if answer["ranked_vs_reference"] else "not ranked: the range spans 1.0x"
        rows.append(
            (
                f"speed vs the fastest engine default `{answer['fastest_reference']}`",
                f"{_ratio(answer, 'vs_reference')}, {ranked}",
            )
        )
    elif answer.get("fastest_reference") == answer["ship"]:
        rows.append(("speed vs the fastest engine default", "it is that default"))
    if "ship_p50_ms" in answer:
        rows.append(("latency at batch size 1, p50", f"{answer['ship_p50_ms']:.1f} ms"))
    rows.append(("model size", f"{metrics['model_size_mb']:.1f} MB"))
    return rows


def model_card(
    settings: dict,
    answer: dict,
    metrics: dict,
    majority: float,
    baseline: str,
    environment: dict,
    split: str,
    snippet: str | None,
) -> str:
    """The shipped directory's README.md: YAML metadata (library, tags, model-index with the metrics), then what it
    is, its figures beside doing nothing, how it is served, how to load it and how to reproduce the figures."""
    name, dataset, path = settings["variant"], settings["dataset"], f"models/ship/{settings['dataset']}"
    metadata = {
        "library_name": (settings["hub_class"] or "quantpipe").split(".")[0],
        "pipeline_tag": "text-classification",
        "tags": [
            "quantpipe",
            settings["engine"],
            "text-classification",
            *(["int8"] if "int8" in settings["precision"] else []),
        ],
        "model-index": [
            {
                "name": name,
                "results": [
                    {
                        "task": {"type": "text-classification", "name": "Text Classification"},
                        "dataset": {"name": dataset, "type": dataset, "split": split},
                        "metrics": [
                            {"type": "accuracy", "name": "accuracy", "value": round(metrics["accuracy"], 4)},
                            {"type": "f1", "name": "f1", "value": round(metrics["f1"], 4)},
                        ],
                    }
                ],
            }
        ],
    }
    tokens = f"{settings['max_length']} tokens, " + (
        "head and tail" if settings["truncation"] == "head_tail" else "head"
    )
    lines = [
        "---",
        yaml.safe_dump(metadata, sort_keys=False).rstrip(),
        "---",
        "",
        f"# {name}: the model quantpipe ships for `{dataset}`",
        "",
        (
            f"The fastest model within the accuracy budget of `{baseline}` on `{dataset}`, chosen by quantpipe's compare "
            f"stage and copied here as it was measured. Model `{answer.get('model', 'base')}`, {settings['precision']}, "
            f"served by {settings['engine']} ({settings['streams']} stream(s), {settings['threads']} threads, batches of "
            f"{settings['batch_size']}), reading {tokens}."
        ),
        "",
        (
            f"Measured on this {cpu_line(environment['cpu'])} The answer differs from CPU to CPU (docs/cpus.md): "
            "re-run the pipeline on yours before trusting the speeds."
        ),
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in environment.get("versions", {}).items() if v) + ".",
        "",
        "| figure | value |",
        "|:--|:--|",
        *(f"| {label} | {value} |" for label, value in figures(answer, metrics, majority, baseline)),
        "",
        (
            "Speeds: median [min, max] of the round-by-round ratios of samples/s, every model timed in one process "
            "(metrics/side_by_side.json); a range that spans 1.0x does not rank the two."
        ),
        "",
        "## Use it",
        "",
        "```bash",
        f"python -m quantpipe.predict {path} texts.txt --output predictions.jsonl   # one text per line (or .jsonl)",
        "```",
        "",
        (
            f"`predict` serves the model with exactly the settings of `{SERVING_FILE}` and writes one JSON line per text "
            "(`label`, `score`)."
        ),
    ]
    if snippet:
        lines += [
            "",
            f"With the engine's own class (`{settings['hub_class']}`), set as measured:",
            "",
            "```python",
            snippet,
            "```",
        ]
    else:
        lines += ["", f"No Hugging Face class loads a `{settings['params']['kind']}` model: serve it with `predict`."]
    lines += [
        "",
        "## Reproduce",
        "",
        "```bash",
        "make run                        # or: dvc repro (the figures: reports/compare.md, metrics/answer.json)",
        "dvc pull models/ship            # or fetch only the shipped models from the project's DVC remote",
        "```",
        "",
    ]
    return "\n".join(lines)


def ship_model(model_dir: Path, out_dir: Path, settings: dict, card: str) -> None:
    """The model's files copied into `out_dir` (a new directory) with `serving.json` and the card."""
    shutil.copytree(model_dir, out_dir, ignore=shutil.ignore_patterns(".*"))
    write_json(out_dir / SERVING_FILE, settings)
    write_text(out_dir / CARD_FILE, card)
