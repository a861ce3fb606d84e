"""Seq2seq (`quantpipe.seq2seq`) on a tiny random T5 and a tiny BERT-to-BERT EncoderDecoderModel built in code,
with the packaged MiniLM's BERT tokenizer (no download): export with and without a decoder cache, PyTorch and
fp32 ONNX generate the same tokens, dynamic int8 of both parts or of the encoder only, ROUGE-L, bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SEQ2SEQ_TEXTS, build_tiny_t5, save_with_tokenizer

from quantpipe.errors import QuantpipeError
from quantpipe.seq2seq.export import DECODER_FILE, ENCODER_FILE, MERGED_FILE, WITH_PAST_FILE, export_seq2seq
from quantpipe.seq2seq.generation import call_latencies, generate_texts, new_token_counts
from quantpipe.seq2seq.graph import QUANTIZED_OPS, cross_attention_nodes, lm_head_nodes, op_counts
from quantpipe.seq2seq.quality import generation_quality, identical_fraction
from quantpipe.seq2seq.quantize import quantize_seq2seq
from quantpipe.seq2seq.runtime import greedy_config, load_ort_seq2seq, load_torch_seq2seq

START, EOS, PAD = 101, 102, 0  # BERT's [CLS], [SEP], [PAD]


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
    return export_seq2seq(bert2bert_dir, tmp_path_factory.mktemp("b2b_onnx") / "onnx", with_past=False)


@pytest.fixture(scope="module")
def t5_int8(t5_onnx, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("t5_int8") / "int8"
    return out, quantize_seq2seq(t5_onnx, out, "auto")


@pytest.fixture(scope="module")
def tokenizer(t5_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(t5_dir)


def onnx_files(model_dir: Path) -> list[str]:
    return sorted(p.name for p in model_dir.glob("*.onnx"))


def test_export_keeps_the_files_it_loads(t5_onnx, bert2bert_onnx):
    assert onnx_files(t5_onnx) == ["decoder_model_merged.onnx", "encoder_model.onnx"]
    assert onnx_files(bert2bert_onnx) == ["decoder_model.onnx", "encoder_model.onnx"]
    for out in (t5_onnx, bert2bert_onnx):
        assert {"config.json", "generation_config.json", "tokenizer.json"} <= {p.name for p in out.iterdir()}


@pytest.mark.parametrize("name", ["t5", "bert2bert"])
def test_onnx_generates_what_pytorch_generates(name, request, tokenizer):
    """Greedy, 8 new tokens: T5 with its cache (merged decoder) against PyTorch with cache; BERT-to-BERT
    without cache in ONNX against PyTorch with its own."""
    torch_model = load_torch_seq2seq(request.getfixturevalue(f"{name}_dir"), threads=1)
    onnx_model = load_ort_seq2seq(request.getfixturevalue(f"{name}_onnx"), threads=1)
    assert onnx_model.use_cache == (name == "t5")
    expected = generate_texts(torch_model, tokenizer, SEQ2SEQ_TEXTS, max_new_tokens=8, batch_size=2)
    got = generate_texts(onnx_model, tokenizer, SEQ2SEQ_TEXTS, max_new_tokens=8, batch_size=2)
    assert got == expected
    assert len(set(expected.texts)) > 1  # the outputs depend on the input: the comparison means something
    one_by_one = generate_texts(onnx_model, tokenizer, SEQ2SEQ_TEXTS, max_new_tokens=8, batch_size=1)
    assert one_by_one == expected  # batching (padding, length-sorted order) changes nothing


def test_int8_model_is_smaller_quantized_and_generates(t5_onnx, t5_int8, tokenizer):
    out, resolved = t5_int8
    assert onnx_files(out) == onnx_files(t5_onnx)  # standard names: loaded with no file-name argument
    assert (out / "generation_config.json").is_file() and not (out / "_quantized").exists()
    for file in onnx_files(out):
        assert (out / file).stat().st_size < 0.5 * (t5_onnx / file).stat().st_size
        assert resolved["quantized_ops"][file] > 0
    merged = op_counts(out / MERGED_FILE, QUANTIZED_OPS)
    branches = [key for key in merged if key != "main"]
    assert len(branches) == 2 and all(merged[key] > 0 for key in branches)  # both If branches quantized
    assert not any(op_counts(out / MERGED_FILE, ("MatMul",)).values())
    model = load_ort_seq2seq(out, threads=1)
    generated = generate_texts(model, tokenizer, SEQ2SEQ_TEXTS, max_new_tokens=6, batch_size=2, fixed_length=True)
    assert generated.new_tokens == [6] * len(SEQ2SEQ_TEXTS)
    seconds = call_latencies(model, tokenizer, SEQ2SEQ_TEXTS[:2], max_new_tokens=4)
    assert len(seconds) == 2 and all(s > 0 for s in seconds)


def test_o3_export_fuses_then_quantizes(t5_dir, tmp_path, tokenizer):
    """The reference's workflow: export with ONNX Runtime's O3 optimizations (T5's RMS norms fused into one op each), then dynamic
    int8 of the optimized files; both generate."""
    onnx = export_seq2seq(t5_dir, tmp_path / "o3", with_past=True, optimization="O3")
    assert onnx_files(onnx) == [DECODER_FILE, WITH_PAST_FILE, ENCODER_FILE]  # not merged (see export_seq2seq)
    fused = op_counts(onnx / ENCODER_FILE, ("SimplifiedLayerNormalization",))["main"]
    assert fused > 0 and not op_counts(onnx / ENCODER_FILE, ("Pow",))["main"]  # RMS norm: Pow, Mean, Sqrt unfused
    quantize_seq2seq(onnx, tmp_path / "int8", "arm64")
    for model_dir in (onnx, tmp_path / "int8"):
        model = load_ort_seq2seq(model_dir, threads=1)
        generated = generate_texts(
            model, tokenizer, SEQ2SEQ_TEXTS[:2], max_new_tokens=4, batch_size=2, fixed_length=True
        )
        assert generated.new_tokens == [4, 4]


def test_int8_encoder_with_fp32_decoder(t5_onnx, tmp_path, tokenizer):
    resolved = quantize_seq2seq(t5_onnx, tmp_path, "avx512", parts=["encoder"])
    assert resolved["preset"] == "avx512"
    assert resolved["quantized_ops"][ENCODER_FILE] > 0 and resolved["quantized_ops"][MERGED_FILE] == 0
    assert (tmp_path / MERGED_FILE).read_bytes() == (t5_onnx / MERGED_FILE).read_bytes()
    generated = generate_texts(
        load_ort_seq2seq(tmp_path, threads=1), tokenizer, SEQ2SEQ_TEXTS[:2], 4, 2, fixed_length=True
    )
    assert generated.new_tokens == [4, 4]


def test_nodes_left_in_fp32(t5_onnx, bert2bert_onnx, tmp_path):
    """The LM head and the cross-attention found in the graphs, and left in fp32 in both If branches."""
    assert lm_head_nodes(t5_onnx / MERGED_FILE) == ["/lm_head/MatMul"]
    assert lm_head_nodes(bert2bert_onnx / "decoder_model.onnx") == ["/decoder/cls/predictions/decoder/MatMul"]
    cross = cross_attention_nodes(t5_onnx / MERGED_FILE)
    assert cross and all("EncDecAttention" in node for node in cross)
    assert all("crossattention" in node for node in cross_attention_nodes(bert2bert_onnx / "decoder_model.onnx"))
    excluded = ["/lm_head/MatMul", *cross]
    quantize_seq2seq(t5_onnx, tmp_path, "avx512_vnni", per_channel=True, nodes_to_exclude=excluded)
    fp32 = op_counts(tmp_path / MERGED_FILE, ("MatMul",))
    in_branches = len([n for n in cross if "/k/" not in n and "/v/" not in n])  # k, v: first step only
    assert sorted(fp32.values()) == [0, 1 + in_branches, 1 + len(cross)]
    with pytest.raises(
        QuantpipeError, match=r"^seq2seq.variants.<name>.nodes_to_exclude: \['/lm_head/MatMull'\] not in"
    ):
        quantize_seq2seq(t5_onnx, tmp_path / "x", "auto", nodes_to_exclude=["/lm_head/MatMull"])


def test_new_token_counts_stop_at_the_first_end_token():
    sequences = np.array([[0, 5, EOS, PAD, PAD], [0, 5, 6, 7, 8], [0, EOS, PAD, PAD, PAD]])
    assert new_token_counts(sequences, EOS) == [2, 4, 1]
    assert new_token_counts(sequences, [EOS, 7]) == [2, 3, 1]


def test_rouge_and_identical_outputs():
    same = generation_quality(SEQ2SEQ_TEXTS, SEQ2SEQ_TEXTS, n_resamples=200, seed=0, reference_outputs=SEQ2SEQ_TEXTS)
    assert same["rouge_l"] == 1.0 and same["rouge_l_ci"] == [1.0, 1.0] and same["identical_to_reference"] == 1.0
    outputs = ["the film was bad", "a bad movie", "it works", "broke", "i love this book"]
    q = generation_quality(outputs, SEQ2SEQ_TEXTS, n_resamples=500, seed=0)
    assert 0 < q["rouge_l"] < 1 and q["rouge_l_ci"][0] <= q["rouge_l"] <= q["rouge_l_ci"][1]
    assert q["rouge_l_ci"][0] < q["rouge_l_ci"][1] and q["samples"] == 5
    assert q == generation_quality(outputs, SEQ2SEQ_TEXTS, n_resamples=500, seed=0)  # seeded
    assert q["rouge_l_shuffled"] < q["rouge_l"]  # these outputs match their own references best
    assert identical_fraction(outputs, SEQ2SEQ_TEXTS) == 0.4
    paired = generation_quality(outputs, SEQ2SEQ_TEXTS, n_resamples=500, seed=0, reference_outputs=SEQ2SEQ_TEXTS)
    assert paired["rouge_l_delta"] == pytest.approx(q["rouge_l"] - 1.0)  # the reference model's outputs score 1
    low, high = paired["rouge_l_delta_ci"]
    assert low <= paired["rouge_l_delta"] <= high <= 0 and same["rouge_l_delta_ci"] == [0.0, 0.0]


def test_bad_inputs_are_one_line(tiny_model, bert2bert_dir, t5_onnx, tmp_path):
    cases = [
        (lambda: export_seq2seq(tiny_model, tmp_path / "a", with_past=True), r"not a seq2seq model \(bert, Bert"),
        (lambda: export_seq2seq(bert2bert_dir, tmp_path / "b", True), "no key/value cache in ONNX; export it with"),
        (lambda: export_seq2seq(tmp_path, tmp_path / "c", with_past=False), "cannot load the model config: "),
        (
            lambda: export_seq2seq(bert2bert_dir, tmp_path / "f", False, optimization="O3"),
            r"^seq2seq.optimization: ONNX Runtime cannot optimize encoder-decoder models \(O3\); set none$",
        ),
        (lambda: load_torch_seq2seq(tiny_model, threads=1), "not a seq2seq model"),
        (lambda: load_ort_seq2seq(tiny_model, threads=1), "encoder_model.onnx, decoder_model.onnx not found"),
        (lambda: quantize_seq2seq(t5_onnx, tmp_path / "d", "avx3"), "preset: unknown preset 'avx3'"),
        (lambda: quantize_seq2seq(t5_onnx, tmp_path / "e", "auto", parts=["lm_head"]), r"parts: \['lm_head'\]"),
        (lambda: generation_quality(["a"], ["a", "b"], 10, 0), "1 outputs against 2 references"),
    ]
    for call, message in cases:
        with pytest.raises(QuantpipeError, match=message) as error:
            call()
        assert "\n" not in str(error.value)
    model = load_ort_seq2seq(t5_onnx, threads=1)
    with pytest.raises(QuantpipeError, match=r"^max_new_tokens: must be at least 1 \(got 0\)$"):
        greedy_config(model, 0)
    assert not any((tmp_path / name).exists() for name in "abf")
