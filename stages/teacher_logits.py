"""Stage teacher_logits: the base model's logits on the distillation texts (a sample of the train split), computed
once for every student -> models/teacher_logits/logits.parquet."""

from quantpipe.cli import run_stage, stage_args
from quantpipe.config import load_params
from quantpipe.data import read_prepared
from quantpipe.distillation import LOGITS_FILE, distillation_texts, teacher_logits
from quantpipe.inference import check_max_length
from quantpipe.io import atomic_dir


def main() -> None:
    args = stage_args(__doc__, "base", "prepared", out="models/teacher_logits")
    params = load_params(args.params)
    cfg = params.distillation
    check_max_length(args.base, cfg.max_length, "distillation.max_length")
    rows = distillation_texts(read_prepared(args.prepared, params.data.train_dataset, "train"), cfg)
    table = teacher_logits(args.base, rows, cfg)
    with atomic_dir(args.out) as tmp:
        table.to_parquet(tmp / LOGITS_FILE, index=False)
    agree = (table.filter(like="logit_").to_numpy().argmax(axis=1) == table["label"].to_numpy()).mean()
    print(
        f"teacher logits on {len(table)} texts (max_length {cfg.max_length}); the teacher agrees with {agree:.3f} of the labels"
    )


if __name__ == "__main__":
    run_stage(main)
