"""Stage compare: all models side by side -> reports/compare.md (+ image), metrics/compare.json, plots data."""

import argparse
from pathlib import Path

from quantpipe.cli import run_stage
from quantpipe.io import read_json, write_json, write_text
from quantpipe.params import BASELINES, load_params
from quantpipe.report import (collect_metrics, comparison_table, markdown_report, render_image,
                              sensitivity_markdown, summary_metrics, write_plots)


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
    args = parser.parse_args()
    params = load_params(args.params)
    cfg = params.compare
    metrics = collect_metrics(args.metrics, [*BASELINES, *params.variants], params.evaluate.datasets)
    table = comparison_table(metrics, cfg.baseline, cfg.accuracy_budget)
    environment = read_json(args.environment) if args.environment.is_file() else None
    render_image(table, args.image)
    write_plots(table, args.plots)
    image = str(args.image.relative_to(args.report.parent)) if args.image.is_relative_to(args.report.parent) else None
    report = markdown_report(table, cfg.baseline, cfg.accuracy_budget, environment, image)
    if args.sensitivity.is_file():
        report += "\n" + sensitivity_markdown(read_json(args.sensitivity))
    write_text(args.report, report)
    write_json(args.summary, summary_metrics(table))
    print(report)


if __name__ == "__main__":
    run_stage(main)
