"""Stage sensitivity: quantize one operator type / one layer of a variant at a time -> metrics/sensitivity.json."""

import argparse
from pathlib import Path

from quantpipe.cli import run_stage
from quantpipe.data import read_prepared
from quantpipe.inference import check_max_length
from quantpipe.io import write_json
from quantpipe.params import load_params
from quantpipe.sensitivity import sensitivity_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", default="models/onnx", type=Path)
    parser.add_argument("--calibration", default="models/calibration", type=Path)
    parser.add_argument("--tokenizer", default="models/base", type=Path)
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--out", default="metrics/sensitivity.json", type=Path)
    args = parser.parse_args()
    params = load_params(args.params)
    sens = params.sensitivity
    if not sens.enabled:
        write_json(args.out, {"enabled": False})
        print("sensitivity: off (opt in with `dvc exp run -S sensitivity.enabled=true`)")
        return
    check_max_length(args.tokenizer, params.evaluate.max_length, "evaluate.max_length")
    from transformers import AutoTokenizer

    frame = read_prepared(args.prepared, sens.dataset, "eval")
    if sens.max_samples:
        frame = frame.head(sens.max_samples)
    rows = sensitivity_table(
        sens.variant,
        params.variants[sens.variant],
        args.model,
        args.calibration,
        AutoTokenizer.from_pretrained(args.tokenizer),
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
