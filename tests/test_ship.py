"""The ship stage and `quantpipe.predict` on the tiny project: each engine's shipped directory loads with its Hugging
Face class and predicts what evaluate predicted; predict serves serving.json's settings; the card's figures are
metrics/answer.json's; bad input is one line and leaves no output behind."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO, run

pytestmark = pytest.mark.e2e

# one variant per engine of the tiny project's params, and a baseline (the answer may be any of them)
ENGINES = {
    "dynamic_int8": "onnxruntime",
    "openvino_int8_streams2": "openvino",
    "pytorch_fp32_ht128": "pytorch",
    "onnx_fp32": "onnxruntime",
}


def eval_texts(project: Path, dataset: str = "sst2") -> list[str]:
    return pd.read_parquet(project / f"data/prepared/{dataset}/eval.parquet")["text"].tolist()


def evaluated_labels(project: Path, variant: str, dataset: str = "sst2") -> list[str]:
    names = yaml.safe_load((project / "params.yaml").read_text())["base_model"]["labels"]
    predictions = json.loads((project / f"predictions/{variant}/{dataset}.json").read_text())
    return [names[i] for i in predictions["labels"]]


def ship_as_answer(project: Path, variant: str) -> Path:
    """The ship stage run with `variant` as both datasets' answer (the answer's figures kept): models/ship_<variant>."""
    answer = json.loads((project / "metrics/answer.json").read_text())
    for row in answer.values():
        row["ship"] = variant
    (project / "answer_alt.json").write_text(json.dumps(answer))
    out = project / f"models/ship_{variant}"
    run(project, sys.executable, "stages/ship.py", "--answer", "answer_alt.json", "--out", str(out))
    return out


def card_snippet(card: str) -> str:
    return re.search(r"```python\n(.*?)```", card, re.DOTALL).group(1)


def run_snippet(project: Path, snippet: str, shipped: Path, texts: list[str], tmp_path: Path) -> list[str]:
    """The card's lines as written (pointed at `shipped`), then `classify` on each text alone."""
    script = snippet.replace('"models/ship/sst2"', repr(str(shipped)))
    script += "\nimport json, sys\nprint(json.dumps([classify([t])[0] for t in json.load(open(sys.argv[1]))]))\n"
    (tmp_path / "card.py").write_text(script)
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    proc = run(project, sys.executable, str(tmp_path / "card.py"), str(tmp_path / "texts.json"))
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("variant", ENGINES)
def test_a_shipped_directory_loads_with_its_engines_class_and_predicts_as_evaluated(project, variant, tmp_path):
    shipped = ship_as_answer(project, variant)
    settings = json.loads((shipped / "sst2/serving.json").read_text())
    assert settings["engine"] == ENGINES[variant] and settings["variant"] == variant
    snippet = card_snippet((shipped / "sst2/README.md").read_text())
    assert 'path = "models/ship/sst2"' in snippet
    got = run_snippet(project, snippet, shipped / "sst2", eval_texts(project), tmp_path)
    assert got == evaluated_labels(project, variant)


def test_the_cards_head_tail_cut_is_the_pipelines(project, tmp_path):
    """At 8 tokens every text is cut: the card's lines keep the tokens `Tokenizer.encode` keeps."""
    from quantpipe.config.sections import LengthPolicy
    from quantpipe.inference import Tokenizer, predict
    from quantpipe.shipping import hub_snippet, read_serving

    shipped = ship_as_answer(project, "pytorch_fp32_ht128") / "sst2"
    served = read_serving(shipped)
    variant = served.variant.model_copy(update={"max_length": 8, "truncation": "head_tail"})
    snippet = hub_snippet(served.kind, variant, served.cfg, "models/ship/sst2")
    texts = eval_texts(project)
    runtime = served.kind.load(shipped, variant, served.cfg)
    expected = predict(runtime, Tokenizer(shipped), texts, 1, LengthPolicy(8, "head_tail")).labels
    assert run_snippet(project, snippet, shipped, texts, tmp_path) == [served.labels[i] for i in expected]


@pytest.mark.parametrize("variant", ENGINES)
def test_predict_reproduces_evaluate_and_imports_only_its_engine(project, variant, tmp_path):
    shipped = ship_as_answer(project, variant) / "sst2"
    (tmp_path / "texts.txt").write_text("\n".join(eval_texts(project)) + "\n")
    script = (
        "import runpy, sys; sys.argv = ['predict', *sys.argv[1:]]; runpy.run_module('quantpipe.predict', "
        "run_name='__main__'); print('torch' in sys.modules, file=sys.stderr)"
    )
    proc = run(project, sys.executable, "-c", script, str(shipped), str(tmp_path / "texts.txt"), "-o", "out.jsonl")
    rows = [json.loads(line) for line in (project / "out.jsonl").read_text().splitlines()]
    assert [row["label"] for row in rows] == evaluated_labels(project, variant)
    assert all(0.5 <= row["score"] <= 1.0 for row in rows)  # two labels: the predicted one's probability
    assert proc.stderr.strip().endswith("False" if ENGINES[variant] != "pytorch" else "True")


def test_predict_joins_a_records_text_fields_as_the_pipeline_did(project):
    """Amazon's JSON lines: title and content joined as the combine stage joined them (serving.json text_fields)."""
    shipped = ship_as_answer(project, "dynamic_int8") / "amazon"
    n = len(eval_texts(project, "amazon"))
    records = (REPO / "data/offline/amazon_reviews/validation.jsonl").read_text().splitlines()[:n]
    (project / "reviews.jsonl").write_text("\n".join(records) + "\n")
    proc = run(project, sys.executable, "-m", "quantpipe.predict", str(shipped), "reviews.jsonl")
    got = [json.loads(line)["label"] for line in proc.stdout.splitlines()]
    assert got == evaluated_labels(project, "dynamic_int8", "amazon")


def test_predict_honours_serving_json(project, tmp_path):
    """Streams and the length policy come from serving.json: edited there, they change what predict serves."""
    from quantpipe.config.sections import LengthPolicy
    from quantpipe.inference import Tokenizer, predict
    from quantpipe.shipping import read_serving

    shipped = ship_as_answer(project, "openvino_int8_streams2") / "sst2"
    served = read_serving(shipped)
    assert served.kind.load(shipped, served.variant, served.cfg).streams == 2
    settings = json.loads((shipped / "serving.json").read_text())
    settings |= {"max_length": 8, "truncation": "head", "streams": 1, "batch_size": 4}  # what a user edits
    (shipped / "serving.json").write_text(json.dumps(settings))
    served = read_serving(shipped)
    assert (served.variant.streams, served.cfg.batch_size) == (1, 4)
    runtime = served.kind.load(shipped, served.variant, served.cfg)
    assert getattr(runtime, "queue", None) is None  # one stream: no AsyncInferQueue
    texts = eval_texts(project)
    expected = predict(runtime, Tokenizer(shipped), texts, 4, LengthPolicy(8, "head")).labels
    (tmp_path / "t.txt").write_text("\n".join(texts))
    run(project, sys.executable, "-m", "quantpipe.predict", str(shipped), str(tmp_path / "t.txt"), "-o", "o.jsonl")
    got = [json.loads(line)["label"] for line in (project / "o.jsonl").read_text().splitlines()]
    assert got == [served.labels[i] for i in expected]


def test_the_card_shows_answer_json_figures(project):
    answer = json.loads((project / "metrics/answer.json").read_text())
    for dataset, row in answer.items():
        shipped = project / "models/ship" / dataset
        card = (shipped / "README.md").read_text()
        metadata = yaml.safe_load(card.split("---\n")[1])
        metrics = json.loads((project / f"metrics/eval/{row['ship']}/{dataset}.json").read_text())
        [result] = metadata["model-index"][0]["results"]
        assert {m["type"]: m["value"] for m in result["metrics"]} == {
            "accuracy": round(metrics["accuracy"], 4),
            "f1": round(metrics["f1"], 4),
        }
        assert metadata["model-index"][0]["name"] == row["ship"]
        assert f"{row['speed_ratio']:.2f}x [{row['speed_ratio_low']:.2f}, {row['speed_ratio_high']:.2f}]" in card
        assert f"{100 * row['accuracy_delta']:+.2f} pt" in card
        if "vs_reference" in row:
            assert f"{row['vs_reference']:.2f}x [{row['vs_reference_low']:.2f}, {row['vs_reference_high']:.2f}]" in card
        labels = pd.read_parquet(project / f"data/prepared/{dataset}/eval.parquet")["label"]
        assert f"| the majority class alone (no model) | {labels.value_counts(normalize=True).max():.4f} |" in card
        assert "CPU: **" in card and json.loads((shipped / "serving.json").read_text())["variant"] == row["ship"]


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("no_serving", [], "not a shipped model (no serving.json"),
        ("corrupt_serving", [], "serving.json: not valid JSON"),
        ("bad_kind", [], "serving.json: params.kind: not one of"),
        ("empty", [], "no texts to classify"),
        ("bad_json", [], "texts.jsonl:2: not valid JSON"),
        ("no_field", [], "texts.jsonl:1: no 'sentence' field"),
        ("not_object", [], "texts.jsonl:1: not a JSON object"),
        ("not_utf8", [], "texts.jsonl: not UTF-8 text"),
        ("blank_line", [], "texts.jsonl:2: an empty line"),
    ],
)
def test_predict_bad_input_is_one_line_and_writes_nothing(project, tmp_path, setup, args, message):
    shipped = project / "models/ship/sst2"
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"sentence": "a fine film"}\n{"sentence": "another"}\n')
    if setup == "no_serving":
        (shipped / "serving.json").unlink()
    elif setup == "corrupt_serving":
        (shipped / "serving.json").write_text('{"variant": ')
    elif setup == "bad_kind":
        settings = json.loads((shipped / "serving.json").read_text())
        settings["params"]["kind"] = "tensorflow"
        (shipped / "serving.json").write_text(json.dumps(settings))
    elif setup == "empty":
        texts.write_text("")
    elif setup == "bad_json":
        texts.write_text('{"sentence": "fine"}\n{"sentence": \n')
    elif setup == "not_object":
        texts.write_text('["fine"]\n')
    elif setup == "not_utf8":
        texts.write_bytes(b"\xff\xfe not text\n")
    elif setup == "blank_line":
        texts.write_text('{"sentence": "fine"}\n\n{"sentence": "also"}\n')
    elif setup == "no_field":
        texts.write_text('{"content": "fine"}\n')
    out = tmp_path / "out.jsonl"
    proc = run(
        project, sys.executable, "-m", "quantpipe.predict", str(shipped), str(texts), "-o", str(out), check=False
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ") and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.jsonl.tmp-*"))


def test_ship_refuses_an_answer_that_names_no_model(project):
    answer = json.loads((project / "metrics/answer.json").read_text())
    answer["sst2"]["ship"] = "nosuch"
    (project / "metrics/answer.json").write_text(json.dumps(answer))
    proc = run(project, sys.executable, "stages/ship.py", "--out", "models/ship_x", check=False)
    assert proc.returncode == 1 and "sst2.ship: 'nosuch' is not a model of this params.yaml" in proc.stderr
    assert not (project / "models/ship_x").exists()
