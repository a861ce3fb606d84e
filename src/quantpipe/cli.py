"""What every stage script shares: its command line (the paths of the pipeline's layout, declared once here)
and running `main` so that user errors become one line and a non-zero exit."""

from __future__ import annotations

import argparse
import glob
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from quantpipe.errors import QuantpipeError
from quantpipe.io import sweep_temporaries, sweep_tree

log = logging.getLogger(__name__)

# every path a stage reads or writes: option -> (default, what it is); dvc.yaml passes the defaults
PATHS = {
    "raw": ("data/raw", "downloaded splits"),
    "prepared": ("data/prepared", "combined texts and labels per dataset and split"),
    "base": ("models/pytorch/base", "the fp32 PyTorch model and its tokenizer"),
    "onnx": ("models/onnx/base", "its fp32 ONNX export"),
    "teacher_logits": ("models/teacher_logits", "the base model's logits on the distillation texts"),
    "calibration": ("models/calibration", "the calibrate stages' outputs"),
    "quantized": ("models/quantized", "the quantize stages' outputs, one directory per variant"),
    "metrics": ("metrics/eval", "the evaluate stages' outputs"),
    "predictions": ("predictions", "the evaluate stages' predicted labels, one directory per model"),
    "environment": ("metrics/environment.json", "the environment stage's output"),
    "sensitivity": ("metrics/sensitivity.json", "the sensitivity stage's output"),
    "side_by_side": ("metrics/side_by_side.json", "the side_by_side stage's output"),
    "report": ("reports/compare.md", "the comparison report"),
    "image": ("reports/accuracy_vs_throughput.png", "the report's image"),
    "plots": ("reports/plots", "the data of `dvc plots`"),
    "summary": ("metrics/compare.json", "the comparison's metrics"),
    "answer": ("metrics/answer.json", "the comparison's answer: per dataset the model to ship, in a dozen figures"),
    "trials": ("metrics/search/trials", "the search's trial cache (one JSON file per trial)"),
    "search_report": ("reports/search", "the search's report, trials, winner and Pareto plot data"),
    "s2s_data": ("data/seq2seq", "the seq2seq (source, target) pairs, train and eval"),
    "s2s_base": ("models/seq2seq/base", "the fp32 PyTorch seq2seq model and its tokenizer"),
    "s2s_onnx": ("models/seq2seq/onnx", "its fp32 ONNX export"),
    "s2s_quantized": ("models/seq2seq/quantized", "the seq2seq_quantize stages' outputs, one directory per variant"),
    "s2s_metrics": ("metrics/seq2seq/eval", "the seq2seq_evaluate stages' outputs"),
    "s2s_report": ("reports/seq2seq.md", "the seq2seq report"),
}


def stage_args(
    description: str, *paths: str, name: str | None = None, out: str | bool | None = None, params: bool = True
) -> argparse.Namespace:
    """Parse a stage's command line: `--params`, the `paths` it uses (defaults from PATHS), `--name` (with
    its help, if given) and `--out` (required if `out` is None, its default if a path, absent if False); the
    temporaries of `--out` that a killed run left are removed, each with a one-line warning."""
    parser = argparse.ArgumentParser(description=description)
    if params:
        parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="the params file")
    if name:
        parser.add_argument("--name", required=True, help=name)
    for path in paths:
        default, what = PATHS[path]
        parser.add_argument(f"--{path.replace('_', '-')}", type=Path, default=Path(default), help=what)
    if out is not False:
        parser.add_argument("--out", type=Path, required=out is None, default=out, help="where the stage writes")
    args = parser.parse_args()
    if out is not False:
        removed(sweep_temporaries(args.out.parent, glob.escape(args.out.name)))
    return args


def output_roots() -> list[Path]:
    """The top directories of every path in PATHS: where the pipelines write."""
    return sorted({Path(Path(default).parts[0]) for default, _ in PATHS.values()})


def sweep_outputs() -> list[Path]:
    """Remove the temporaries of killed runs under every output root (`quantpipe.io.sweep_tree`), each with a
    one-line warning; returns them."""
    return removed([path for root in output_roots() for path in sweep_tree(root)])


def removed(paths: list[Path]) -> list[Path]:
    """`paths`, each named on a warning line as the removed temporary output of a run that did not finish."""
    for path in paths:
        log.warning(f"{path}: removed (a temporary output of a run that did not finish)")
    return paths


def run_stage(main: Callable[[], None]) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        main()
    except QuantpipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
