"""Stage download: load every configured dataset split into data/raw/<dataset>/<role>.parquet."""

import argparse

from quantpipe.cli import run_stage
from quantpipe.data import load_split, raw_path
from quantpipe.io import atomic_dir
from quantpipe.params import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="data/raw")
    args = parser.parse_args()
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
