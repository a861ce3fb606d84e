"""Stage seq2seq_model: the fp32 seq2seq model -> models/seq2seq/base/ (a ready one, or an encoder-decoder
warm-started from the packaged MiniLM and fine-tuned on the train pairs)."""

from quantpipe.cli import run_stage, stage_args
from quantpipe.config import load_seq2seq_params
from quantpipe.io import atomic_dir, read_parquet, write_json
from quantpipe.model_loading import resolve_model_ref
from quantpipe.seq2seq.export import seq2seq_config
from quantpipe.seq2seq.training import finetune_seq2seq, save_seq2seq, warm_start


def main() -> None:
    args = stage_args(__doc__, "s2s_data", out="models/seq2seq/base")
    params = load_seq2seq_params(args.params)
    cfg = params.seq2seq.model
    with atomic_dir(args.out) as tmp:
        if cfg.source == "pretrained":
            from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

            ref = resolve_model_ref(cfg.pretrained, "seq2seq.model.pretrained")
            seq2seq_config(ref, "seq2seq.model.pretrained")
            save_seq2seq(AutoModelForSeq2SeqLM.from_pretrained(ref), AutoTokenizer.from_pretrained(ref), tmp)
            stats = {"source": "pretrained", "model": cfg.pretrained}
        else:
            model, tokenizer = warm_start(
                cfg.encoder, "seq2seq.model.encoder", cfg.train.seed, cfg.train.tie_encoder_decoder
            )
            stats = finetune_seq2seq(
                model, tokenizer, read_parquet(args.s2s_data / "train.parquet", columns=("source", "target")), cfg.train
            )
            save_seq2seq(model, tokenizer, tmp)
        write_json(tmp / "training.json", stats)
    print(f"seq2seq model: {stats}")


if __name__ == "__main__":
    run_stage(main)
