"""Greedy generation in numpy over the ONNX files of a seq2seq export (ONNX Runtime or OpenVINO sessions), the
tokenizer read by the `tokenizers` library: a process that serves a model this way imports neither torch nor
transformers. It decodes as transformers' greedy `generate` does (test_seq2seq checks the tokens are the same):
start from the decoder start token, take the arg-max token at each step, pad a row after its end token, stop
when every row has ended or `max_new_tokens` are made; `fixed_length` holds the end token back until then.

The files are those of `quantpipe.seq2seq.export` (Optimum's names): the encoder, then `decoder_model.onnx` for
the first step and `decoder_with_past_model.onnx`, fed the cache, for each later step; an export without a cache
has `decoder_model.onnx` alone, which is fed the whole prefix at every step."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quantpipe.errors import QuantpipeError
from quantpipe.inference import strided_map
from quantpipe.seq2seq.export import DECODER_FILE, ENCODER_FILE, WITH_PAST_FILE
from quantpipe.seq2seq.source_words import SourceWords

Run = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]  # a session: named inputs -> named outputs
# transformers' clean_up_tokenization (tokenizer_config `clean_up_tokenization_spaces`)
CLEANUP = ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"))
CLEANUP += ((" 's", "'s"), (" 've", "'ve"), (" 're", "'re"))


@dataclass
class Sessions:
    """The runnable parts of an export; `with_past` is None for an export without a decoder cache."""

    encoder: Run
    decoder: Run
    with_past: Run | None
    inputs: dict[str, list[str]]  # input names of each part (`encoder`, `decoder`, `with_past`)


@dataclass
class Tokens:
    """The generation config's special tokens (generation_config.json, as `generate` reads them)."""

    start: int
    eos: list[int]
    pad: int

    @classmethod
    def read(cls, model_dir: Path) -> Tokens:
        path = Path(model_dir) / "generation_config.json"
        config = json.loads(path.read_text()) if path.is_file() else {}
        model = json.loads((Path(model_dir) / "config.json").read_text())
        own = {key: config.get(key, model.get(key)) for key in ("decoder_start_token_id", "bos_token_id")}
        start = own["decoder_start_token_id"] if own["decoder_start_token_id"] is not None else own["bos_token_id"]
        if start is None:
            raise QuantpipeError(f"{path}: no decoder_start_token_id (nor bos_token_id): the decoder cannot start")
        eos = config.get("eos_token_id", model.get("eos_token_id"))
        eos = [] if eos is None else list(np.atleast_1d(eos).tolist())
        pad = config.get("pad_token_id", model.get("pad_token_id"))
        return cls(int(start), eos, int(pad if pad is not None else (eos or [0])[0]))


def greedy_ids(
    sessions: Sessions,
    input_ids: np.ndarray,
    attention_mask: np.ndarray,
    tokens: Tokens,
    max_new_tokens: int,
    fixed_length: bool = False,
    keep: SourceWords | None = None,
) -> np.ndarray:
    """[batch, 1 + generated] token ids, the start token first, as `generate(do_sample=False, num_beams=1)`;
    `keep`: each step restricted to what that rule allows (`quantpipe.seq2seq.source_words`)."""
    if max_new_tokens < 1:
        raise QuantpipeError(f"max_new_tokens: must be at least 1 (got {max_new_tokens})")
    batch = input_ids.shape[0]
    hidden = sessions.encoder(_feed(sessions.inputs["encoder"], input_ids=input_ids, attention_mask=attention_mask))[
        "last_hidden_state"
    ]
    sequences = np.full((batch, 1), tokens.start, dtype=np.int64)
    ended = np.zeros(batch, dtype=bool)
    sources = keep.sources(input_ids, attention_mask) if keep else None
    past: dict[str, np.ndarray] = {}
    for step in range(max_new_tokens):
        if step == 0 or sessions.with_past is None:
            run, names = sessions.decoder, sessions.inputs["decoder"]
            ids = sequences
        else:
            run, names = sessions.with_past, sessions.inputs["with_past"]
            ids = sequences[:, -1:]
        outputs = run(
            _feed(names, input_ids=ids, encoder_attention_mask=attention_mask, encoder_hidden_states=hidden, **past)
        )
        if sessions.with_past is not None:
            past.update(
                {"past_key_values" + name[len("present") :]: v for name, v in outputs.items() if name != "logits"}
            )
        scores = outputs["logits"][:, -1, :]
        if keep:
            scores = np.where(keep.allowed(sources, sequences, scores.shape[-1]), scores, -np.inf)
        if fixed_length and tokens.eos:
            scores = scores.copy()
            scores[:, tokens.eos] = -np.inf
        chosen = np.where(ended, tokens.pad, scores.argmax(axis=-1))
        sequences = np.concatenate([sequences, chosen[:, None].astype(np.int64)], axis=1)
        ended |= np.isin(chosen, tokens.eos)
        if ended.all():
            break
    return sequences


def _feed(names: list[str], **values) -> dict[str, np.ndarray]:
    """The inputs a part takes, from the values at hand (int64 ids and masks, float tensors as they are)."""
    return {name: values[name] for name in names}


def _part_files(model_dir: Path, suffix: str) -> dict[str, Path]:
    """The files of each part present in `model_dir` (`.onnx` or OpenVINO's `.xml`); the encoder and first-step
    decoder are required."""
    names = {"encoder": ENCODER_FILE, "decoder": DECODER_FILE, "with_past": WITH_PAST_FILE}
    paths = {part: Path(model_dir) / name.replace(".onnx", suffix) for part, name in names.items()}
    missing = [path.name for part, path in paths.items() if part != "with_past" and not path.is_file()]
    if missing:
        raise QuantpipeError(f"{model_dir}: {', '.join(missing)} not found (not a seq2seq export)")
    return {part: path for part, path in paths.items() if path.is_file()}


def _sessions(runners: dict[str, Run], inputs: dict[str, list[str]]) -> Sessions:
    return Sessions(runners["encoder"], runners["decoder"], runners.get("with_past"), inputs)


def ort_sessions(model_dir: Path, threads: int) -> Sessions:
    """ONNX Runtime sessions of the three files (two without a cache), `threads` intra-op threads each."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    runners, inputs = {}, {}
    for part, path in _part_files(model_dir, ".onnx").items():
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = [output.name for output in session.get_outputs()]
        runners[part] = lambda feed, session=session, names=names: dict(zip(names, session.run(names, feed)))
        inputs[part] = [i.name for i in session.get_inputs()]
    return _sessions(runners, inputs)


def openvino_sessions(model_dir: Path, threads: int, precision: str = "default", streams: int = 1) -> list[Sessions]:
    """OpenVINO CPU models of the IR files (`quantpipe.kinds.openvino`), `threads` inference
    threads; one stream with the LATENCY hint, or `streams` streams with the THROUGHPUT hint, and one Sessions
    (its own infer requests) per stream. `precision`: `default` leaves OpenVINO's own choice (bf16 where the CPU
    has AVX512_BF16 or AMX), `f32` or `bf16` sets INFERENCE_PRECISION_HINT."""
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    if streams > 1:
        config |= {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": streams}
    if precision != "default":
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = {
        part: core.compile_model(str(path), "CPU", config) for part, path in _part_files(model_dir, ".xml").items()
    }
    inputs = {part: [port.any_name for port in model.inputs] for part, model in compiled.items()}

    def runner(model):
        request, names = model.create_infer_request(), [output.any_name for output in model.outputs]

        def run(feed):
            results = request.infer(feed)
            return {name: results[i] for i, name in enumerate(names)}

        return run

    return [_sessions({part: runner(model) for part, model in compiled.items()}, inputs) for _ in range(streams)]


class LeanTokenizer:
    """The model's tokenizer.json through `tokenizers`: encode with its special tokens, truncation and padding as
    the transformers tokenizer saved beside it does; decode with the special tokens skipped."""

    def __init__(self, model_dir: Path, max_length: int | None = None):
        from tokenizers import Tokenizer

        model_dir = Path(model_dir)
        path = model_dir / "tokenizer.json"
        if not path.is_file():
            raise QuantpipeError(f"{path}: not found (a fast tokenizer saved with the model is needed)")
        config_path = model_dir / "tokenizer_config.json"
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        self.tokenizer = Tokenizer.from_file(str(path))
        limit = config.get("model_max_length")
        length = max_length or (int(limit) if limit and limit < 1e9 else None)
        self.tokenizer.no_truncation()
        if length:
            self.tokenizer.enable_truncation(length)
        pad = config.get("pad_token") or "<pad>"
        pad = pad["content"] if isinstance(pad, dict) else pad
        self.tokenizer.enable_padding(pad_id=self.tokenizer.token_to_id(pad) or 0, pad_token=pad)
        self.cleanup = bool(config.get("clean_up_tokenization_spaces", False))

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        encoded = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        return ids, np.array([e.attention_mask for e in encoded], dtype=np.int64)

    def lengths(self, texts: list[str]) -> list[int]:
        return [sum(e.attention_mask) for e in self.tokenizer.encode_batch(texts)]

    def decode(self, sequences: np.ndarray) -> list[str]:
        texts = self.tokenizer.decode_batch(sequences.tolist(), skip_special_tokens=True)
        if self.cleanup:
            for before, after in CLEANUP:
                texts = [text.replace(before, after) for text in texts]
        return texts


class LeanSeq2seq:
    """A seq2seq export served with `greedy_ids` and `LeanTokenizer`, with the `generate`-like call the
    measurement makes (as `quantpipe.seq2seq.runtime.TorchSeq2seq`): texts in, (decoded texts, token sequences)
    out; `lengths` and `eos` for batching and counting. Given several Sessions (streams), `generate_batches`
    runs them concurrently, each from its own thread over every `streams`-th batch
    (`quantpipe.inference.strided_map`; the engines release the GIL while they compute); `generate` uses the
    first."""

    def __init__(
        self,
        model_dir: Path,
        sessions: Sessions | list[Sessions],
        max_length: int | None = None,
        keep_source_words: bool = False,
    ):
        self.tokenizer = LeanTokenizer(model_dir, max_length)
        self.tokens = Tokens.read(model_dir)
        self.keep = SourceWords.of_tokenizers(self.tokenizer.tokenizer, self.tokens.eos) if keep_source_words else None
        self.replicas = sessions if isinstance(sessions, list) else [sessions]
        self.streams = len(self.replicas)
        self.pool = ThreadPoolExecutor(self.streams, thread_name_prefix="stream") if self.streams > 1 else None
        self.eos = self.tokens.eos

    def lengths(self, texts: list[str]) -> list[int]:
        return self.tokenizer.lengths(texts)

    def generate(self, texts: list[str], max_new_tokens: int, fixed_length: bool = False):
        return self._generate(self.replicas[0], texts, max_new_tokens, fixed_length)

    def generate_batches(self, batches: list[list[str]], max_new_tokens: int, fixed_length: bool = False) -> list:
        """`generate` of each batch, in order; with several streams, `streams` batches at a time."""
        if self.pool is None:
            return [self.generate(texts, max_new_tokens, fixed_length) for texts in batches]
        workers = [
            lambda texts, sessions=sessions: self._generate(sessions, texts, max_new_tokens, fixed_length)
            for sessions in self.replicas
        ]
        return strided_map(self.pool, workers, batches)

    def _generate(self, sessions: Sessions, texts: list[str], max_new_tokens: int, fixed_length: bool):
        ids, mask = self.tokenizer.encode(texts)
        sequences = greedy_ids(sessions, ids, mask, self.tokens, max_new_tokens, fixed_length, self.keep)
        return (self.keep.texts(texts, sequences) if self.keep else self.tokenizer.decode(sequences)), sequences
