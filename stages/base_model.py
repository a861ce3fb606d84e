"""Stage base_model: the fp32 classifier (pretrained, or fine-tuned on the train split) in models/pytorch/base."""

from quantpipe.base_model import build_base_model
from quantpipe.cli import run_stage, stage_args
from quantpipe.config import load_params
from quantpipe.data import read_prepared
from quantpipe.io import atomic_dir, write_json


def main() -> None:
    args = stage_args(__doc__, "prepared", out="models/pytorch/base")
    params = load_params(args.params)
    cfg = params.base_model
    train = read_prepared(args.prepared, params.data.train_dataset, "train") if cfg.source == "finetune" else None
    with atomic_dir(args.out) as tmp:
        summary = build_base_model(cfg, train, tmp)
        write_json(tmp / "quantpipe_base.json", summary)
    print(summary)


if __name__ == "__main__":
    run_stage(main)
