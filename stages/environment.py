"""Stage environment: CPU model and flags, core count and library versions -> metrics/environment.json.

Every evaluate stage depends on this file, so a library upgrade (pyproject.toml) re-runs the measurements.
"""

import argparse

from quantpipe.cli import run_stage
from quantpipe.environment import environment
from quantpipe.io import write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="metrics/environment.json")
    args = parser.parse_args()
    env = environment()
    write_json(args.out, env)
    print(env)


if __name__ == "__main__":
    run_stage(main)
