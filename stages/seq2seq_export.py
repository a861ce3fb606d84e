"""Stage seq2seq_export: the fp32 seq2seq model to ONNX (with the decoder's cache where it has one)."""

from quantpipe.cli import run_stage, stage_args
from quantpipe.config import load_seq2seq_params
from quantpipe.io import atomic_dir
from quantpipe.seq2seq.export import decoder_has_past, export_seq2seq, seq2seq_config


def main() -> None:
    args = stage_args(__doc__, "s2s_base", out="models/seq2seq/onnx")
    params = load_seq2seq_params(args.params)
    with_past = params.seq2seq.with_past
    if with_past is None:
        with_past = decoder_has_past(seq2seq_config(args.s2s_base))
    with atomic_dir(args.out) as tmp:
        export_seq2seq(args.s2s_base, tmp, with_past, params.seq2seq.optimization)
    optimized = f", ONNX Runtime optimization {params.seq2seq.optimization}"
    print(f"seq2seq export: {'with' if with_past else 'without'} the decoder's key/value cache{optimized}")


if __name__ == "__main__":
    run_stage(main)
