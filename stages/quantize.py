"""Stage quantize: one variant of params.yaml `variants`, built by its kind -> models/quantized/<variant>/."""

from quantpipe.cli import run_stage, stage_args
from quantpipe.config import load_params
from quantpipe.config.registry import get_kind
from quantpipe.environment import cpu_info
from quantpipe.errors import QuantpipeError
from quantpipe.io import VARIANT_FILE, atomic_dir, write_json
from quantpipe.kinds.base import BuildInputs


def main() -> None:
    args = stage_args(__doc__, "base", "onnx", "calibration", "prepared", name="variant name in params.yaml `variants`")
    params = load_params(args.params)
    if args.name not in params.variants:
        raise QuantpipeError(f"variants.{args.name}: not in params (known: {sorted(params.variants)})")
    variant = params.variants[args.name]
    kind = get_kind(variant.kind)
    kind.check_available(args.name)
    inputs = BuildInputs(params, args.base, args.onnx, args.calibration, args.prepared)
    reason = kind.skip_reason(variant, cpu_info())
    if reason:
        with atomic_dir(args.out) as tmp:
            write_json(tmp / VARIANT_FILE, {"kind": kind.name, "params": variant.model_dump(), "skipped": reason})
        print(f"{args.name}: skipped on this CPU: {reason}")
        return
    with atomic_dir(args.out) as tmp:
        resolved = kind.build(args.name, variant, inputs, tmp)
        write_json(tmp / VARIANT_FILE, {"kind": kind.name, "params": variant.model_dump(), "resolved": resolved})
        size = kind.size_bytes(tmp)
    print(f"{args.name}: {kind.name} {size / 1e6:.1f} MB" + "".join(f", {k} {v}" for k, v in resolved.items()))


if __name__ == "__main__":
    run_stage(main)
