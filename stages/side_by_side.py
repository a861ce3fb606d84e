"""Stage side_by_side: every model timed in one process, rounds alternating -> metrics/side_by_side.json."""

from quantpipe.cli import run_stage, stage_args
from quantpipe.config import load_params
from quantpipe.data import read_prepared
from quantpipe.inference import Tokenizer, check_max_length
from quantpipe.io import write_json
from quantpipe.kinds import pipeline_models
from quantpipe.kinds.base import skipped_reason
from quantpipe.side_by_side import time_side_by_side


def main() -> None:
    args = stage_args(__doc__, "base", "onnx", "quantized", "prepared", out="metrics/side_by_side.json")
    params = load_params(args.params)
    cfg, sbs = params.evaluate, params.side_by_side
    check_max_length(args.base, cfg.max_length, "evaluate.max_length")
    models = pipeline_models(params, args.base, args.onnx, args.quantized)
    skipped = {name: reason for name, (_, _, path) in models.items() if (reason := skipped_reason(path))}
    models = {name: model for name, model in models.items() if name not in skipped}
    for name, (kind, variant, path) in models.items():
        kind.check_available(name)
        check_max_length(path, variant.length_policy(cfg).max_length, f"variants.{name}.max_length")
    lengths = {name: variant.length_policy(cfg) for name, (_, variant, _) in models.items()}
    classifiers = {name: kind.load(path, variant, cfg) for name, (kind, variant, path) in models.items()}
    tokenizer = Tokenizer(args.base)
    result = {
        "rounds": sbs.rounds,
        "max_samples": sbs.max_samples,
        "slices": sbs.slices,
        "batch_size": cfg.batch_size,
        "threads": cfg.threads,
        "skipped": skipped,
        "datasets": {},
    }
    for dataset in cfg.datasets:
        texts = read_prepared(args.prepared, dataset, "eval")["text"].tolist()[: cfg.max_samples][: sbs.max_samples]
        timed = time_side_by_side(
            classifiers, tokenizer, texts, cfg, sbs.rounds, desc=f"{dataset} rounds", lengths=lengths, slices=sbs.slices
        )
        result["datasets"][dataset] = {
            "examples": len(texts),
            "models": {
                name: {
                    "streams": models[name][1].streams,
                    "length": list(lengths[name]),
                    **{key: t[key] for key in ("samples_per_second", "model_samples_per_second")},
                }
                for name, t in timed.items()
            },
        }
        for name, t in timed.items():
            print(f"{dataset} {name}: samples/s per round " + ", ".join(f"{s:.1f}" for s in t["samples_per_second"]))
    write_json(args.out, result)


if __name__ == "__main__":
    run_stage(main)
