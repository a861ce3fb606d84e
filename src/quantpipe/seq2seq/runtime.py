"""Serve a seq2seq model for generation: PyTorch through transformers' `generate` (fp32, or under bf16 autocast),
and the greedy generation config it decodes with; the ONNX exports are served by `quantpipe.seq2seq.lean`. Both
answer the same calls, so that outputs and timings compare: `generate(texts, max_new_tokens, fixed_length)` ->
(decoded texts, token sequences), `lengths(texts)` (source tokens after truncation) and `eos` (end token ids)."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np

from quantpipe.errors import QuantpipeError
from quantpipe.io import check_model_dir, loading
from quantpipe.seq2seq.export import seq2seq_config
from quantpipe.seq2seq.source_words import SourceWords, SourceWordsProcessor


class TorchSeq2seq:
    """The fp32 PyTorch model (`AutoModelForSeq2SeqLM`) in eval mode with its tokenizer, each generate call on
    `threads` threads (set per call: torch's thread count is the process's, shared with other models in it);
    `use_cache` false: its generate recomputes the decoder's prefix at each step (no key/value cache); `autocast`
    `bf16`: generate under `torch.autocast("cpu", torch.bfloat16)`, as a PyTorch user turns bf16 on;
    `keep_source_words`: each step restricted by `quantpipe.seq2seq.source_words`; sources are truncated to
    `max_length` tokens (None: the tokenizer's limit)."""

    def __init__(
        self,
        model_dir: str | Path,
        threads: int,
        use_cache: bool = True,
        max_length: int | None = None,
        autocast: str = "none",
        keep_source_words: bool = False,
    ):
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        check_model_dir(model_dir)
        seq2seq_config(model_dir)
        self.threads = threads
        with loading(model_dir, "seq2seq PyTorch model"):
            self.model = AutoModelForSeq2SeqLM.from_pretrained(model_dir).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model.generation_config.use_cache = use_cache
        self.max_length, self.autocast = max_length, autocast
        eos = self.model.generation_config.eos_token_id
        self.eos = [] if eos is None else list(np.atleast_1d(eos).tolist())
        self.keep = SourceWords.of_transformers(self.tokenizer, self.eos) if keep_source_words else None

    def lengths(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(texts, truncation=True, max_length=self.max_length)["input_ids"]]

    def generate_batches(self, batches: list[list[str]], max_new_tokens: int, fixed_length: bool = False) -> list:
        """`generate` of each batch, one after the other (one stream: PyTorch's threads are the process's)."""
        return [self.generate(texts, max_new_tokens, fixed_length) for texts in batches]

    def generate(self, texts: list[str], max_new_tokens: int, fixed_length: bool = False):
        import torch
        from transformers import LogitsProcessorList

        config = greedy_config(self.model, max_new_tokens, fixed_length)
        encoded = encode_sources(self.tokenizer, texts, self.max_length)
        bf16 = torch.autocast("cpu", dtype=torch.bfloat16) if self.autocast == "bf16" else nullcontext()
        torch.set_num_threads(self.threads)
        rules = LogitsProcessorList()
        if self.keep:
            rules.append(
                SourceWordsProcessor(self.keep, encoded["input_ids"].numpy(), encoded["attention_mask"].numpy())
            )
        with torch.inference_mode(), bf16:
            sequences = self.model.generate(**encoded, generation_config=config, logits_processor=rules)
        sequences = sequences.numpy()
        if self.keep:
            return self.keep.texts(texts, sequences), sequences
        return self.tokenizer.batch_decode(sequences, skip_special_tokens=True), sequences


def encode_sources(tokenizer, texts: list[str], max_length: int | None):
    """Encoder inputs as torch tensors: `texts` tokenized, truncated to `max_length` tokens, padded to the
    longest; no token type ids (an encoder-decoder's encoder takes none). Training and generation alike."""
    return tokenizer(
        texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt", return_token_type_ids=False
    )


def greedy_config(model, max_new_tokens: int, fixed_length: bool = False):
    """Greedy decoding (no sampling, one beam) of at most `max_new_tokens` tokens, with the model's own start,
    end and padding tokens. `fixed_length`: exactly `max_new_tokens` (the end token is held back until then),
    so that every model generates the same number of tokens and per-call times compare; otherwise an output
    stops at its end token, as a user gets it (what quality is measured on). The key/value cache is used as the
    model's own generation config says."""
    from transformers import GenerationConfig

    if max_new_tokens < 1:
        raise QuantpipeError(f"max_new_tokens: must be at least 1 (got {max_new_tokens})")
    own = model.generation_config
    start = own.decoder_start_token_id if own.decoder_start_token_id is not None else own.bos_token_id
    if start is None:
        raise QuantpipeError(
            "generation_config.json: no decoder_start_token_id (nor bos_token_id): the decoder cannot start"
        )
    return GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=max_new_tokens,
        min_new_tokens=max_new_tokens if fixed_length else None,
        decoder_start_token_id=start,
        bos_token_id=own.bos_token_id,
        eos_token_id=own.eos_token_id,
        pad_token_id=own.pad_token_id,
        use_cache=own.use_cache,
    )
