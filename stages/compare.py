"""Stage compare: all models side by side -> reports/compare.md (+ image), metrics/compare.json,
metrics/answer.json, plots data."""

from contextlib import ExitStack

from quantpipe.analysis import (
    against_references,
    collect_metrics,
    comparison_table,
    skipped_models,
    summary_metrics,
    teachers_by_length,
    the_answer,
    with_agreement,
)
from quantpipe.cli import run_stage, stage_args
from quantpipe.config import load_params
from quantpipe.config.constants import BASELINES
from quantpipe.config.registry import get_kind
from quantpipe.config.sections import LengthPolicy
from quantpipe.errors import QuantpipeError
from quantpipe.io import atomic_dir, atomic_file, read_json, write_json
from quantpipe.rendering import (
    markdown_report,
    references_markdown,
    render_image,
    sensitivity_markdown,
    write_plots,
)


def main() -> None:
    args = stage_args(
        __doc__,
        "metrics",
        "predictions",
        "environment",
        "sensitivity",
        "side_by_side",
        "report",
        "image",
        "plots",
        "summary",
        "answer",
        out=False,
    )
    params = load_params(args.params)
    cfg, evaluate = params.compare, params.evaluate
    budget = cfg.accuracy_budget / 100  # params: accuracy points; the tables and the picture: accuracy as a fraction
    metrics = collect_metrics(args.metrics, [*BASELINES, *params.variants], evaluate.datasets)
    if not args.side_by_side.is_file():
        raise QuantpipeError(f"{args.side_by_side}: not found (run the side_by_side stage)")
    side_by_side = read_json(args.side_by_side, expect=dict)
    table = comparison_table(metrics, cfg.baseline, budget, side_by_side)
    baseline_kind = get_kind(BASELINES[cfg.baseline])
    teachers = teachers_by_length(
        params.variants,
        cfg.baseline,
        baseline_kind.params(kind=baseline_kind.name),
        LengthPolicy(evaluate.max_length),
    )
    table = with_agreement(table, args.predictions, cfg.baseline, evaluate.bootstrap_resamples, evaluate.seed, teachers)
    references = against_references(table, side_by_side, cfg.references)
    answer = the_answer(table, side_by_side, cfg.references)
    skipped = skipped_models(metrics)
    environment = read_json(args.environment, expect=dict) if args.environment.is_file() else None
    image = str(args.image.relative_to(args.report.parent)) if args.image.is_relative_to(args.report.parent) else None
    report = markdown_report(
        table, cfg.baseline, budget, side_by_side, environment, image, answer=answer, skipped=skipped
    )
    if references:
        report += "\n" + references_markdown(references, side_by_side["rounds"])
    sensitivity = read_json(args.sensitivity, expect=dict) if args.sensitivity.is_file() else {}
    if sensitivity.get("enabled"):
        report += "\n" + sensitivity_markdown(sensitivity)
    # all five outputs are written to temporary siblings and renamed into place only once all are complete
    with ExitStack() as outputs:
        render_image(table, outputs.enter_context(atomic_file(args.image)), cfg.baseline, budget, cfg.references)
        write_plots(table, outputs.enter_context(atomic_dir(args.plots)))
        outputs.enter_context(atomic_file(args.report)).write_text(report)
        write_json(outputs.enter_context(atomic_file(args.summary)), summary_metrics(table, references))
        write_json(outputs.enter_context(atomic_file(args.answer)), answer)
    print(report)


if __name__ == "__main__":
    run_stage(main)
