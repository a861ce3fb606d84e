"""What a variant kind is: the tasks it serves and, for each, typed params, a build step and a runtime. Stages
and the reports use only this."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np

from quantpipe.config import Params
from quantpipe.config.base import Section
from quantpipe.config.registry import CLASSIFY, GENERATE
from quantpipe.config.sections import EvaluateParams, VariantParams
from quantpipe.config.seq2seq import GenerateServing, GenerateVariantParams
from quantpipe.errors import QuantpipeError
from quantpipe.io import VARIANT_FILE, read_json


class Runtime(Protocol):
    """A loaded model: a batch of tokenized inputs (numpy, int64) in, logits out."""

    input_names: set[str]

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray: ...


class Generator(Protocol):
    """A loaded seq2seq model: texts in, (decoded texts, token id sequences) out, greedy, `max_new_tokens` new
    tokens at most (exactly that many with `fixed_length`); `generate_batches` answers several batches, in order."""

    eos: int | list[int] | None

    def lengths(self, texts: list[str]) -> list[int]: ...

    def generate(self, texts: list[str], max_new_tokens: int, fixed_length: bool = False) -> tuple: ...

    def generate_batches(self, batches: list[list[str]], max_new_tokens: int, fixed_length: bool = False) -> list: ...


@dataclass(frozen=True)
class BuildInputs:
    """What a build step may read: the pipeline's models and data, and the whole params file."""

    params: Params
    base: Path  # the fp32 PyTorch model and tokenizer (models/pytorch/base)
    onnx: Path  # its fp32 ONNX export (models/onnx/base)
    calibration: Path  # the calibrate stages' outputs (models/calibration/<name>)
    prepared: Path  # data/prepared

    def train_texts(self):
        from quantpipe.data import read_prepared

        return read_prepared(self.prepared, self.params.data.train_dataset, "train")["text"]


class Kind:
    """One variant kind. Subclasses set `name`, `params`, `weight_files`, `requires`, the capabilities
    (`sensitivity`, `excludable_parts`) and implement `load` (and `build`, unless the kind is a baseline whose
    model another stage makes). A kind that serves generation too sets `generate_params` and implements
    `load_generate` (and `build_generate`)."""

    name: ClassVar[str]
    params: ClassVar[type[VariantParams]]  # its keys as a classification variant (`variants.<name>`)
    generate_params: ClassVar[type[GenerateVariantParams] | None] = None  # as a seq2seq variant, if it serves one
    weight_files: ClassVar[tuple[str, ...]] = ("*.onnx", "*.onnx_data")  # what the model size counts
    requires: ClassVar[tuple[str, ...]] = ()  # optional modules the kind needs (import names)
    extra: ClassVar[str | None] = None  # the quantpipe extra that installs them
    baseline: ClassVar[bool] = False  # a baseline's kind: its model comes from another stage, not from params
    sensitivity: ClassVar[bool] = False  # its graphs can be quantized part by part (the sensitivity stage)
    calibrated: ClassVar[bool] = False  # its build reads activation ranges (and their graph) of its `calibration`
    excludable_parts: ClassVar[bool] = False  # parts of the network can be left in fp32 (the search's exclude_parts)
    engine: ClassVar[str] = "onnxruntime"  # the runtime that serves its models: onnxruntime | openvino | pytorch
    hub_class: ClassVar[str | None] = None  # the Hugging Face class that loads its directory ("package.Class")

    @property
    def tasks(self) -> dict[str, type[Section]]:
        """The tasks the kind serves -> its params for each."""
        return {CLASSIFY: self.params} | ({GENERATE: self.generate_params} if self.generate_params else {})

    def check_available(self, variant_name: str, section: str = "variants") -> None:
        """One line naming the variant (`<section>.<name>`) when an optional dependency of the kind is missing."""
        missing = [module for module in self.requires if importlib.util.find_spec(module) is None]
        if missing:
            how = f" (pip install 'quantpipe[{self.extra}]')" if self.extra else ""
            raise QuantpipeError(
                f"{section}.{variant_name}.kind: {self.name} needs {', '.join(missing)}, not installed{how}"
            )

    def skip_reason(self, variant: VariantParams | GenerateVariantParams, cpu: dict) -> str | None:
        """Why the variant (of either task) cannot run as asked on this CPU (`quantpipe.environment.cpu_info`), in
        one line, or None. A skipped variant is built as a note of the reason, and reported as skipped, not run
        otherwise."""
        return None

    def build(self, name: str, variant: VariantParams, inputs: BuildInputs, out_dir: Path) -> dict:
        """Write the model into `out_dir`; return what was resolved at build time (recorded in metrics)."""
        raise QuantpipeError(f"variants.{name}.kind: {self.name} is a baseline; nothing to build")

    def load(self, model_dir: Path, variant: VariantParams, cfg: EvaluateParams) -> Runtime:
        raise NotImplementedError

    def build_generate(
        self, name: str, variant: GenerateVariantParams, base_dir: Path, onnx_dir: Path, out_dir: Path
    ) -> dict:
        """Write the seq2seq variant into `out_dir` from the fp32 model (`base_dir`) and its export (`onnx_dir`);
        return what was resolved at build time."""
        raise QuantpipeError(f"seq2seq.variants.{name}.kind: {self.name} is a baseline; nothing to build")

    def load_generate(self, model_dir: Path, variant: GenerateVariantParams, serving: GenerateServing) -> Generator:
        """The seq2seq model of `model_dir`, served as `serving` says (the variant's own threads first)."""
        raise QuantpipeError(f"{model_dir}: kind {self.name} does not serve generation")

    def precision(self, variant: VariantParams, resolved: dict) -> str:
        """What the model computes in, as it was measured (`resolved`: what its build recorded)."""
        return "fp32"

    def hub_loading(self, variant: VariantParams, cfg: EvaluateParams) -> list[str]:
        """Python lines that load a shipped directory (the variable `path`) into `model` with `hub_class`, set
        as the measurement served it (threads, streams, precision); none when no Hugging Face class loads it."""
        return []

    def hub_call(self, variant: VariantParams) -> list[str]:
        """Python lines that turn `inputs` (a tokenizer's tensors) into `logits` with the loaded `model`."""
        return ["logits = model(**inputs).logits"]

    def size_bytes(self, model_dir: Path) -> int:
        """Size on disk of the weights."""
        return sum(f.stat().st_size for pattern in self.weight_files for f in Path(model_dir).glob(pattern))


def skipped_reason(model_dir: Path) -> str | None:
    """The reason the quantize stage recorded for skipping the variant built in `model_dir`, or None."""
    path = Path(model_dir) / VARIANT_FILE
    return read_json(path, expect=dict).get("skipped") if path.is_file() else None


def copy_files(source: Path, out_dir: Path, keep: Callable[[Path], bool]) -> None:
    """The files of `source` that `keep` accepts (config, generation config, tokenizer) copied into `out_dir`."""
    import shutil

    for item in Path(source).iterdir():
        if item.is_file() and keep(item):
            shutil.copy2(item, Path(out_dir) / item.name)


def copy_tokenizer(source: Path, out_dir: Path, skip: tuple[str, ...] = ()) -> None:
    """Config and tokenizer files travel with every model directory."""
    copy_files(source, out_dir, lambda item: item.suffix in (".json", ".txt") and item.name not in skip)
