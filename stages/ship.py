"""Stage ship: per dataset, the answer of metrics/answer.json copied into models/ship/<dataset> in the layout its
engine's Hugging Face class loads, with serving.json (the settings it was measured with) and a model card."""

from quantpipe.cli import run_stage, stage_args
from quantpipe.config import load_params
from quantpipe.data import read_prepared
from quantpipe.errors import QuantpipeError
from quantpipe.io import artifact_error, atomic_dir, read_json
from quantpipe.kinds import pipeline_models
from quantpipe.shipping import hub_snippet, model_card, serving_settings, ship_model


def main() -> None:
    args = stage_args(
        __doc__, "answer", "metrics", "environment", "prepared", "base", "onnx", "quantized", out="models/ship"
    )
    params = load_params(args.params)
    cfg = params.evaluate
    answers = read_json(args.answer, expect=dict)
    models = pipeline_models(params, args.base, args.onnx, args.quantized)
    environment = read_json(args.environment, expect=dict)
    if not isinstance(environment.get("cpu"), dict):
        raise artifact_error(args.environment, "no `cpu` record")
    with atomic_dir(args.out) as out:
        for dataset, answer in answers.items():
            name = answer.get("ship") if isinstance(answer, dict) else None
            if name not in models:
                raise QuantpipeError(f"{args.answer}: {dataset}.ship: {name!r} is not a model of this params.yaml")
            kind, variant, model_dir = models[name]
            if not model_dir.is_dir():
                raise QuantpipeError(f"{model_dir}: not found (dvc pull {model_dir}, or dvc repro)")
            metrics_file = args.metrics / name / f"{dataset}.json"
            if not metrics_file.is_file():
                raise QuantpipeError(f"{metrics_file}: not found (run the evaluate stage of {name})")
            metrics = read_json(metrics_file, expect=dict)
            labels = read_prepared(args.prepared, dataset, "eval")["label"][: cfg.max_samples]  # as evaluate scores
            majority = float(labels.value_counts(normalize=True).max())
            source = params.data.datasets[dataset]
            settings = serving_settings(
                name,
                dataset,
                kind,
                variant,
                cfg,
                metrics.get("resolved", {}),
                params.base_model.labels,
                source.text_fields,
            )
            snippet = hub_snippet(kind, variant, cfg, f"models/ship/{dataset}")
            card = model_card(
                settings, answer, metrics, majority, params.compare.baseline, environment, source.eval_split, snippet
            )
            ship_model(model_dir, out / dataset, settings, card)
            print(f"{dataset}: {name} -> {args.out / dataset}")


if __name__ == "__main__":
    run_stage(main)
