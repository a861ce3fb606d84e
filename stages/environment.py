"""Stage environment: CPU model and flags, core count and library versions -> metrics/environment.json.

The stage runs on every `dvc repro` (always_changed); the file changes only when the CPU or a library
version does, and only then do the stages that measure models (evaluate, side_by_side, sensitivity) re-run.
"""

from quantpipe.cli import run_stage, stage_args
from quantpipe.environment import environment
from quantpipe.io import write_json


def main() -> None:
    args = stage_args(__doc__, out="metrics/environment.json", params=False)
    env = environment()
    write_json(args.out, env)
    print(env)


if __name__ == "__main__":
    run_stage(main)
