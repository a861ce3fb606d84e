"""Stage seq2seq_compare: every seq2seq model timed side by side in one process, scored against the references
-> reports/seq2seq.md, metrics/seq2seq.json."""

from quantpipe.cli import run_stage, stage_args
from quantpipe.config import load_seq2seq_params
from quantpipe.config.constants import SEQ2SEQ_BASELINE as BASELINE
from quantpipe.config.constants import SEQ2SEQ_FP32
from quantpipe.config.constants import SEQ2SEQ_NO_CACHE as NO_CACHE
from quantpipe.errors import QuantpipeError
from quantpipe.io import artifact_error, read_json, read_parquet, write_json, write_text
from quantpipe.kinds import seq2seq_models
from quantpipe.kinds.base import skipped_reason
from quantpipe.rendering import generation_markdown
from quantpipe.seq2seq.compare import (
    COPY,
    answer,
    copy_baseline,
    quality_by_model,
    ratios_to_baseline,
    summary,
    task_scores,
)
from quantpipe.side_by_side import time_generate_side_by_side


def main() -> None:
    args = stage_args(
        __doc__,
        "s2s_data",
        "s2s_base",
        "s2s_onnx",
        "s2s_quantized",
        "s2s_metrics",
        "environment",
        "s2s_report",
        out="metrics/seq2seq.json",
    )
    params = load_seq2seq_params(args.params)
    cfg = params.seq2seq.evaluate
    models = seq2seq_models(params, args.s2s_base, args.s2s_onnx, args.s2s_quantized)
    skipped = {name: reason for name, (_, _, path) in models.items() if (reason := skipped_reason(path))}
    models = {name: model for name, model in models.items() if name not in skipped}
    pairs = read_parquet(args.s2s_data / "eval.parquet", columns=("source", "target"))
    evals, outputs = {}, {}
    for name in models:
        folder = args.s2s_metrics / name
        if not (folder / "metrics.json").is_file():
            raise QuantpipeError(f"{folder}: no metrics (run the seq2seq_evaluate stage)")
        evals[name] = read_json(folder / "metrics.json", expect=dict)
        outputs[name] = read_json(folder / "outputs.json", expect=dict).get("outputs")
        if not isinstance(outputs[name], list):
            raise artifact_error(folder / "outputs.json", "no list of outputs under `outputs`")
    references = pairs["target"].tolist()
    quality = quality_by_model(references, outputs, BASELINE, cfg.metric, cfg.bootstrap_resamples, cfg.seed)
    task, copy = None, None
    if params.seq2seq.data.pairs == "punctuation":  # source and target share their words: copying is a baseline
        sources = pairs["source"].tolist()
        task = task_scores(outputs, references, sources)
        copy = copy_baseline(sources, references, cfg.metric, cfg.bootstrap_resamples, cfg.seed)
    serving = cfg.serving(params.seq2seq.model.train.max_source_length)
    for name, (kind, _, _) in models.items():
        kind.check_available(name, "seq2seq.variants")
    loaded = {name: kind.load_generate(path, variant, serving) for name, (kind, variant, path) in models.items()}
    texts = pairs["source"].tolist()[: cfg.latency_samples]
    timings = time_generate_side_by_side(loaded, texts, cfg.max_new_tokens, cfg.batch_size, cfg.rounds)
    # the other PyTorch fp32 (one thread) and the engines' defaults that ran here
    references = [*SEQ2SEQ_FP32[1:], *(ref for ref in cfg.references if ref not in skipped)]
    by_reference = {ref: ratios_to_baseline(timings, ref) for ref in references}
    rows = summary(
        evals, quality, ratios_to_baseline(timings, BASELINE), ratios_to_baseline(timings, NO_CACHE), by_reference, task
    )
    environment = read_json(args.environment, expect=dict) if args.environment.is_file() else None
    report = generation_markdown(
        rows, answer(rows, cfg.budget), timings, environment, cfg, len(pairs), references, skipped, copy
    )
    write_text(args.s2s_report, report)
    write_json(args.out, rows | ({COPY: copy} if copy else {}))
    for name, row in rows.items():
        print(f"{name}: {cfg.metric} {row['quality']:.2f}, per-call speed-up {row['call_speedup_median']:.2f}x")


if __name__ == "__main__":
    run_stage(main)
