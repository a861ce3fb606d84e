"""Stage seq2seq_evaluate: one seq2seq model served in a fresh process (memory, one-call increment, per-call
latency, outputs of the eval texts) -> metrics/seq2seq/eval/<model>/{metrics,outputs}.json."""

from quantpipe.cli import run_stage, stage_args
from quantpipe.config import load_seq2seq_params
from quantpipe.errors import QuantpipeError
from quantpipe.io import atomic_dir, read_parquet, write_json
from quantpipe.kinds import seq2seq_models
from quantpipe.kinds.base import skipped_reason
from quantpipe.serving import serve_generate_in_child
from quantpipe.statistics import latency_percentiles


def main() -> None:
    args = stage_args(__doc__, "s2s_data", "s2s_base", "s2s_onnx", "s2s_quantized", name="a seq2seq model name")
    params = load_seq2seq_params(args.params)
    models = seq2seq_models(params, args.s2s_base, args.s2s_onnx, args.s2s_quantized)
    if args.name not in models:
        raise QuantpipeError(f"seq2seq: no model '{args.name}' (known: {sorted(models)})")
    pairs = read_parquet(args.s2s_data / "eval.parquet", columns=("source",))
    kind, variant, path = models[args.name]
    reason = skipped_reason(path)
    if reason:  # the quantize stage skipped it on this CPU: its metrics say why, compare leaves it out
        with atomic_dir(args.out) as tmp:
            write_json(tmp / "metrics.json", {"model": args.name, "skipped": reason})
        print(f"{args.name}: skipped on this CPU: {reason}")
        return
    kind.check_available(args.name, "seq2seq.variants")
    max_length = params.seq2seq.model.train.max_source_length
    served = serve_generate_in_child(kind, variant, path, pairs["source"].tolist(), params.seq2seq.evaluate, max_length)
    served["latency"] = latency_percentiles(served["latencies_s"])
    outputs = {"outputs": served.pop("outputs"), "new_tokens": served.pop("new_tokens")}
    with atomic_dir(args.out) as tmp:
        write_json(tmp / "metrics.json", {"model": args.name, "examples": len(pairs), **served})
        write_json(tmp / "outputs.json", outputs)
    memory, latency = served["memory"], served["latency"]
    print(
        f"{args.name}: p50 {latency['p50_ms']:.1f} ms per call, RSS after load {memory['rss_after_load_mb']:.0f} MB, "
        f"peak {memory['peak_rss_mb']:.0f} MB, one call +{memory['one_call_increment_mb']:.1f} MB"
    )


if __name__ == "__main__":
    run_stage(main)
