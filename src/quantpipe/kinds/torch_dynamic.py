"""Kind `torch_dynamic`: PyTorch's own dynamic int8 (`torch.ao.quantization.quantize_dynamic` of every
`nn.Linear`, qint8 weights, activations quantized per batch), the classic BERT recipe."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from quantpipe.errors import QuantpipeError
from quantpipe.kinds.base import BuildInputs, Kind, copy_tokenizer
from quantpipe.kinds.pytorch import TorchClassifier
from quantpipe.params import EvaluateParams, VariantParams

WEIGHTS_FILE = "model.pt"


class TorchDynamicParams(VariantParams):
    """PyTorch dynamic int8 of the fine-tuned model's linear layers."""

    kind: Literal["torch_dynamic"] = Field(description="`torch_dynamic`: PyTorch `quantize_dynamic`, run by PyTorch")
    engine: Literal["auto", "x86", "fbgemm", "qnnpack"] = Field(
        "auto",
        description="`torch.backends.quantized.engine` (int8 kernels); `auto`: x86 where this torch has it, "
        "else fbgemm (qnnpack on arm64)",
    )


def quantized_engine(engine: str) -> str:
    """The engine to use: `auto` resolved among this torch's supported engines."""
    import torch

    supported = torch.backends.quantized.supported_engines
    if engine == "auto":
        engine = next((e for e in ("x86", "fbgemm", "qnnpack") if e in supported), supported[0])
    if engine not in supported:
        raise QuantpipeError(f"torch_dynamic engine {engine!r}: not supported by this torch (supported: {supported})")
    return engine


def quantize_linear(model, engine: str):
    """`model` with every `nn.Linear` replaced by its dynamic int8 version, for `engine`'s kernels."""
    import torch

    torch.backends.quantized.engine = engine
    return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


class TorchDynamicKind(Kind):
    name = "torch_dynamic"
    params = TorchDynamicParams
    weight_files = (WEIGHTS_FILE,)

    def build(self, name: str, variant: TorchDynamicParams, inputs: BuildInputs, out_dir: Path) -> dict:
        import torch
        from transformers import AutoModelForSequenceClassification

        engine = quantized_engine(variant.engine)
        model = AutoModelForSequenceClassification.from_pretrained(inputs.base).eval()
        torch.save(quantize_linear(model, engine).state_dict(), Path(out_dir) / WEIGHTS_FILE)
        copy_tokenizer(inputs.base, out_dir)
        return {"engine": engine}

    def load(self, model_dir: Path, variant: TorchDynamicParams, cfg: EvaluateParams) -> TorchClassifier:
        import torch
        from transformers import AutoConfig, AutoModelForSequenceClassification

        weights = Path(model_dir) / WEIGHTS_FILE
        if not weights.is_file():
            raise QuantpipeError(f"{weights}: torch_dynamic weights not found (run the quantize stage)")
        model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(model_dir))
        model = quantize_linear(model.eval(), quantized_engine(variant.engine))
        model.load_state_dict(torch.load(weights, weights_only=False))
        return TorchClassifier(model_dir, cfg.threads, model=model)


KIND = TorchDynamicKind()
