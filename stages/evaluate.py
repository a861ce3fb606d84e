"""Stage evaluate: one model (a baseline or a variant) on every evaluation dataset -> metrics/eval/<name>/, and
its predicted labels -> predictions/<name>/ (the compare stage's agreement with the baseline)."""

from contextlib import ExitStack

from quantpipe.cli import run_stage, stage_args
from quantpipe.config import load_params
from quantpipe.data import read_prepared
from quantpipe.errors import QuantpipeError
from quantpipe.evaluation import evaluate_model
from quantpipe.inference import check_max_length
from quantpipe.io import atomic_dir, write_json
from quantpipe.kinds import pipeline_models


def main() -> None:
    args = stage_args(__doc__, "base", "onnx", "quantized", "prepared", "predictions", name="baseline or variant name")
    params = load_params(args.params)
    cfg = params.evaluate
    models = pipeline_models(params, args.base, args.onnx, args.quantized)
    if args.name not in models:
        raise QuantpipeError(f"{args.name}: neither a baseline nor a variant (known: {sorted(models)})")
    kind, variant, model_dir = models[args.name]
    kind.check_available(args.name)
    check_max_length(args.base, cfg.max_length, "evaluate.max_length")
    check_max_length(model_dir, variant.length_policy(cfg).max_length, f"variants.{args.name}.max_length")
    frames = {name: read_prepared(args.prepared, name, "eval") for name in cfg.datasets}
    results = evaluate_model(args.name, kind, variant, model_dir, args.base, frames, cfg)
    # both directories are renamed into place only once both are complete
    with ExitStack() as outputs:
        metrics_dir = outputs.enter_context(atomic_dir(args.out))
        labels_dir = outputs.enter_context(atomic_dir(args.predictions / args.name))
        for dataset, metrics in results.items():
            labels = metrics.pop("labels")
            write_json(labels_dir / f"{dataset}.json", {"variant": args.name, "dataset": dataset, "labels": labels})
            write_json(metrics_dir / f"{dataset}.json", metrics)
            if "skipped" in metrics:
                print(f"{args.name}/{dataset}: skipped on this CPU: {metrics['skipped']}")
                continue
            print(
                f"{args.name}/{dataset}: accuracy {metrics['accuracy']:.4f} "
                f"[{metrics['accuracy_ci_low']:.4f}, {metrics['accuracy_ci_high']:.4f}], "
                f"peak RSS {metrics['peak_rss_mb']:.0f} MB"
            )


if __name__ == "__main__":
    run_stage(main)
