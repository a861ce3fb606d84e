"""Stage seq2seq_quantize: one seq2seq variant, built by its kind -> models/seq2seq/quantized/<variant>/."""

from quantpipe.cli import run_stage, stage_args
from quantpipe.config import load_seq2seq_params
from quantpipe.config.registry import get_kind
from quantpipe.environment import cpu_info
from quantpipe.errors import QuantpipeError
from quantpipe.io import VARIANT_FILE, atomic_dir, write_json


def main() -> None:
    args = stage_args(__doc__, "s2s_base", "s2s_onnx", name="variant name in params.yaml `seq2seq.variants`")
    params = load_seq2seq_params(args.params)
    variants = params.seq2seq.variants
    if args.name not in variants:
        raise QuantpipeError(f"seq2seq.variants.{args.name}: not in params (known: {sorted(variants)})")
    variant = variants[args.name]
    kind = get_kind(variant.kind)
    kind.check_available(args.name, "seq2seq.variants")
    reason = kind.skip_reason(variant, cpu_info())
    if reason:
        with atomic_dir(args.out) as tmp:
            write_json(tmp / VARIANT_FILE, {"params": variant.model_dump(), "skipped": reason})
        print(f"{args.name}: skipped on this CPU: {reason}")
        return
    with atomic_dir(args.out) as tmp:
        built = kind.build_generate(args.name, variant, args.s2s_base, args.s2s_onnx, tmp)
        record = {"params": variant.model_dump(), **built}
        write_json(tmp / VARIANT_FILE, record)
    print(f"{args.name}: {variant.kind}, {built.get('resolved', {})}")


if __name__ == "__main__":
    run_stage(main)
