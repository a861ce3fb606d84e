"""Kind `pytorch`: the fine-tuned fp32 PyTorch model (baseline `pytorch_fp32`), run in inference mode."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from quantpipe.errors import QuantpipeError
from quantpipe.kinds.base import Kind
from quantpipe.params import EvaluateParams, VariantParams


class TorchClassifier:
    """A PyTorch sequence classifier in inference mode; `model` defaults to the one saved in `model_dir`."""

    def __init__(self, model_dir: Path, threads: int, model=None):
        import torch

        if not (Path(model_dir) / "config.json").is_file():
            raise QuantpipeError(f"{model_dir}: PyTorch model not found")
        torch.set_num_threads(threads)
        self.torch = torch
        if model is None:
            from transformers import AutoModelForSequenceClassification

            model = AutoModelForSequenceClassification.from_pretrained(model_dir)
        self.model = model.eval()
        self.input_names = set(self.model.forward.__code__.co_varnames) & {
            "input_ids",
            "attention_mask",
            "token_type_ids",
        }

    def __call__(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        with self.torch.inference_mode():
            inputs = {k: self.torch.from_numpy(v) for k, v in batch.items() if k in self.input_names}
            return self.model(**inputs).logits.numpy()


class PytorchParams(VariantParams):
    """The fine-tuned fp32 PyTorch model (the base_model stage builds it)."""

    kind: Literal["pytorch"] = Field(description="`pytorch`: the fp32 model, run by PyTorch")


class PytorchKind(Kind):
    name = "pytorch"
    baseline = True
    params = PytorchParams
    weight_files = ("*.safetensors", "*.bin")

    def load(self, model_dir: Path, variant: VariantParams, cfg: EvaluateParams) -> TorchClassifier:
        return TorchClassifier(model_dir, cfg.threads)


KIND = PytorchKind()
