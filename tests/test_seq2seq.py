"""Seq2seq (`quantpipe.seq2seq`) on a tiny random T5 and a tiny BERT-to-BERT EncoderDecoderModel built in code,
with the packaged MiniLM's BERT tokenizer (no download): export with the decoder's cache for both (and without),
the lean numpy loop over ONNX Runtime generates PyTorch's tokens, dynamic int8 of both parts or of the encoder
only, the nodes left in fp32, chrF and ROUGE-L, bad inputs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SEQ2SEQ_TEXTS, build_tiny_t5, save_with_tokenizer

from quantpipe.config.registry import get_kind
from quantpipe.config.seq2seq import GenerateServing
from quantpipe.errors import QuantpipeError
from quantpipe.kinds.dynamic import DynamicGenerateParams
from quantpipe.kinds.openvino import OpenVinoGenerateParams
from quantpipe.kinds.pytorch import PytorchGenerateParams
from quantpipe.seq2seq.export import DECODER_FILE, ENCODER_FILE, WITH_PAST_FILE, export_seq2seq
from quantpipe.seq2seq.generation import call_latencies, generate_texts, new_token_counts
from quantpipe.seq2seq.graph import cross_attention_nodes, lm_head_nodes, node_names, op_counts
from quantpipe.seq2seq.lean import LeanSeq2seq, ort_sessions
from quantpipe.seq2seq.quality import chrf, generation_quality, identical_fraction
from quantpipe.seq2seq.quantize import quantize_seq2seq
from quantpipe.seq2seq.runtime import TorchSeq2seq

START, EOS, PAD = 101, 102, 0  # BERT's [CLS], [SEP], [PAD]


def build(variant, base_dir: Path, onnx_dir: Path, out_dir: Path) -> dict:
    """The variant built by its kind, as the seq2seq_quantize stage builds it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return get_kind(variant.kind).build_generate("v", variant, base_dir, onnx_dir, out_dir)


def load(variant, model_dir: Path, threads: int = 1, max_length: int | None = 32):
    """The variant served by its kind, as the seq2seq_evaluate and seq2seq_compare stages serve it."""
    return get_kind(variant.kind).load_generate(model_dir, variant, GenerateServing(threads, max_length))


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory) -> Path:
    return build_tiny_t5(tmp_path_factory.mktemp("t5") / "model")


@pytest.fixture(scope="module")
def bert2bert_dir(tmp_path_factory) -> Path:
    """Two 2-layer BERTs with hidden size 32, the decoder with cross-attention; start [CLS], end [SEP]."""
    import torch
    from transformers import BertConfig, EncoderDecoderConfig, EncoderDecoderModel, GenerationConfig

    dims = {
        "vocab_size": 30522,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 128,
        "initializer_range": 0.2,
    }
    config = EncoderDecoderConfig.from_encoder_decoder_configs(
        BertConfig(**dims), BertConfig(**dims, is_decoder=True, add_cross_attention=True)
    )
    tokens = {"decoder_start_token_id": START, "bos_token_id": START, "eos_token_id": EOS, "pad_token_id": PAD}
    for key, value in tokens.items():
        setattr(config, key, value)
    torch.manual_seed(0)
    model = EncoderDecoderModel(config=config).eval()
    model.generation_config = GenerationConfig(**tokens)
    return save_with_tokenizer(model, tmp_path_factory.mktemp("bert2bert") / "model")


@pytest.fixture(scope="module")
def t5_onnx(t5_dir, tmp_path_factory) -> Path:
    return export_seq2seq(t5_dir, tmp_path_factory.mktemp("t5_onnx") / "onnx", with_past=True)


@pytest.fixture(scope="module")
def bert2bert_onnx(bert2bert_dir, tmp_path_factory) -> Path:
    """Exported with its decoder's cache by quantpipe.seq2seq.bert_decoder (Optimum's exporter has none for BERT)."""
    return export_seq2seq(bert2bert_dir, tmp_path_factory.mktemp("b2b_onnx") / "onnx", with_past=True)


@pytest.fixture(scope="module")
def bert2bert_no_cache(bert2bert_dir, tmp_path_factory) -> Path:
    return export_seq2seq(bert2bert_dir, tmp_path_factory.mktemp("b2b_no_cache") / "onnx", with_past=False)


@pytest.fixture(scope="module")
def t5_int8(t5_onnx, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("t5_int8") / "int8"
    return out, quantize_seq2seq(t5_onnx, out, "auto")


def onnx_files(model_dir: Path) -> list[str]:
    return sorted(p.name for p in model_dir.glob("*.onnx"))


def lean(model_dir: Path) -> LeanSeq2seq:
    return LeanSeq2seq(model_dir, ort_sessions(model_dir, threads=1))


PAIR = [DECODER_FILE, WITH_PAST_FILE, ENCODER_FILE]  # sorted: the first step's decoder, the cached one, the encoder


def test_export_writes_the_decoder_with_its_cache(t5_onnx, bert2bert_onnx, bert2bert_no_cache):
    assert onnx_files(t5_onnx) == onnx_files(bert2bert_onnx) == PAIR
    assert onnx_files(bert2bert_no_cache) == [DECODER_FILE, ENCODER_FILE]
    for out in (t5_onnx, bert2bert_onnx, bert2bert_no_cache):
        assert {"config.json", "generation_config.json", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    step = {"t5": lean(t5_onnx).replicas[0].inputs, "bert2bert": lean(bert2bert_onnx).replicas[0].inputs}
    for inputs in step.values():  # Optimum's names for both: one generation loop serves them
        assert {"input_ids", "encoder_attention_mask", "past_key_values.0.decoder.key"} <= set(inputs["with_past"])
        assert "past_key_values.1.encoder.value" in inputs["with_past"]
        assert "encoder_hidden_states" in inputs["decoder"]


@pytest.mark.parametrize("name", ["t5_onnx", "bert2bert_onnx", "bert2bert_no_cache"])
@pytest.mark.parametrize("fixed_length", [False, True])
def test_lean_loop_generates_what_pytorch_generates(name, fixed_length, request):
    """Greedy, 8 new tokens, token for token: the numpy loop over ONNX Runtime sessions (with the cache, or the
    prefix recomputed) against transformers' generate with its cache; batched and one text at a time."""
    source = request.getfixturevalue(name.replace("_onnx", "_dir").replace("_no_cache", "_dir"))
    torch_model, onnx_model = TorchSeq2seq(source, threads=1), lean(request.getfixturevalue(name))
    expected_texts, expected = torch_model.generate(SEQ2SEQ_TEXTS, 8, fixed_length)
    texts, sequences = onnx_model.generate(SEQ2SEQ_TEXTS, 8, fixed_length)
    np.testing.assert_array_equal(sequences, expected)
    assert texts == expected_texts and len(set(texts)) > 1  # the outputs depend on the input
    batched = generate_texts(onnx_model, SEQ2SEQ_TEXTS, 8, batch_size=2, fixed_length=fixed_length)
    assert batched == generate_texts(onnx_model, SEQ2SEQ_TEXTS, 8, batch_size=1, fixed_length=fixed_length)
    assert batched == generate_texts(torch_model, SEQ2SEQ_TEXTS, 8, batch_size=2, fixed_length=fixed_length)


def test_int8_model_is_smaller_quantized_and_generates(t5_onnx, t5_int8):
    out, resolved = t5_int8
    assert onnx_files(out) == onnx_files(t5_onnx)  # standard names: loaded with no file-name argument
    assert (out / "generation_config.json").is_file() and not (out / "_quantized").exists()
    for file in onnx_files(out):
        assert (out / file).stat().st_size < 0.5 * (t5_onnx / file).stat().st_size
        assert resolved["quantized_ops"][file] > 0
        assert not any(op_counts(out / file, ("MatMul",)).values())
    model = lean(out)
    generated = generate_texts(model, SEQ2SEQ_TEXTS, max_new_tokens=6, batch_size=2, fixed_length=True)
    assert generated.new_tokens == [6] * len(SEQ2SEQ_TEXTS)
    seconds = call_latencies(model, SEQ2SEQ_TEXTS[:2], max_new_tokens=4)
    assert len(seconds) == 2 and all(s > 0 for s in seconds)


def test_o3_export_fuses_then_quantizes(t5_dir, tmp_path):
    """The reference's workflow: export with ONNX Runtime's O3 optimizations (T5's RMS norms fused into one op
    each), then dynamic int8 of the optimized files; both generate."""
    onnx = export_seq2seq(t5_dir, tmp_path / "o3", with_past=True, optimization="O3")
    assert onnx_files(onnx) == PAIR
    fused = op_counts(onnx / ENCODER_FILE, ("SimplifiedLayerNormalization",))["main"]
    assert fused > 0 and not op_counts(onnx / ENCODER_FILE, ("Pow",))["main"]  # RMS norm: Pow, Mean, Sqrt unfused
    quantize_seq2seq(onnx, tmp_path / "int8", "arm64")
    for model_dir in (onnx, tmp_path / "int8"):
        generated = generate_texts(
            lean(model_dir), SEQ2SEQ_TEXTS[:2], max_new_tokens=4, batch_size=2, fixed_length=True
        )
        assert generated.new_tokens == [4, 4]


def test_int8_encoder_with_fp32_decoder(t5_onnx, tmp_path):
    resolved = quantize_seq2seq(t5_onnx, tmp_path, "avx512", parts=["encoder"])
    assert resolved["preset"] == "avx512"
    assert resolved["quantized_ops"][ENCODER_FILE] > 0
    for file in (DECODER_FILE, WITH_PAST_FILE):
        assert resolved["quantized_ops"][file] == 0 and (tmp_path / file).read_bytes() == (t5_onnx / file).read_bytes()
    assert generate_texts(lean(tmp_path), SEQ2SEQ_TEXTS[:2], 4, 2, fixed_length=True).new_tokens == [4, 4]


@pytest.mark.parametrize("name", ["t5_onnx", "bert2bert_onnx"])
def test_nodes_left_in_fp32(name, request, tmp_path):
    """The LM head and the cross-attention found in both decoders, and left in fp32 there, nothing else."""
    onnx = request.getfixturevalue(name)
    head = {"t5_onnx": "/lm_head/MatMul", "bert2bert_onnx": "/cls/predictions/decoder/MatMul"}[name]
    scope = {"t5_onnx": "EncDecAttention", "bert2bert_onnx": "crossattention"}[name]
    excluded, found = set(), {}
    for file in (DECODER_FILE, WITH_PAST_FILE):
        assert lm_head_nodes(onnx / file) == [head]
        found[file] = cross = cross_attention_nodes(onnx / file)
        assert cross and all(scope in node for node in cross)
        excluded |= {head, *cross}
    # the first step also projects the encoder's states to each layer's cross-attention keys and values
    assert len(found[DECODER_FILE]) - len(found[WITH_PAST_FILE]) == 2 * 2  # 2 decoder layers
    quantize_seq2seq(onnx, tmp_path, "avx512_vnni", per_channel=True, nodes_to_exclude=sorted(excluded))
    for file in (DECODER_FILE, WITH_PAST_FILE):
        in_file = excluded & node_names(onnx / file)
        assert op_counts(tmp_path / file, ("MatMul",))["main"] == len(in_file)
    with pytest.raises(QuantpipeError, match=r"^seq2seq.variants.<name>.nodes_to_exclude: \[.*MatMull'\] not in"):
        quantize_seq2seq(onnx, tmp_path / "x", "auto", nodes_to_exclude=[head + "l"])


def test_new_token_counts_stop_at_the_first_end_token():
    sequences = np.array([[0, 5, EOS, PAD, PAD], [0, 5, 6, 7, 8], [0, EOS, PAD, PAD, PAD]])
    assert new_token_counts(sequences, EOS) == [2, 4, 1]
    assert new_token_counts(sequences, [EOS, 7]) == [2, 3, 1]


@pytest.mark.parametrize("metric", ["chrf", "rouge_l"])
def test_quality_and_identical_outputs(metric):
    same = generation_quality(SEQ2SEQ_TEXTS, SEQ2SEQ_TEXTS, metric, 200, 0, reference_outputs=SEQ2SEQ_TEXTS)
    assert same["score"] == 100.0 and same["score_ci"] == [100.0, 100.0] and same["identical_to_reference"] == 1.0
    outputs = ["the film was bad", "a bad movie", "it works", "broke", "i love this book"]
    q = generation_quality(outputs, SEQ2SEQ_TEXTS, metric, n_resamples=500, seed=0)
    assert q["metric"] == metric and 0 < q["score"] < 100
    assert q["score_ci"][0] < q["score"] < q["score_ci"][1] and q["samples"] == 5
    assert q == generation_quality(outputs, SEQ2SEQ_TEXTS, metric, n_resamples=500, seed=0)  # seeded
    assert q["score_shuffled"] < q["score"]  # these outputs match their own references best
    assert identical_fraction(outputs, SEQ2SEQ_TEXTS) == 0.4
    paired = generation_quality(outputs, SEQ2SEQ_TEXTS, metric, 500, 0, reference_outputs=SEQ2SEQ_TEXTS)
    assert paired["delta"] == pytest.approx(q["score"] - 100.0)  # the reference model's outputs score 100
    low, high = paired["delta_ci"]
    assert low <= paired["delta"] <= high <= 0 and same["delta_ci"] == [0.0, 0.0]


def test_chrf_ignores_spaces_but_not_punctuation():
    """Punctuation restoration is scored on characters: a space more or less costs nothing, a comma does."""
    assert chrf(["well - made , i think"], ["well-made, i think"])[0] == 100.0
    assert chrf(["well made i think"], ["well-made, i think"])[0] < 100.0


def test_bad_inputs_are_one_line(tiny_model, t5_dir, t5_onnx, tmp_path):
    from transformers import BertConfig, EncoderDecoderConfig, RobertaConfig

    roberta = tmp_path / "roberta2roberta"  # a decoder no exporter gives a cache: only its config is read
    EncoderDecoderConfig.from_encoder_decoder_configs(
        BertConfig(), RobertaConfig(is_decoder=True, add_cross_attention=True)
    ).save_pretrained(roberta)
    no_config = tmp_path / "no_config"
    no_config.mkdir()
    for folder in (roberta, no_config):  # a base's tokenizer is checked first: these fail further on
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy2(tiny_model / name, folder / name)
    (tmp_path / "empty").mkdir()
    cases = [
        (lambda: export_seq2seq(tiny_model, tmp_path / "a", with_past=True), r"not a seq2seq model \(bert, Bert"),
        (lambda: export_seq2seq(roberta, tmp_path / "b", True), "decoder \\(roberta\\) has no key/value cache in ONNX"),
        (lambda: export_seq2seq(no_config, tmp_path / "c", with_past=False), "cannot load the model config: "),
        (
            lambda: export_seq2seq(roberta, tmp_path / "f", False, optimization="O3"),
            r"^seq2seq.optimization: ONNX Runtime cannot optimize encoder-decoder models \(O3\); set none$",
        ),
        (lambda: TorchSeq2seq(tiny_model, threads=1), "not a seq2seq model"),
        (lambda: ort_sessions(tmp_path / "empty", threads=1), "encoder_model.onnx, decoder_model.onnx not found"),
        (lambda: quantize_seq2seq(t5_onnx, tmp_path / "d", "avx3"), "preset: unknown preset 'avx3'"),
        (lambda: quantize_seq2seq(t5_onnx, tmp_path / "e", "auto", parts=["lm_head"]), r"parts: \['lm_head'\]"),
        (lambda: generation_quality(["a"], ["a", "b"], "chrf", 10, 0), "1 outputs against 2 references"),
        (lambda: lean(t5_onnx).generate(["a"], 0), r"^max_new_tokens: must be at least 1 \(got 0\)$"),
        (
            lambda: TorchSeq2seq(t5_dir, threads=1).generate(["a"], 0),
            r"^max_new_tokens: must be at least 1 \(got 0\)$",
        ),
    ]
    for call, message in cases:
        with pytest.raises(QuantpipeError, match=message) as error:
            call()
        assert "\n" not in str(error.value)
    assert not any((tmp_path / name).exists() for name in "abf")


@pytest.mark.parametrize(
    "variant",
    [
        OpenVinoGenerateParams(kind="openvino", precision="f32"),
        OpenVinoGenerateParams(kind="openvino", weights="int8", parts=["decoder"]),
        OpenVinoGenerateParams(kind="openvino"),
        DynamicGenerateParams(quantize_embeddings=True),
        PytorchGenerateParams(kind="pytorch", autocast="bf16"),
    ],
    ids=["openvino_f32", "openvino_int8_decoder", "openvino_default", "dynamic_embeddings", "pytorch_bf16"],
)
@pytest.mark.parametrize("model", ["t5", "bert2bert"])
def test_every_generation_kind_builds_and_generates(variant, model, request, tmp_path):
    """Each kind that serves generation builds a model that it then serves, generating exactly the tokens
    asked; OpenVINO in f32 decodes what PyTorch decodes."""
    source, onnx = request.getfixturevalue(f"{model}_dir"), request.getfixturevalue(f"{model}_onnx")
    assert "generate" in get_kind(variant.kind).tasks
    built = build(variant, source, onnx, tmp_path)
    served = load(variant, tmp_path)
    generated = generate_texts(served, SEQ2SEQ_TEXTS, 6, batch_size=2, fixed_length=True)
    assert generated.new_tokens == [6] * len(SEQ2SEQ_TEXTS)
    if variant.kind == "openvino":
        compressed = {"int8": [DECODER_FILE, WITH_PAST_FILE], "fp32": []}[variant.weights]
        assert built["resolved"]["compressed"] == compressed
        if variant.weights == "int8":
            assert (tmp_path / "decoder_model.bin").stat().st_size < 0.5 * (onnx / DECODER_FILE).stat().st_size
    if variant.kind == "openvino" and variant.precision == "f32":
        expected = generate_texts(TorchSeq2seq(source, threads=1), SEQ2SEQ_TEXTS, 6, batch_size=2)
        assert generate_texts(served, SEQ2SEQ_TEXTS, 6, batch_size=2) == expected
    if variant.kind == "dynamic":
        gathers = op_counts(tmp_path / ENCODER_FILE, ("Gather",))["main"]
        assert gathers and built["resolved"]["quantized_ops"][ENCODER_FILE] > 0
        assert (tmp_path / ENCODER_FILE).stat().st_size < 0.3 * (onnx / ENCODER_FILE).stat().st_size
    if variant.kind == "pytorch":
        assert served.autocast == "bf16"


def test_a_variants_threads_are_what_serves_it(t5_dir, t5_onnx, tmp_path, monkeypatch):
    """`threads` of a variant wins over `seq2seq.evaluate.threads`; a variant without it is served on the
    evaluate's threads. PyTorch sets its (process-wide) count at each call."""
    from quantpipe.seq2seq import lean

    asked = []
    real = lean.ort_sessions
    monkeypatch.setattr(
        lean, "ort_sessions", lambda model_dir, threads: asked.append(threads) or real(model_dir, threads)
    )
    for threads, out in ((1, tmp_path / "one"), (None, tmp_path / "default")):
        variant = DynamicGenerateParams(threads=threads)
        build(variant, t5_dir, t5_onnx, out)
        load(variant, out, threads=2)
    assert asked == [1, 2]
    out, variant = tmp_path / "torch", PytorchGenerateParams(kind="pytorch", threads=1)
    build(variant, t5_dir, t5_onnx, out)
    served = load(variant, out, threads=2)
    import torch

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        served.generate(SEQ2SEQ_TEXTS[:1], 2)
        assert served.threads == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_streams_split_the_threads_and_keep_each_batch_with_its_outputs(t5_dir, t5_onnx, tmp_path, monkeypatch):
    """Two streams of a 2-thread variant: two sets of ONNX Runtime sessions of one thread each; `generate_batches`
    runs on two threads at once and returns each batch's outputs in the batches' order."""
    import threading

    from quantpipe.seq2seq import lean

    asked = []
    real = lean.ort_sessions
    monkeypatch.setattr(
        lean, "ort_sessions", lambda model_dir, threads: asked.append(threads) or real(model_dir, threads)
    )
    variant = DynamicGenerateParams(streams=2)
    build(variant, t5_dir, t5_onnx, tmp_path)
    served = load(variant, tmp_path, threads=2)
    assert asked == [1, 1] and served.streams == 2
    barrier, seen = threading.Barrier(2, timeout=30), []

    def generate(sessions, texts, max_new_tokens, fixed_length):
        if not seen:  # each stream's first batch waits for the other's: both must be running at once
            barrier.wait()
        seen.append(sessions)
        return texts, threading.current_thread().name

    monkeypatch.setattr(served, "_generate", generate)
    batches = [[f"text {i}"] for i in range(5)]
    results = served.generate_batches(batches, 4)
    assert [texts for texts, _ in results] == batches
    assert len({thread for _, thread in results}) == 2
    assert {id(sessions) for sessions in seen} == {id(replica) for replica in served.replicas}


@pytest.mark.parametrize(
    "variant",
    [DynamicGenerateParams(streams=2), OpenVinoGenerateParams(kind="openvino", precision="f32", streams=2)],
    ids=["dynamic", "openvino_f32"],
)
def test_streams_generate_concurrently_what_one_stream_generates(variant, t5_dir, t5_onnx, tmp_path):
    """With `streams` 2 the batched pass runs two batches at a time, on the threads split between them; the
    outputs are those of the same model on one stream."""
    build(variant, t5_dir, t5_onnx, tmp_path)
    served = load(variant, tmp_path, threads=2)
    assert served.streams == 2 and served.replicas[0] is not served.replicas[1]
    together = generate_texts(served, SEQ2SEQ_TEXTS * 2, 6, batch_size=1)
    one = load(variant.model_copy(update={"streams": 1}), tmp_path, threads=2)
    assert one.streams == 1
    assert generate_texts(one, SEQ2SEQ_TEXTS * 2, 6, batch_size=1) == together


@pytest.mark.parametrize("fixed_length", [False, True])
def test_keeping_the_source_words_every_engine_decodes_the_same_tokens_and_keeps_every_word(
    bert2bert_dir, bert2bert_onnx, fixed_length
):
    """Each step restricted to the source's next token, a mark or (the source used up) the end token: the random
    model's outputs are the sources' words with marks between them, token for token the same in the lean loop and
    in transformers' generate."""
    from quantpipe.seq2seq.quality import marked_words

    torch_model = TorchSeq2seq(bert2bert_dir, threads=1, keep_source_words=True)
    onnx_model = LeanSeq2seq(bert2bert_onnx, ort_sessions(bert2bert_onnx, threads=1), keep_source_words=True)
    expected_texts, expected = torch_model.generate(SEQ2SEQ_TEXTS, 48, fixed_length)
    texts, sequences = onnx_model.generate(SEQ2SEQ_TEXTS, 48, fixed_length)
    np.testing.assert_array_equal(sequences, expected)
    assert texts == expected_texts
    free_texts, _ = TorchSeq2seq(bert2bert_dir, threads=1).generate(SEQ2SEQ_TEXTS, 48, fixed_length)
    assert not any(marked_words(out)[0] == marked_words(src)[0] for out, src in zip(free_texts, SEQ2SEQ_TEXTS))
    for output, source in zip(texts, SEQ2SEQ_TEXTS):
        assert marked_words(output)[0] == marked_words(source)[0], output
    assert any(output != source for output, source in zip(texts, SEQ2SEQ_TEXTS))  # marks were placed
