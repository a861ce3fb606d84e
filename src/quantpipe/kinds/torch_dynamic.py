"""Kind `torch_dynamic`: PyTorch dynamic int8 of every `nn.Linear` (int8 weights, activations quantized per batch),
the classic BERT recipe, through one of two APIs: `torch.ao.quantization.quantize_dynamic` (deprecated in torch,
slated for removal) or its maintained successor, torchao's `quantize_` with `Int8DynamicActivationInt8WeightConfig`.

Both save the quantized state dict, loaded back with `torch.load(weights_only=True)`: only tensors and the
classes torchao allowlists for its own tensor subclasses (`torch.serialization.add_safe_globals`, done when
torchao is imported) can come out of the file, no code."""

from __future__ import annotations

import contextlib
import logging
import pickle
import re
import warnings
from pathlib import Path
from typing import Literal

from pydantic import Field

from quantpipe.config.sections import EvaluateParams, VariantParams
from quantpipe.errors import QuantpipeError
from quantpipe.inference import Replicas
from quantpipe.io import artifact_error, check_model_dir, loading
from quantpipe.kinds.base import BuildInputs, Kind, copy_tokenizer
from quantpipe.kinds.pytorch import TorchClassifier, torch_runtime

WEIGHTS_FILE = "model.pt"
# what torch prints for the deprecated API's every use (its removal: pytorch PR #153892); nothing to act on here
DEPRECATIONS = (
    (DeprecationWarning, r"torch\.ao\.quantization is deprecated"),
    (UserWarning, r"torch\.quantize_per_tensor, torch\.quantize_per_channel"),
    (UserWarning, r"TypedStorage is deprecated"),  # torch.load of the qint8 weights
)


class TorchDynamicParams(VariantParams):
    """PyTorch dynamic int8 of the fine-tuned model's linear layers."""

    kind: Literal["torch_dynamic"] = Field(description="`torch_dynamic`: PyTorch dynamic int8, run by PyTorch")
    engine: Literal["auto", "x86", "fbgemm", "qnnpack"] = Field(
        "auto",
        description="`torch.backends.quantized.engine` (int8 kernels) of `api: ao_quantization`; `auto`: x86 where "
        "this torch has it, else fbgemm (qnnpack on arm64)",
    )
    api: Literal["ao_quantization", "torchao"] = Field(
        "ao_quantization",
        description="`ao_quantization`: `torch.ao.quantization.quantize_dynamic` (qint8 weights per tensor; "
        "deprecated in torch, its warnings silenced); `torchao`: torchao's `quantize_` with "
        "`Int8DynamicActivationInt8WeightConfig` (per-channel weights, per-token activations; reduced int8 range "
        "on a CPU without VNNI), run eagerly (its speed against `quantize_dynamic`: docs/results.md)",
    )


@contextlib.contextmanager
def quiet_deprecations():
    """The old API's deprecation warnings silenced (only those)."""
    with warnings.catch_warnings():
        for category, message in DEPRECATIONS:
            warnings.filterwarnings("ignore", message=message, category=category)
        yield


def import_torchao(variant_name: str = "<name>"):
    """`torchao.quantization`, its import-time log lines (CUDA extensions it cannot load on a CPU wheel, enum
    registrations torch calls deprecated) kept out of the output; missing torchao is one line."""
    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [lg.level for lg in loggers]
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import torchao.quantization
    except ImportError as exc:
        raise QuantpipeError(
            f"variants.{variant_name}.api: torchao needs the torchao package ({exc}); "
            "pip install --no-deps torchao==0.18.0"
        ) from None
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    return torchao.quantization


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
    """`model` with every `nn.Linear` replaced by its dynamic int8 version (`quantize_dynamic`), for `engine`'s
    kernels."""
    import torch

    torch.backends.quantized.engine = engine
    with quiet_deprecations():
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def torchao_reduce_range() -> bool:
    """Whether torchao's int8 range is halved here: on a CPU without VNNI its kernels could overflow."""
    import torch

    import_torchao()
    from torchao.utils import should_reduce_range

    return bool(should_reduce_range(torch.device("cpu")))


def quantize_torchao(model, reduce_range: bool, variant_name: str = "<name>"):
    """`model` with every `nn.Linear` weight a torchao int8 tensor (in place, returned): per-channel int8
    weights, activations quantized per token at each call."""
    ao = import_torchao(variant_name)
    # set_inductor_config: torchao would set process-wide inductor options for torch.compile, not used here
    config = ao.Int8DynamicActivationInt8WeightConfig(reduce_range=reduce_range, set_inductor_config=False)
    ao.quantize_(model, config)
    return model


def quantize(model, variant: TorchDynamicParams, name: str = "<name>") -> tuple[object, dict]:
    """The variant's quantized `model` and what was resolved for it on this machine."""
    if variant.api == "torchao":
        reduce_range = torchao_reduce_range()
        return quantize_torchao(model, reduce_range, name), {"api": "torchao", "reduce_range": reduce_range}
    engine = quantized_engine(variant.engine)
    return quantize_linear(model, engine), {"engine": engine}


class TorchDynamicKind(Kind):
    name = "torch_dynamic"
    params = TorchDynamicParams
    weight_files = (WEIGHTS_FILE,)
    engine = "pytorch"

    def build(self, name: str, variant: TorchDynamicParams, inputs: BuildInputs, out_dir: Path) -> dict:
        import torch
        from transformers import AutoModelForSequenceClassification

        check_model_dir(inputs.base)
        with loading(inputs.base, "PyTorch model directory", (OSError, ValueError)):
            model = AutoModelForSequenceClassification.from_pretrained(inputs.base).eval()
        model, resolved = quantize(model, variant, name)
        torch.save(model.state_dict(), Path(out_dir) / WEIGHTS_FILE)
        copy_tokenizer(inputs.base, out_dir)
        return resolved

    def load(self, model_dir: Path, variant: TorchDynamicParams, cfg: EvaluateParams) -> TorchClassifier | Replicas:
        classifier = TorchClassifier(model_dir, variant.runtime_threads(cfg), model=load_quantized(model_dir, variant))
        return torch_runtime(classifier, variant.streams)

    def precision(self, variant: TorchDynamicParams, resolved: dict) -> str:
        return "int8 Linear weights, activations quantized per call (dynamic), fp32 elsewhere"


def load_quantized(model_dir: Path, variant: TorchDynamicParams):
    """The quantized model saved in `model_dir`: the architecture from its config, quantized the same way (the
    weights then replaced by the saved ones), the state dict read with `weights_only=True`."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    weights = Path(model_dir) / WEIGHTS_FILE
    if not weights.is_file():
        raise QuantpipeError(f"{weights}: torch_dynamic weights not found (run the quantize stage)")
    check_model_dir(model_dir)
    with loading(Path(model_dir) / "config.json", "model config", (OSError, ValueError)):
        config = AutoConfig.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    if variant.api == "torchao":
        # the saved tensors bring their own range; the directory is named after the variant
        model = quantize_torchao(model, reduce_range=False, variant_name=Path(model_dir).name)
    else:
        model = quantize_linear(model, quantized_engine(variant.engine))
    state = read_state_dict(weights)
    try:
        # assign: torchao's tensors (their scales, range, activation settings) as saved, not copied into others
        model.load_state_dict(state, assign=variant.api == "torchao")
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise QuantpipeError(
            f"{weights}: not a torch_dynamic {variant.api} state dict of this model ({first})"
        ) from None
    return model.eval()


def read_state_dict(weights: Path) -> dict:
    """The state dict saved in `weights`, read with `torch.load(weights_only=True)`: a file that would make the
    unpickler build anything but tensors (code it would run) is refused, in one line naming what it asked for."""
    import torch

    with quiet_deprecations(), loading(weights, "torch state dict", (RuntimeError, OSError, EOFError)):
        try:
            state = torch.load(weights, weights_only=True)
        except pickle.UnpicklingError as exc:
            found = re.search(
                r"GLOBAL ([\w.]+)", str(exc)
            )  # what torch names: "... unsupported GLOBAL posix.system ..."
            what = f"`{found.group(1)}`" if found else "objects other than tensors"
            raise artifact_error(weights, f"refused to load: it asks the unpickler for {what}, not tensors") from None
    if not isinstance(state, dict):
        raise artifact_error(weights, f"not a state dict (a {type(state).__name__})")
    return state


KIND = TorchDynamicKind()
