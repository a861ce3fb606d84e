"""Kind `torch_dynamic` through both of its APIs: each builds, saves, loads back (`weights_only=True`) and
predicts what the build-time model predicted, without the old API's deprecation warnings."""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest
from conftest import build_tiny_model

from quantpipe.config.registry import get_kind
from quantpipe.config.sections import EvaluateParams
from quantpipe.errors import QuantpipeError
from quantpipe.inference import Tokenizer, predict
from quantpipe.kinds.pytorch import TorchClassifier
from quantpipe.kinds.torch_dynamic import WEIGHTS_FILE, TorchDynamicParams, load_quantized, quantize

NO_TORCHAO = importlib.util.find_spec("torchao") is None  # not a dependency: pip install --no-deps torchao==0.18.0
APIS = [
    "ao_quantization",
    pytest.param("torchao", marks=pytest.mark.skipif(NO_TORCHAO, reason="torchao not installed")),
]


@pytest.fixture(scope="module")
def two_class(texts, tmp_path_factory):
    """The tiny BERT of conftest re-initialized with larger weights (at the default 0.02 every text gets the
    same logits to 1e-5, below int8's error), its head's bias at the median margin: labels of both classes
    that the int8 models mostly keep."""
    import torch
    from transformers import AutoConfig, BertForSequenceClassification

    out = build_tiny_model(tmp_path_factory.mktemp("torch_dynamic") / "base")
    config = AutoConfig.from_pretrained(out)
    config.initializer_range = 0.5
    torch.manual_seed(0)
    model = BertForSequenceClassification(config).eval()
    tokenizer = Tokenizer(out)
    batch = tokenizer.pad(tokenizer.encode(texts["text"].tolist(), 64))
    with torch.no_grad():
        logits = model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits
        margin = (logits[:, 1] - logits[:, 0]).median()
        model.classifier.bias.add_(torch.stack([margin / 2, -margin / 2]))
    model.save_pretrained(out)
    return out


def cfg() -> EvaluateParams:
    return EvaluateParams(datasets=["sst2"], threads=1)


def labels(model, model_dir, texts) -> np.ndarray:
    return predict(TorchClassifier(model_dir, 1, model=model), Tokenizer(model_dir), texts, 8, 64).labels


@pytest.mark.parametrize("api", APIS)
def test_builds_saves_loads_and_predicts_like_the_build_time_model(api, two_class, texts, tmp_path):
    from transformers import AutoModelForSequenceClassification

    sentences = texts["text"].tolist()
    variant = TorchDynamicParams(kind="torch_dynamic", api=api)
    kind = get_kind("torch_dynamic")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        built, resolved = quantize(AutoModelForSequenceClassification.from_pretrained(two_class).eval(), variant)
        at_build = labels(built, two_class, sentences)
        assert 0 < at_build.sum() < len(at_build)  # both classes: the comparisons mean something
        fp32 = labels(AutoModelForSequenceClassification.from_pretrained(two_class), two_class, sentences)
        assert (at_build == fp32).mean() >= 0.75, f"{api}: {(at_build == fp32).mean():.0%} of fp32's labels"

        class Inputs:  # all a build step reads here
            base = two_class

        out = tmp_path / api
        out.mkdir()
        assert kind.build("v", variant, Inputs, out) == resolved
        assert kind.size_bytes(out) > 0 and (out / WEIGHTS_FILE).is_file()
        loaded = kind.load(out, variant, cfg())
        reloaded = predict(loaded, Tokenizer(out), sentences, 8, 64).labels
    np.testing.assert_array_equal(reloaded, at_build)
    deprecations = [str(w.message).splitlines()[0] for w in caught if "deprecated" in str(w.message)]
    assert not deprecations, f"{api}: warnings the kind should silence: {deprecations}"
    if api == "torchao":
        assert set(resolved) == {"api", "reduce_range"}
        from torchao.quantization import Int8Tensor

        assert isinstance(loaded.model.bert.encoder.layer[0].output.dense.weight, Int8Tensor)
    else:
        assert set(resolved) == {"engine"}


@pytest.mark.skipif(NO_TORCHAO, reason="torchao not installed")
def test_a_state_dict_of_the_other_api_is_one_line(two_class, tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    model, _ = quantize(
        AutoModelForSequenceClassification.from_pretrained(two_class).eval(), TorchDynamicParams(kind="torch_dynamic")
    )
    out = tmp_path / "m"
    out.mkdir()
    torch.save(model.state_dict(), out / WEIGHTS_FILE)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (out / name).write_bytes((two_class / name).read_bytes())
    with pytest.raises(QuantpipeError, match="not a torch_dynamic torchao state dict"):
        load_quantized(out, TorchDynamicParams(kind="torch_dynamic", api="torchao"))


def test_torchao_missing_is_one_line(monkeypatch):
    import sys

    from quantpipe.kinds.torch_dynamic import import_torchao

    monkeypatch.setitem(sys.modules, "torchao", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "torchao.quantization", None)
    with pytest.raises(QuantpipeError, match=r"^variants\.v\.api: torchao needs the torchao package") as err:
        import_torchao("v")
    assert "\n" not in str(err.value) and "pip install --no-deps torchao==0.18.0" in str(err.value)
