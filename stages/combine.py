"""Stage combine: build the single `text` column and integer `label` for every split."""

from quantpipe.cli import run_stage, stage_args
from quantpipe.config import load_params
from quantpipe.data import combine, raw_path
from quantpipe.errors import QuantpipeError
from quantpipe.io import atomic_dir, read_parquet


def main() -> None:
    args = stage_args(__doc__, "raw", out="data/prepared")
    params = load_params(args.params)
    num_labels = len(params.base_model.labels)
    with atomic_dir(args.out) as tmp:
        for name, spec in params.data.datasets.items():
            for role, split in spec.splits().items():
                source = raw_path(args.raw, name, role)
                if not source.is_file():
                    raise QuantpipeError(f"{source}: raw split not found (run the download stage)")
                out = combine(read_parquet(source), spec, name, num_labels, params.data.empty_texts, split, source)
                path = raw_path(tmp, name, role)
                path.parent.mkdir(parents=True, exist_ok=True)
                out.to_parquet(path, index=False)
                print(f"{name}/{role}: {len(out)} texts, labels {out['label'].value_counts().to_dict()}")


if __name__ == "__main__":
    run_stage(main)
