"""Kind `pytorch`: the fine-tuned PyTorch model (baseline `pytorch_fp32`), run in inference mode; as a variant,
the same weights under bf16 autocast (`torch.autocast("cpu", dtype=torch.bfloat16)`, the one-line recipe for
CPUs with native bf16) and/or compiled by `torch.compile` (Inductor)."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from quantpipe.config.sections import EvaluateParams, VariantParams
from quantpipe.config.seq2seq import GenerateServing, GenerateVariantParams
from quantpipe.environment import has_bf16
from quantpipe.errors import QuantpipeError
from quantpipe.inference import Replicas, threads_per_stream
from quantpipe.io import check_model_dir, loading
from quantpipe.kinds.base import BuildInputs, Kind, copy_files, copy_tokenizer

WEIGHT_FILES = ("*.safetensors", "*.bin")


class TorchClassifier:
    """A PyTorch sequence classifier in inference mode; `model` defaults to the one saved in `model_dir`.
    `autocast` bf16 runs it under CPU autocast; `compile` wraps it in `torch.compile(dynamic=True)`."""

    def __init__(self, model_dir: Path, threads: int, model=None, autocast: str = "none", compile: bool = False):
        import torch

        if not (Path(model_dir) / "config.json").is_file():
            raise QuantpipeError(f"{model_dir}: PyTorch model not found")
        self.torch, self.threads = torch, threads
        if model is None:
            from transformers import AutoModelForSequenceClassification

            check_model_dir(model_dir)
            with loading(model_dir, "PyTorch model directory", (OSError, ValueError)):
                model = AutoModelForSequenceClassification.from_pretrained(model_dir)
        self.model = model.eval()
        self.input_names = set(self.model.forward.__code__.co_varnames) & {
            "input_ids",
            "attention_mask",
            "token_type_ids",
        }
        self.autocast = autocast
        self.forward = torch.compile(self.model, dynamic=True) if compile else self.model

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        autocast = (
            self.torch.autocast("cpu", dtype=self.torch.bfloat16)
            if self.autocast == "bf16"
            else contextlib.nullcontext()
        )
        if self.torch.get_num_threads() != self.threads:  # per calling thread (OpenMP): other models keep theirs
            self.torch.set_num_threads(self.threads)
        with self.torch.inference_mode(), autocast:
            inputs = {k: self.torch.from_numpy(v) for k, v in batch.items() if k in self.input_names}
            return self.forward(**inputs).logits.float().numpy()


def torch_runtime(classifier: TorchClassifier, streams: int) -> TorchClassifier | Replicas:
    """`classifier` alone, or called from `streams` threads at once (a model in inference mode is thread-safe),
    each with its share of the threads."""
    if streams == 1:
        return classifier
    classifier.threads = threads_per_stream(classifier.threads, streams)
    return Replicas([classifier] * streams)


class PytorchParams(VariantParams):
    """The fine-tuned PyTorch model (the base_model stage trains it), as it is or under bf16 autocast."""

    kind: Literal["pytorch"] = Field(description="`pytorch`: the fine-tuned model, run by PyTorch")
    autocast: Literal["none", "bf16"] = Field(
        "none",
        description="`bf16`: run under `torch.autocast('cpu', dtype=torch.bfloat16)` (skipped, with the reason "
        "in the report, where the CPU has neither AVX512_BF16 nor AMX-BF16); `none`: fp32",
    )
    compile: bool = Field(False, description="wrap the model in `torch.compile(dynamic=True)` (Inductor)")


class PytorchGenerateParams(GenerateVariantParams):
    """The fp32 seq2seq model generating with transformers' greedy `generate`, as it is (baseline `pytorch_fp32`)
    or under autocast, as a PyTorch user turns bf16 on."""

    kind: Literal["pytorch"] = Field(description="`pytorch`: the fp32 model, run by PyTorch")
    autocast: Literal["none", "bf16"] = Field(
        "none", description="`bf16`: `torch.autocast('cpu', dtype=torch.bfloat16)` around generate; `none`: fp32"
    )
    use_cache: bool = Field(
        True, description="generate with the decoder's key/value cache (false: the prefix recomputed at every step)"
    )


class PytorchKind(Kind):
    name = "pytorch"
    params = PytorchParams
    generate_params = PytorchGenerateParams
    weight_files = WEIGHT_FILES
    engine = "pytorch"
    hub_class = "transformers.AutoModelForSequenceClassification"

    def skip_reason(self, variant: PytorchParams | PytorchGenerateParams, cpu: dict) -> str | None:
        if variant.autocast == "bf16" and not has_bf16(cpu):
            return "bf16 autocast: this CPU has neither AVX512_BF16 nor AMX-BF16 (bf16 would be emulated)"
        return None

    def build(self, name: str, variant: PytorchParams, inputs: BuildInputs, out_dir: Path) -> dict:
        """The fine-tuned weights as they are (autocast and compile act at run time); one batch is run here so
        that a model torch.compile cannot compile fails now, in one line."""
        for pattern in WEIGHT_FILES:
            for file in Path(inputs.base).glob(pattern):
                shutil.copy2(file, Path(out_dir) / file.name)
        copy_tokenizer(inputs.base, out_dir)
        if variant.compile:
            from quantpipe.inference import Tokenizer, predict

            classifier = self.load(out_dir, variant, inputs.params.evaluate)
            try:
                predict(classifier, Tokenizer(out_dir), ["a first text", "and a second one"], 2, 16)
            except (RuntimeError, OSError) as exc:  # Dynamo/Inductor errors (RuntimeErrors), a missing compiler
                first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
                raise QuantpipeError(f"variants.{name}.compile: torch.compile failed: {first}") from None
        return {"autocast": variant.autocast, "compile": variant.compile}

    def load(self, model_dir: Path, variant: PytorchParams, cfg: EvaluateParams) -> TorchClassifier | Replicas:
        classifier = TorchClassifier(
            model_dir, variant.runtime_threads(cfg), autocast=variant.autocast, compile=variant.compile
        )
        return torch_runtime(classifier, variant.streams)

    def precision(self, variant: PytorchParams, resolved: dict) -> str:
        return "bf16 autocast (fp32 weights)" if variant.autocast == "bf16" else "fp32"

    def hub_loading(self, variant: PytorchParams, cfg: EvaluateParams) -> list[str]:
        lines = [
            "import torch",
            "from transformers import AutoModelForSequenceClassification",
            "",
            f"torch.set_num_threads({threads_per_stream(variant.runtime_threads(cfg), variant.streams)})",
        ]
        if variant.streams > 1:
            lines.append(f"# measured as {variant.streams} callers at once, each on its share of the threads")
        model = "AutoModelForSequenceClassification.from_pretrained(path).eval()"
        if variant.compile:
            model = f"torch.compile({model}, dynamic=True)"
        return [*lines, f"model = {model}"]

    def hub_call(self, variant: PytorchParams) -> list[str]:
        if variant.autocast == "bf16":
            return [
                'with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):',
                "    logits = model(**inputs).logits.float()",
            ]
        return ["with torch.inference_mode():", "    logits = model(**inputs).logits"]

    def build_generate(
        self, name: str, variant: PytorchGenerateParams, base_dir: Path, onnx_dir: Path, out_dir: Path
    ) -> dict:
        """The fp32 model's files as they are (autocast acts at run time)."""
        copy_files(base_dir, out_dir, lambda item: item.name != "training.json")
        return {}

    def load_generate(self, model_dir: Path, variant: PytorchGenerateParams, serving: GenerateServing):
        from quantpipe.seq2seq.runtime import TorchSeq2seq

        threads = variant.served_by(serving.threads)["threads"]
        return TorchSeq2seq(
            model_dir, threads, variant.use_cache, serving.max_length, variant.autocast, serving.keep_source_words
        )


KIND = PytorchKind()
