"""Stage sweep: remove the temporaries (`.<name>.tmp-<pid>`) that runs killed half-way left under the pipeline's
output directories (data, models, metrics, predictions, reports). It runs on every `dvc repro` (always_changed),
so that litter goes even when DVC restores the stage that left it from its run-cache instead of running it; a
temporary whose process is still running is kept."""

from quantpipe.cli import run_stage, stage_args, sweep_outputs


def main() -> None:
    stage_args(__doc__, out=False, params=False)
    print(f"sweep: {len(sweep_outputs())} temporaries removed")


if __name__ == "__main__":
    run_stage(main)
