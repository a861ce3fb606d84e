"""What a variant kind is: typed params, a build step and a runtime. Stages and the report use only this."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np

from quantpipe.config import Params
from quantpipe.config.sections import EvaluateParams, VariantParams
from quantpipe.errors import QuantpipeError
from quantpipe.io import VARIANT_FILE, read_json


class Runtime(Protocol):
    """A loaded model: a batch of tokenized inputs (numpy, int64) in, logits out."""

    input_names: set[str]

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray: ...


@dataclass(frozen=True)
class BuildInputs:
    """What a build step may read: the pipeline's models and data, and the whole params file."""

    params: Params
    base: Path  # the fp32 PyTorch model and tokenizer (models/base)
    onnx: Path  # its fp32 ONNX export (models/onnx)
    calibration: Path  # the calibrate stages' outputs (models/calibration/<name>)
    prepared: Path  # data/prepared

    def train_texts(self):
        from quantpipe.data import read_prepared

        return read_prepared(self.prepared, self.params.data.train_dataset, "train")["text"]


class Kind:
    """One variant kind. Subclasses set `name`, `params`, `weight_files`, `requires`, the capabilities
    (`sensitivity`, `excludable_parts`) and implement `load` (and `build`, unless the kind is a baseline whose
    model another stage makes)."""

    name: ClassVar[str]
    params: ClassVar[type[VariantParams]]
    weight_files: ClassVar[tuple[str, ...]] = ("*.onnx", "*.onnx_data")  # what the model size counts
    requires: ClassVar[tuple[str, ...]] = ()  # optional modules the kind needs (import names)
    extra: ClassVar[str | None] = None  # the quantpipe extra that installs them
    baseline: ClassVar[bool] = False  # a baseline's kind: its model comes from another stage, not from params
    sensitivity: ClassVar[bool] = False  # its graphs can be quantized part by part (the sensitivity stage)
    excludable_parts: ClassVar[bool] = False  # parts of the network can be left in fp32 (the search's exclude_parts)

    def check_available(self, variant_name: str) -> None:
        """One line naming the variant when an optional dependency of the kind is missing."""
        missing = [module for module in self.requires if importlib.util.find_spec(module) is None]
        if missing:
            how = f" (pip install 'quantpipe[{self.extra}]')" if self.extra else ""
            raise QuantpipeError(
                f"variants.{variant_name}.kind: {self.name} needs {', '.join(missing)}, not installed{how}"
            )

    def skip_reason(self, variant: VariantParams, cpu: dict) -> str | None:
        """Why the variant cannot run as asked on this CPU (`quantpipe.environment.cpu_info`), in one line, or
        None. A skipped variant is built as a note of the reason, and reported as skipped, not run otherwise."""
        return None

    def build(self, name: str, variant: VariantParams, inputs: BuildInputs, out_dir: Path) -> dict:
        """Write the model into `out_dir`; return what was resolved at build time (recorded in metrics)."""
        raise QuantpipeError(f"variants.{name}.kind: {self.name} is a baseline; nothing to build")

    def load(self, model_dir: Path, variant: VariantParams, cfg: EvaluateParams) -> Runtime:
        raise NotImplementedError

    def size_bytes(self, model_dir: Path) -> int:
        """Size on disk of the weights."""
        return sum(f.stat().st_size for pattern in self.weight_files for f in Path(model_dir).glob(pattern))


def skipped_reason(model_dir: Path) -> str | None:
    """The reason the quantize stage recorded for skipping the variant built in `model_dir`, or None."""
    path = Path(model_dir) / VARIANT_FILE
    return read_json(path, expect=dict).get("skipped") if path.is_file() else None


def copy_tokenizer(source: Path, out_dir: Path, skip: tuple[str, ...] = ()) -> None:
    """Config and tokenizer files travel with every model directory."""
    import shutil

    for item in Path(source).iterdir():
        if item.is_file() and item.suffix in (".json", ".txt") and item.name not in skip:
            shutil.copy2(item, Path(out_dir) / item.name)
