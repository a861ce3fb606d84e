"""Stage sensitivity: quantize one operator type / one layer of a variant at a time -> metrics/sensitivity.json."""

from quantpipe.cli import run_stage, stage_args
from quantpipe.config import load_params
from quantpipe.data import read_prepared
from quantpipe.inference import Tokenizer, check_max_length
from quantpipe.io import write_json
from quantpipe.sensitivity import sensitivity_table


def main() -> None:
    args = stage_args(__doc__, "base", "onnx", "calibration", "prepared", out="metrics/sensitivity.json")
    params = load_params(args.params)
    sens = params.sensitivity
    if not sens.enabled:
        write_json(args.out, {"enabled": False})
        print("sensitivity: off (opt in with `dvc exp run -S sensitivity.enabled=true`)")
        return
    check_max_length(args.base, params.evaluate.max_length, "evaluate.max_length")
    frame = read_prepared(args.prepared, sens.dataset, "eval")
    if sens.max_samples:
        frame = frame.head(sens.max_samples)
    rows = sensitivity_table(
        sens.variant,
        params.variants[sens.variant],
        args.onnx,
        args.calibration,
        Tokenizer(args.base),
        frame["text"].tolist(),
        frame["label"].to_numpy(),
        params.evaluate,
        sens,
    )
    write_json(
        args.out,
        {"enabled": True, "variant": sens.variant, "dataset": sens.dataset, "examples": len(frame), "rows": rows},
    )
    for row in rows:
        print(
            f"{row['kind']:>8} {row['part']:<12} accuracy {row['accuracy']:.4f} ({row['accuracy_delta']:+.4f}) "
            f"speed x{row['speed_ratio']:.2f}"
        )


if __name__ == "__main__":
    run_stage(main)
