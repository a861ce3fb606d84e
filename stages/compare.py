"""Stage compare: all models side by side -> reports/compare.md (+ image), metrics/compare.json, plots data."""

import argparse
from contextlib import ExitStack
from pathlib import Path

from quantpipe.cli import run_stage
from quantpipe.errors import QuantpipeError
from quantpipe.io import atomic_dir, atomic_file, read_json, write_json
from quantpipe.params import BASELINES, load_params
from quantpipe.report import (
    collect_metrics,
    comparison_table,
    markdown_report,
    render_image,
    sensitivity_markdown,
    static_against_dynamic,
    static_against_dynamic_markdown,
    summary_metrics,
    write_plots,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--metrics", default="metrics/eval", type=Path)
    parser.add_argument("--environment", default="metrics/environment.json", type=Path)
    parser.add_argument("--report", default="reports/compare.md", type=Path)
    parser.add_argument("--image", default="reports/accuracy_vs_throughput.png", type=Path)
    parser.add_argument("--plots", default="reports/plots", type=Path)
    parser.add_argument("--summary", default="metrics/compare.json", type=Path)
    parser.add_argument("--sensitivity", default="metrics/sensitivity.json", type=Path)
    parser.add_argument("--side-by-side", default="metrics/side_by_side.json", type=Path)
    args = parser.parse_args()
    params = load_params(args.params)
    cfg = params.compare
    metrics = collect_metrics(args.metrics, [*BASELINES, *params.variants], params.evaluate.datasets)
    if not args.side_by_side.is_file():
        raise QuantpipeError(f"{args.side_by_side}: not found (run the side_by_side stage)")
    side_by_side = read_json(args.side_by_side)
    table = comparison_table(metrics, cfg.baseline, cfg.accuracy_budget, side_by_side)
    static_vs_dynamic = static_against_dynamic(
        side_by_side, {n: v.kind for n, v in params.variants.items()}, params.evaluate.datasets
    )
    environment = read_json(args.environment) if args.environment.is_file() else None
    image = str(args.image.relative_to(args.report.parent)) if args.image.is_relative_to(args.report.parent) else None
    report = markdown_report(table, cfg.baseline, cfg.accuracy_budget, side_by_side, environment, image)
    if static_vs_dynamic:
        report += "\n" + static_against_dynamic_markdown(static_vs_dynamic, side_by_side["rounds"])
    sensitivity = read_json(args.sensitivity) if args.sensitivity.is_file() else {}
    if sensitivity.get("enabled"):
        report += "\n" + sensitivity_markdown(sensitivity)
    # all four outputs are written to temporary siblings and renamed into place only once all are complete
    with ExitStack() as outputs:
        render_image(table, outputs.enter_context(atomic_file(args.image)))
        write_plots(table, outputs.enter_context(atomic_dir(args.plots)))
        outputs.enter_context(atomic_file(args.report)).write_text(report)
        write_json(outputs.enter_context(atomic_file(args.summary)), summary_metrics(table, static_vs_dynamic))
    print(report)


if __name__ == "__main__":
    run_stage(main)
