"""Stage export: models/pytorch/base -> models/onnx/base/model.onnx (Optimum export, optional ORTOptimizer level)."""

from quantpipe.cli import run_stage, stage_args
from quantpipe.config import load_params
from quantpipe.export import export_onnx
from quantpipe.io import atomic_dir


def main() -> None:
    args = stage_args(__doc__, "base", out="models/onnx/base")
    cfg = load_params(args.params).export
    with atomic_dir(args.out) as tmp:
        path = export_onnx(args.base, tmp, cfg.optimization)
        print(f"exported {path.name} ({path.stat().st_size / 1e6:.1f} MB, optimization {cfg.optimization})")


if __name__ == "__main__":
    run_stage(main)
