"""Stage student: one student of params.yaml `students`, cut from the base model and distilled on the teacher's
logits -> models/pytorch/<student>/ (a Hugging Face model directory with the teacher's tokenizer)."""

from quantpipe.cli import run_stage, stage_args
from quantpipe.config import load_params
from quantpipe.distillation import LOGITS_FILE, build_student
from quantpipe.errors import QuantpipeError
from quantpipe.inference import check_max_length
from quantpipe.io import atomic_dir, write_json


def main() -> None:
    args = stage_args(__doc__, "base", "teacher_logits", name="student name in params.yaml `students`")
    params = load_params(args.params)
    if args.name not in params.students:
        raise QuantpipeError(f"students.{args.name}: not in params (known: {sorted(params.students)})")
    cfg = params.students[args.name]
    check_max_length(args.base, params.distillation.max_length, "distillation.max_length")
    with atomic_dir(args.out) as tmp:
        summary = build_student(
            args.name, args.base, args.teacher_logits / LOGITS_FILE, cfg, params.distillation.max_length, tmp
        )
        write_json(tmp / "quantpipe_student.json", summary)
    print(f"{args.name}: {summary}")


if __name__ == "__main__":
    run_stage(main)
