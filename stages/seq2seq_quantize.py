"""Stage seq2seq_quantize: one seq2seq variant, dynamic int8 file by file -> models/seq2seq/quantized/<variant>/."""

from quantpipe.cli import run_stage, stage_args
from quantpipe.config import load_seq2seq_params
from quantpipe.errors import QuantpipeError
from quantpipe.io import VARIANT_FILE, atomic_dir, write_json
from quantpipe.seq2seq.export import part_files
from quantpipe.seq2seq.graph import cross_attention_nodes, lm_head_nodes
from quantpipe.seq2seq.quantize import quantize_seq2seq

EXCLUSIONS = {"lm_head": lm_head_nodes, "cross_attention": cross_attention_nodes}


def main() -> None:
    args = stage_args(__doc__, "s2s_onnx", name="variant name in params.yaml `seq2seq.variants`")
    params = load_seq2seq_params(args.params)
    variants = params.seq2seq.variants
    if args.name not in variants:
        raise QuantpipeError(f"seq2seq.variants.{args.name}: not in params (known: {sorted(variants)})")
    variant = variants[args.name]
    files = part_files(args.s2s_onnx)
    nodes = sorted(
        {
            node
            for what in variant.exclude
            for part in variant.parts
            for file in files[part]
            for node in EXCLUSIONS[what](args.s2s_onnx / file)
        }
    )
    with atomic_dir(args.out) as tmp:
        resolved = quantize_seq2seq(
            args.s2s_onnx,
            tmp,
            variant.preset,
            variant.per_channel,
            variant.parts,
            nodes,
            f"seq2seq.variants.{args.name}",
        )
        write_json(tmp / VARIANT_FILE, {"params": variant.model_dump(), "resolved": resolved, "excluded": nodes})
    print(
        f"{args.name}: preset {resolved['preset']}, quantized operators {resolved['quantized_ops']}, {len(nodes)} nodes fp32"
    )


if __name__ == "__main__":
    run_stage(main)
