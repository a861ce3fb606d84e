"""Stage compare: all variants side by side -> reports/compare.md and metrics/compare.json."""

import argparse
from pathlib import Path

from quantpipe.cli import run_stage
from quantpipe.io import write_json
from quantpipe.params import BASELINES, load_params
from quantpipe.report import collect_metrics, comparison_table, markdown_report, summary_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--metrics", default="metrics/eval", type=Path)
    parser.add_argument("--report", default="reports/compare.md", type=Path)
    parser.add_argument("--summary", default="metrics/compare.json", type=Path)
    args = parser.parse_args()
    params = load_params(args.params)
    cfg = params.compare
    names = [*BASELINES, *params.variants]
    metrics = collect_metrics(args.metrics, names, params.evaluate.datasets)
    table = comparison_table(metrics, cfg.baseline, cfg.accuracy_budget)
    report = markdown_report(table, cfg.baseline, cfg.accuracy_budget)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.report.with_suffix(".md.tmp")
    tmp.write_text(report)
    tmp.replace(args.report)
    write_json(args.summary, summary_metrics(table))
    print(report)


if __name__ == "__main__":
    run_stage(main)
