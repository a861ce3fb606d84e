"""Stage environment: CPU model and flags, core count and library versions -> metrics/environment.json.

The stage runs on every `dvc repro` (always_changed); the file changes only when the CPU or a library
version does, and only then do the stages that measure models (evaluate, side_by_side, sensitivity) re-run.
It is written only then (dvc.yaml keeps it with `persist: true`): a second `dvc repro` started beside a running
one, which DVC refuses after this stage, leaves the file the first run reads as it was.
"""

from quantpipe.cli import run_stage, stage_args
from quantpipe.environment import environment, record


def main() -> None:
    args = stage_args(__doc__, out="metrics/environment.json", params=False)
    env = environment()
    print(env if record(args.out, env) else f"{args.out}: unchanged")


if __name__ == "__main__":
    run_stage(main)
