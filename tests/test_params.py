"""The params schema: the shipped params.yaml is valid, and each kind of mistake is one clear line."""

from __future__ import annotations

import copy

import pytest
import yaml

from conftest import REPO
from quantpipe.errors import QuantpipeError
from quantpipe.params import load_params

DEFAULT = yaml.safe_load((REPO / "params.yaml").read_text())


def write(tmp_path, data) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def error_for(tmp_path, mutate) -> str:
    data = copy.deepcopy(DEFAULT)
    mutate(data)
    with pytest.raises(QuantpipeError) as info:
        load_params(write(tmp_path, data))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_shipped_params_are_valid():
    params = load_params(REPO / "params.yaml")
    kinds = {v.kind for v in params.variants.values()}
    assert kinds == {"dynamic", "static"}
    assert set(params.evaluate.datasets) == {"sst2", "amazon"}


def test_unknown_preset(tmp_path):
    msg = error_for(tmp_path, lambda d: d["variants"]["dynamic_int8"].update(preset="avx9"))
    assert "variants.dynamic_int8.preset" in msg and "avx9" in msg and "avx512_vnni" in msg


def test_unknown_variant_kind(tmp_path):
    msg = error_for(tmp_path, lambda d: d["variants"]["dynamic_int8"].update(kind="weird"))
    assert "variants.dynamic_int8.kind" in msg and "weird" in msg


def test_static_variant_without_calibration(tmp_path):
    msg = error_for(tmp_path, lambda d: d["variants"]["static_int8"].pop("calibration"))
    assert "variants.static_int8" in msg and "calibration" in msg


def test_static_variant_with_unknown_calibration(tmp_path):
    msg = error_for(tmp_path, lambda d: d["variants"]["static_int8"].update(calibration="nope"))
    assert "variants.static_int8.calibration" in msg and "nope" in msg


def test_dynamic_variant_cannot_be_qdq(tmp_path):
    msg = error_for(tmp_path, lambda d: d["variants"]["dynamic_int8"].update(format="QDQ"))
    assert "variants.dynamic_int8" in msg and "QOperator" in msg


def test_typo_in_a_key_is_rejected(tmp_path):
    msg = error_for(tmp_path, lambda d: d["variants"]["dynamic_int8"].update(per_chanel=True))
    assert "variants.dynamic_int8.per_chanel" in msg


def test_evaluation_dataset_must_exist(tmp_path):
    msg = error_for(tmp_path, lambda d: d["evaluate"].update(datasets=["sst2", "imdb"]))
    assert "evaluate.datasets" in msg and "imdb" in msg


def test_train_dataset_needs_a_train_split(tmp_path):
    msg = error_for(tmp_path, lambda d: d["data"].update(train_dataset="amazon"))
    assert "train_dataset" in msg and "amazon" in msg


def test_missing_params_file_and_bad_yaml(tmp_path):
    with pytest.raises(QuantpipeError, match="not found"):
        load_params(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("variants: [unclosed\n")
    with pytest.raises(QuantpipeError, match="not valid YAML"):
        load_params(bad)
