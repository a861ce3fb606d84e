"""Stage seq2seq_quantize: one seq2seq variant, built by its kind -> models/seq2seq/quantized/<variant>/."""

from quantpipe.cli import run_stage, stage_args
from quantpipe.config import load_seq2seq_params
from quantpipe.errors import QuantpipeError
from quantpipe.io import VARIANT_FILE, atomic_dir, write_json
from quantpipe.seq2seq.variants import build_variant


def main() -> None:
    args = stage_args(__doc__, "s2s_base", "s2s_onnx", name="variant name in params.yaml `seq2seq.variants`")
    params = load_seq2seq_params(args.params)
    variants = params.seq2seq.variants
    if args.name not in variants:
        raise QuantpipeError(f"seq2seq.variants.{args.name}: not in params (known: {sorted(variants)})")
    with atomic_dir(args.out) as tmp:
        record = build_variant(args.name, variants[args.name], args.s2s_base, args.s2s_onnx, tmp)
        write_json(tmp / VARIANT_FILE, record)
    print(f"{args.name}: {record['params']['kind']}, {record.get('resolved', {})}, served by {record['serve']}")


if __name__ == "__main__":
    run_stage(main)
