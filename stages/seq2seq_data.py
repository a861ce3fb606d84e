"""Stage seq2seq_data: the (source, target) pairs of the seq2seq task -> data/seq2seq/{train,eval}.parquet."""

from quantpipe.cli import run_stage, stage_args
from quantpipe.config import load_seq2seq_params
from quantpipe.io import atomic_dir
from quantpipe.seq2seq.data import text_pairs


def main() -> None:
    args = stage_args(__doc__, out="data/seq2seq")
    params = load_seq2seq_params(args.params)
    with atomic_dir(args.out) as tmp:
        for role in ("train", "eval"):
            pairs = text_pairs(params, role)
            pairs.to_parquet(tmp / f"{role}.parquet", index=False)
            print(f"seq2seq {role}: {len(pairs)} pairs")


if __name__ == "__main__":
    run_stage(main)
