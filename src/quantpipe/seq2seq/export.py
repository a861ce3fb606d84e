"""Export a seq2seq model to ONNX with Optimum; the directory keeps only the files ORTModelForSeq2SeqLM loads."""

from __future__ import annotations

from pathlib import Path

from quantpipe.errors import QuantpipeError

ENCODER_FILE = "encoder_model.onnx"
DECODER_FILE = "decoder_model.onnx"  # no cache: the whole prefix recomputed at each step
MERGED_FILE = "decoder_model_merged.onnx"  # with cache: first step and later steps as two branches of one If
UNUSED_FILES = (DECODER_FILE, "decoder_with_past_model.onnx")  # superseded by the merged decoder


def seq2seq_config(model_dir: str | Path):
    """The transformers config of a model (a directory or a Hub id); a model that cannot be read or is not a
    seq2seq language model is one error line."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES as SEQ2SEQ

    try:
        config = AutoConfig.from_pretrained(model_dir)
    except (OSError, ValueError) as exc:  # not found, or no model_type
        first = (str(exc).strip().splitlines() or ["cannot load"])[0].split(". ")[0]
        raise QuantpipeError(f"{model_dir}: cannot load the model config: {first}") from None
    if config.model_type not in SEQ2SEQ:  # by type, as AutoModelForSeq2SeqLM (t5-small names an old class)
        architectures = config.architectures or []
        raise QuantpipeError(
            f"{model_dir}: not a seq2seq model ({config.model_type}, {', '.join(architectures) or 'no architecture'});"
            " text2text-generation needs an encoder-decoder language model (T5, BART, EncoderDecoderModel, ...)"
        )
    return config


def decoder_has_past(config) -> bool:
    """Whether Optimum exports the model's decoder with a key/value cache (an EncoderDecoderModel's BERT
    decoder has none in ONNX, though PyTorch's has one)."""
    if config.model_type != "encoder-decoder":
        return True
    import optimum.exporters.onnx.model_configs  # noqa: F401  (registers the ONNX configs with TasksManager)
    from optimum.exporters.onnx.base import OnnxConfigWithPast
    from optimum.exporters.tasks import TasksManager

    decoder = TasksManager.get_exporter_config_constructor(
        exporter="onnx", task="feature-extraction", model_type=config.decoder.model_type, library_name="transformers"
    )
    return issubclass(decoder.func, OnnxConfigWithPast)


def export_seq2seq(model_dir: str | Path, out_dir: Path, with_past: bool) -> Path:
    """Export a model (a directory or a Hub id) to `out_dir`: encoder_model.onnx plus decoder_model_merged.onnx
    (`with_past`) or decoder_model.onnx, with config, generation config and tokenizer. Returns `out_dir`."""
    from optimum.exporters.onnx import main_export

    config = seq2seq_config(model_dir)
    if with_past and not decoder_has_past(config):
        raise QuantpipeError(
            f"{model_dir}: the decoder ({config.decoder.model_type}) has no key/value cache in ONNX; "
            "export it with with_past false"
        )
    out_dir = Path(out_dir)
    task = "text2text-generation-with-past" if with_past else "text2text-generation"
    main_export(str(model_dir), output=out_dir, task=task, do_validation=False)
    if with_past:
        for name in UNUSED_FILES:
            for path in out_dir.glob(f"{name}*"):  # the file and its external data, if any
                path.unlink()
    return out_dir


def decoder_file(onnx_dir: Path) -> str:
    """The decoder file name an exported directory holds (merged, with cache, or plain)."""
    return MERGED_FILE if (Path(onnx_dir) / MERGED_FILE).is_file() else DECODER_FILE
