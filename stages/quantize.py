"""Stage quantize: models/onnx -> models/quantized/<variant>/model.onnx, one variant from params.yaml."""

import argparse
from pathlib import Path

from quantpipe.cli import run_stage
from quantpipe.errors import QuantpipeError
from quantpipe.io import atomic_dir
from quantpipe.params import load_params
from quantpipe.quantization import quantize_variant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--name", required=True, help="variant name in params.yaml `variants`")
    parser.add_argument("--model", default="models/onnx", type=Path)
    parser.add_argument("--calibration", default="models/calibration", type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    variants = load_params(args.params).variants
    if args.name not in variants:
        raise QuantpipeError(f"variants.{args.name}: not in params (known: {sorted(variants)})")
    with atomic_dir(args.out) as tmp:
        path = quantize_variant(args.name, variants[args.name], args.model, args.calibration, tmp)
        print(f"{args.name}: {path.name} {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    run_stage(main)
