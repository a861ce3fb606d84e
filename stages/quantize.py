"""Stage quantize: one variant of params.yaml `variants`, built by its kind from the model it names (the base
model or a student) -> models/quantized/<variant>/."""

import tempfile
from pathlib import Path

from quantpipe.cli import run_stage, stage_args
from quantpipe.config import load_params
from quantpipe.config.registry import get_kind
from quantpipe.environment import cpu_info
from quantpipe.errors import QuantpipeError
from quantpipe.inference import check_max_length
from quantpipe.io import VARIANT_FILE, atomic_dir, write_json
from quantpipe.kinds import build_inputs, model_dirs
from quantpipe.kinds.base import BuildInputs


def main() -> None:
    args = stage_args(__doc__, "base", "onnx", "calibration", "prepared", name="variant name in params.yaml `variants`")
    params = load_params(args.params)
    if args.name not in params.variants:
        raise QuantpipeError(f"variants.{args.name}: not in params (known: {sorted(params.variants)})")
    variant = params.variants[args.name]
    kind = get_kind(variant.kind)
    kind.check_available(args.name)
    pipeline = BuildInputs(params, args.base, args.onnx, args.calibration, args.prepared)
    if variant.max_length:  # its own length (evaluate.max_length is checked where it is read)
        check_max_length(
            model_dirs(variant.model, args.base, args.onnx)[0], variant.max_length, f"variants.{args.name}.max_length"
        )
    reason = kind.skip_reason(variant, cpu_info())
    if reason:
        with atomic_dir(args.out) as tmp:
            write_json(tmp / VARIANT_FILE, {"kind": kind.name, "params": variant.model_dump(), "skipped": reason})
        print(f"{args.name}: skipped on this CPU: {reason}")
        return
    with atomic_dir(args.out) as tmp, tempfile.TemporaryDirectory(prefix="quantpipe-calibration-") as scratch:
        resolved = kind.build(args.name, variant, build_inputs(params, kind, variant, pipeline, Path(scratch)), tmp)
        write_json(tmp / VARIANT_FILE, {"kind": kind.name, "params": variant.model_dump(), "resolved": resolved})
        size = kind.size_bytes(tmp)
    print(f"{args.name}: {kind.name} {size / 1e6:.1f} MB" + "".join(f", {k} {v}" for k, v in resolved.items()))


if __name__ == "__main__":
    run_stage(main)
