"""Stage calibrate: activation ranges of models/onnx/base (optionally optimized first) on a train sample
-> models/calibration/<name>/ranges.json (plus the optimized graph they belong to, if any)."""

from quantpipe.calibration import calibrate
from quantpipe.cli import run_stage, stage_args
from quantpipe.config import load_params
from quantpipe.data import read_prepared
from quantpipe.errors import QuantpipeError
from quantpipe.io import atomic_dir, write_json


def main() -> None:
    args = stage_args(__doc__, "onnx", "prepared", name="calibration name in params.yaml `calibrations`")
    params = load_params(args.params)
    if args.name not in params.calibrations:
        raise QuantpipeError(f"calibrations.{args.name}: not in params (known: {sorted(params.calibrations)})")
    cfg = params.calibrations[args.name]
    texts = read_prepared(args.prepared, params.data.train_dataset, "train")["text"]
    with atomic_dir(args.out) as tmp:
        ranges = calibrate(args.onnx, texts, cfg, tmp)
        write_json(tmp / "calibration.json", cfg.model_dump())
    print(f"{args.name}: {cfg.method} ranges for {len(ranges)} tensors from {cfg.num_samples} samples")


if __name__ == "__main__":
    run_stage(main)
