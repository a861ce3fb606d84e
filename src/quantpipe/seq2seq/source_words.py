"""Decoding that keeps the source's words (`seq2seq.evaluate.keep_source_words`, for punctuation restoration): at
each greedy step a row may take its source's next token, a punctuation mark (at most `MAX_RUN` in a row), or, once
its source is used up, its end token; the output text is the source's own, with the marks placed where the tokens
put them. The words are the source's by construction, and the model decides where the marks go. One rule for
every engine, on the token ids in numpy: the lean loop (`quantpipe.seq2seq.lean`) applies `allowed` at each step,
transformers' `generate` (`quantpipe.seq2seq.runtime`) through `SourceWordsProcessor`."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

MARK = re.compile(r"[^\w\s']+")  # a token that is punctuation alone: what `pairs: punctuation` removes
MAX_RUN = 3  # marks in a row at most ("...", "?!?"): a longer run is a loop of the decoder, not punctuation


class SourceWords:
    """The rule for one tokenizer: its mark tokens (every token made of punctuation alone, the apostrophe excepted:
    the sources keep it), the tokens that are not the source's text (`special`: start, end, padding and the like),
    the end tokens, and `encode(texts)`: each text's token ids and their character spans (no special tokens).
    A source's own marks, if it has any, are not among the tokens to copy: placing marks is the model's part."""

    def __init__(
        self,
        vocab: dict[str, int],
        special: set[int],
        eos: list[int],
        encode: Callable[[list[str]], list[tuple[list[int], list[tuple[int, int]]]]],
    ):
        self.mark_text = {
            i: token.removeprefix("##").removeprefix("\u2581")
            for token, i in vocab.items()
            if MARK.fullmatch(token) and i not in special
        }
        self.marks = np.array(sorted(self.mark_text), dtype=np.int64)
        self.special, self.special_ids = np.array(sorted(special), dtype=np.int64), set(special)
        self.eos = np.array(eos, dtype=np.int64)
        self.encode = encode

    @classmethod
    def of_transformers(cls, tokenizer, eos: list[int]) -> SourceWords:
        """The rule for a transformers (fast) tokenizer."""

        def encode(texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
            batch = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
            return list(zip(batch["input_ids"], batch["offset_mapping"]))

        return cls(tokenizer.get_vocab(), set(tokenizer.all_special_ids), eos, encode)

    @classmethod
    def of_tokenizers(cls, tokenizer, eos: list[int]) -> SourceWords:
        """The rule for a `tokenizers.Tokenizer` (the lean loop's): its special tokens are its added ones marked
        special."""

        def encode(texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
            return [(e.ids, e.offsets) for e in tokenizer.encode_batch(texts, add_special_tokens=False)]

        special = {i for i, token in tokenizer.get_added_tokens_decoder().items() if token.special}
        return cls(tokenizer.get_vocab(with_added_tokens=True), special, eos, encode)

    def sources(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> list[np.ndarray]:
        """Each row's source tokens to copy: its encoder input ids without padding, special tokens and marks."""
        keep = attention_mask.astype(bool) & ~np.isin(input_ids, self.special) & ~np.isin(input_ids, self.marks)
        return [row[mask] for row, mask in zip(input_ids, keep)]

    def allowed(self, sources: list[np.ndarray], sequences: np.ndarray, vocab_size: int) -> np.ndarray:
        """[batch, vocab_size] booleans: the tokens each row may take next, given the sequences so far (their first
        column is the start token). The tokens copied so far are those generated that are neither marks nor
        special; the next is the source's token after them."""
        generated = sequences[:, 1:]
        is_mark = np.isin(generated, self.marks)
        copied = (~is_mark & ~np.isin(generated, self.special)).sum(axis=1)
        run = np.cumprod(is_mark[:, ::-1], axis=1).sum(axis=1)  # the marks that end each row
        allowed = np.zeros((len(sources), vocab_size), dtype=bool)
        allowed[np.ix_(run < MAX_RUN, self.marks[self.marks < vocab_size])] = True
        for row, (source, done) in enumerate(zip(sources, copied)):
            if done < len(source):
                allowed[row, source[done]] = True
            else:
                allowed[row, self.eos] = True
        return allowed

    def texts(self, texts: list[str], sequences: np.ndarray) -> list[str]:
        """The outputs as text: each source text with the marks its sequence placed, each mark right after the
        source text copied before it (the source's own spelling and spacing, not the tokenizer's decoding of them;
        a sequence cut short by the token limit ends where it stopped)."""
        outputs = []
        for text, (ids, offsets), row in zip(texts, self.encode(texts), sequences[:, 1:].tolist()):
            spans = [
                span
                for token, span in zip(ids, offsets)
                if token not in self.mark_text and token not in self.special_ids
            ]
            pieces, position, copied = [], 0, 0
            for token in row:
                if token in self.mark_text:
                    pieces.append(self.mark_text[token])
                elif token in self.special_ids or copied >= len(spans):
                    break
                else:
                    end = spans[copied][1]
                    pieces.append(text[position:end])
                    position, copied = end, copied + 1
            outputs.append("".join(pieces))
        return outputs


class SourceWordsProcessor:
    """`SourceWords` as a logits processor of transformers' `generate` (`logits_processor=[...]`): the scores of
    the tokens not allowed set to -inf, for the rows of `input_ids`/`attention_mask` (the encoder's inputs)."""

    def __init__(self, rule: SourceWords, input_ids: np.ndarray, attention_mask: np.ndarray):
        self.rule, self.sources = rule, rule.sources(input_ids, attention_mask)

    def __call__(self, sequences, scores):
        import torch

        allowed = self.rule.allowed(self.sources, sequences.numpy(), scores.shape[-1])
        return scores.masked_fill(~torch.from_numpy(allowed), -float("inf"))
