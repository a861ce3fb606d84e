"""Where the time goes: ONNX Runtime's own profiler, kernel time per operator type, for some models.

Not a test. Run after `dvc repro`, venv active, e.g.

    python benchmarks/op_profile.py --dataset amazon static_int8 dynamic_int8_o2

Each model runs the first `--max-samples` texts of the dataset in length-sorted batches (the evaluate
stage's batch size and threads), once untimed, then once with profiling on.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from quantpipe.config import load_params
from quantpipe.data import read_prepared
from quantpipe.inference import Tokenizer, length_sorted_batches


def kernel_time_by_op(model_path: Path, batches: list[dict], threads: int) -> Counter:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    for batch in batches:  # warm-up
        session.run(None, batch)
    options.enable_profiling = True
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    for batch in batches:
        session.run(None, batch)
    trace = Path(session.end_profiling())
    times = Counter()
    for event in json.loads(trace.read_text()):
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            times[event["args"]["op_name"]] += event["dur"]
    trace.unlink()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="variant names (models/quantized/<name>) or onnx_fp32")
    parser.add_argument("--dataset", default="amazon")
    parser.add_argument("--max-samples", type=int, default=256)
    args = parser.parse_args()
    cfg = load_params().evaluate
    tokenizer = Tokenizer("models/pytorch/base")
    texts = read_prepared("data/prepared", args.dataset, "eval")["text"].tolist()[: args.max_samples]
    features = tokenizer.encode(texts, cfg.max_length)
    batches = [
        tokenizer.pad([features[i] for i in idx])
        for idx in length_sorted_batches([len(f["input_ids"]) for f in features], cfg.batch_size)
    ]
    for name in args.models:
        path = (
            Path("models/onnx/base/model.onnx")
            if name == "onnx_fp32"
            else Path("models/quantized") / name / "model.onnx"
        )
        times = kernel_time_by_op(path, batches, cfg.threads)
        total = sum(times.values())
        shares = ", ".join(f"{op} {t / total:.0%}" for op, t in times.most_common(6))
        print(f"{name}: kernel time {total / 1e6:.2f} s on {len(texts)} {args.dataset} texts; {shares}")


if __name__ == "__main__":
    main()
