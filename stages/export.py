"""Stage export: models/base -> models/onnx/model.onnx (Optimum export, optional ORTOptimizer level)."""

import argparse

from quantpipe.cli import run_stage
from quantpipe.export import export_onnx
from quantpipe.io import atomic_dir
from quantpipe.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--base", default="models/base")
    parser.add_argument("--out", default="models/onnx")
    args = parser.parse_args()
    cfg = load_params(args.params).export
    with atomic_dir(args.out) as tmp:
        path = export_onnx(args.base, tmp, cfg.optimization)
        print(f"exported {path.name} ({path.stat().st_size / 1e6:.1f} MB, optimization {cfg.optimization})")


if __name__ == "__main__":
    run_stage(main)
