"""Stage download: load every configured dataset split into data/raw/<dataset>/<role>.parquet."""

from quantpipe.cli import run_stage, stage_args
from quantpipe.config import load_params
from quantpipe.data import load_split, raw_path
from quantpipe.io import atomic_dir


def main() -> None:
    args = stage_args(__doc__, out="data/raw")
    data = load_params(args.params).data
    with atomic_dir(args.out) as tmp:
        for name, spec in data.datasets.items():
            for role, split in spec.splits().items():
                frame = load_split(name, spec, split)
                path = raw_path(tmp, name, role)
                path.parent.mkdir(parents=True, exist_ok=True)
                frame.to_parquet(path, index=False)
                print(f"{name}/{role}: {len(frame)} rows from split '{split}'")


if __name__ == "__main__":
    run_stage(main)
