"""The machine and library versions every measurement depends on."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path

from quantpipe.errors import QuantpipeError
from quantpipe.io import read_json, write_json

CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
PACKAGES = (
    "onnxruntime",
    "onnx",
    "torch",
    "transformers",
    "optimum",
    "optimum-onnx",
    "openvino",
    "nncf",
    "datasets",
    "dvc",
)


def cpu_info(cpuinfo: Path | None = None) -> dict:
    """CPU model, architecture, core count and the tracked flags; `QUANTPIPE_CPUINFO` names another file to
    read than /proc/cpuinfo (tests fake a different CPU with it)."""
    cpuinfo = Path(cpuinfo or os.environ.get("QUANTPIPE_CPUINFO", "/proc/cpuinfo"))
    model, flags, numbers = platform.processor() or platform.machine(), set(), {}
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
            elif key.strip() in ("cpu family", "model"):
                numbers.setdefault(key.strip(), value.strip())
    return {
        "model": model,
        # x86 family/model numbers: a VM's model name ("AMD EPYC") hides the generation (23/1: Zen 1, Naples)
        **({"family_model": f"{numbers['cpu family']}/{numbers['model']}"} if len(numbers) == 2 else {}),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "flags": {flag: flag in flags for flag in CPU_FLAGS},
    }


def has_bf16(cpu: dict) -> bool:
    """Whether the CPU of `cpu_info()` computes bf16 natively (AVX512_BF16 or AMX-BF16)."""
    return bool(cpu["flags"].get("avx512_bf16") or cpu["flags"].get("amx_bf16"))


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def environment() -> dict:
    return {"cpu": cpu_info(), "versions": versions()}


def record(path: Path, env: dict) -> bool:
    """Write `env` to `path` (atomically) unless the file already holds it, and say whether it wrote: a second
    run on the same machine, e.g. a concurrent `dvc repro`, leaves the file the first one reads untouched."""
    try:
        if Path(path).is_file() and read_json(path) == env:
            return False
    except QuantpipeError:  # not valid JSON (a killed write of an older version): written anew
        pass
    write_json(path, env)
    return True
