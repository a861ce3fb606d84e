"""Load a seq2seq model for generation, in PyTorch or in ONNX Runtime (through Optimum), and the greedy
generation config every model decodes with, so that their outputs and timings compare."""

from __future__ import annotations

from pathlib import Path

from quantpipe.errors import QuantpipeError
from quantpipe.io import check_model_dir, loading
from quantpipe.seq2seq.export import DECODER_FILE, MERGED_FILE, part_files, seq2seq_config


def load_torch_seq2seq(model_dir: str | Path, threads: int, use_cache: bool = True):
    """The fp32 PyTorch model (`AutoModelForSeq2SeqLM`) in eval mode, PyTorch limited to `threads` threads;
    `use_cache` false: its generate recomputes the decoder's prefix at each step (no key/value cache)."""
    import torch
    from transformers import AutoModelForSeq2SeqLM

    check_model_dir(model_dir)
    seq2seq_config(model_dir)
    torch.set_num_threads(threads)
    with loading(model_dir, "seq2seq PyTorch model"):
        model = AutoModelForSeq2SeqLM.from_pretrained(model_dir).eval()
    model.generation_config.use_cache = use_cache
    return model


def load_ort_seq2seq(model_dir: Path, threads: int):
    """`ORTModelForSeq2SeqLM` over the files of an exported or quantized directory: with the decoder's cache if it
    was exported with one (merged, or the decoder-with-past pair), else without. Each session runs `threads`
    intra-op threads."""
    import onnxruntime as ort
    from optimum.onnxruntime import ORTModelForSeq2SeqLM

    model_dir = Path(model_dir)
    files = [file for part in part_files(model_dir).values() for file in part]
    missing = [f for f in files if not (model_dir / f).is_file()]
    if missing:
        raise QuantpipeError(f"{model_dir}: {', '.join(missing)} not found (not a seq2seq ONNX directory)")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    check_model_dir(model_dir)
    with loading(model_dir, "seq2seq ONNX model"):
        return ORTModelForSeq2SeqLM.from_pretrained(
            model_dir, use_cache=files[1:] != [DECODER_FILE], use_merged=MERGED_FILE in files, session_options=options
        )


def greedy_config(model, max_new_tokens: int, fixed_length: bool = False):
    """Greedy decoding (no sampling, one beam) of at most `max_new_tokens` tokens, with the model's own start,
    end and padding tokens. `fixed_length`: exactly `max_new_tokens` (the end token is held back until then),
    so that every model generates the same number of tokens and per-call times compare; otherwise an output
    stops at its end token, as a user gets it (what quality is measured on). The key/value cache is used as the
    model's own generation config says (an ONNX model: as exported)."""
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
