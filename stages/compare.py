"""Stage compare: all models side by side -> reports/compare.md (+ image), metrics/compare.json, plots data."""

import argparse
from pathlib import Path

from quantpipe.cli import run_stage
from quantpipe.errors import QuantpipeError
from quantpipe.io import read_json, write_json, write_text
from quantpipe.params import BASELINES, load_params
from quantpipe.report import (collect_metrics, comparison_table, markdown_report, render_image,
                              sensitivity_markdown, static_against_dynamic, static_against_dynamic_markdown,
                              summary_metrics, write_plots)


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
    static_vs_dynamic = static_against_dynamic(side_by_side, {n: v.kind for n, v in params.variants.items()},
                                               params.evaluate.datasets)
    environment = read_json(args.environment) if args.environment.is_file() else None
    render_image(table, args.image)
    write_plots(table, args.plots)
    image = str(args.image.relative_to(args.report.parent)) if args.image.is_relative_to(args.report.parent) else None
    report = markdown_report(table, cfg.baseline, cfg.accuracy_budget, environment, image)
    if static_vs_dynamic:
        report += "\n" + static_against_dynamic_markdown(static_vs_dynamic, side_by_side["rounds"])
    if args.sensitivity.is_file():
        report += "\n" + sensitivity_markdown(read_json(args.sensitivity))
    write_text(args.report, report)
    write_json(args.summary, summary_metrics(table, static_vs_dynamic))
    print(report)


if __name__ == "__main__":
    run_stage(main)
