"""Loading splits and combining title/content into one text."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import REPO

from quantpipe.config.sections import DatasetParams
from quantpipe.data import combine, join_fields, load_split
from quantpipe.errors import QuantpipeError

REVIEWS = DatasetParams(path="json", text_fields=["title", "content"], label_field="label")


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (["Great kettle", "Boils fast."], "Great kettle. Boils fast."),
        (["Great kettle!", "Boils fast."], "Great kettle! Boils fast."),
        (["Why?", "No idea."], "Why? No idea."),
        (["Ends with period.", "Body"], "Ends with period. Body"),
        (["", "Only content."], "Only content."),
        (["Only title", ""], "Only title"),
        ([None, "Content"], "Content"),
        (["  spaced title  ", "  body  "], "spaced title. body"),
        ([float("nan"), "x"], "x"),
        (["", ""], ""),
        (["single field"], "single field"),
    ],
)
def test_join_fields(parts, expected):
    assert join_fields(parts) == expected


def test_combine_builds_text_and_labels():
    frame = pd.DataFrame({"title": ["Bad", "Good!"], "content": ["Broke.", "Works."], "label": [0, 1]})
    out = combine(frame, REVIEWS, "amazon", num_labels=2)
    assert out.to_dict("list") == {"text": ["Bad. Broke.", "Good! Works."], "label": [0, 1]}


def test_label_map():
    spec = REVIEWS.model_copy(update={"label_map": {"neg": 0, "pos": 1}})
    frame = pd.DataFrame({"title": ["a", "b"], "content": ["c", "d"], "label": ["pos", "neg"]})
    assert combine(frame, spec, "x", 2)["label"].tolist() == [1, 0]
    frame.loc[0, "label"] = "neutral"
    with pytest.raises(QuantpipeError, match=r"label_map.*neutral"):
        combine(frame, spec, "x", 2)


def test_labels_out_of_range_need_a_map():
    frame = pd.DataFrame({"title": ["a"], "content": ["b"], "label": [2]})
    with pytest.raises(QuantpipeError, match=r"labels must be 0\.\.1"):
        combine(frame, REVIEWS, "amazon", 2)


def test_missing_column_names_the_column():
    frame = pd.DataFrame({"title": ["a"], "label": [1]})
    with pytest.raises(QuantpipeError, match=r"amazon.*\['content'\]"):
        combine(frame, REVIEWS, "amazon", 2)


def test_load_offline_split_with_slicing():
    spec = DatasetParams(
        path="csv",
        data_files={"validation": str(REPO / "data/offline/sst2/validation.tsv")},
        load_kwargs={"delimiter": "\t", "quoting": 3},
        text_fields=["sentence"],
    )
    frame = load_split("sst2", spec, "validation[:10]")
    assert len(frame) == 10 and list(frame.columns) == ["sentence", "label"]


def test_empty_split_is_an_error(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    spec = DatasetParams(path="json", data_files={"validation": str(empty)}, text_fields=["text"])
    with pytest.raises(QuantpipeError, match=r"empty\.jsonl: the file is empty"):
        load_split("tiny", spec, "validation")
    header_only = tmp_path / "header.tsv"
    header_only.write_text("sentence\tlabel\n")
    spec = DatasetParams(
        path="csv",
        data_files={"validation": str(header_only)},
        text_fields=["sentence"],
        load_kwargs={"delimiter": "\t"},
    )
    with pytest.raises(QuantpipeError, match=r"data\.datasets\.tiny: split 'validation' is empty"):
        load_split("tiny", spec, "validation")


def test_missing_data_file_names_the_param(tmp_path):
    spec = DatasetParams(path="json", data_files={"validation": str(tmp_path / "nope.jsonl")}, text_fields=["t"])
    with pytest.raises(QuantpipeError, match=r"data\.datasets\.tiny\.data_files\.validation: file not found"):
        load_split("tiny", spec, "validation")
