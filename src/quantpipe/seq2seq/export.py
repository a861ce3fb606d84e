"""Export a seq2seq model to ONNX: with Optimum's exporter, or (a warm-started BERT-to-BERT with its cache, which
Optimum refuses) with `quantpipe.seq2seq.bert_decoder`; either way the files and names of Optimum's
`text2text-generation-with-past` export, not merged: the encoder, the first-step decoder and the decoder fed the
cache (`quantpipe.seq2seq.lean` and ORTModelForSeq2SeqLM both load them)."""

from __future__ import annotations

from pathlib import Path

from quantpipe.errors import QuantpipeError
from quantpipe.io import check_model_dir, read_json

ENCODER_FILE = "encoder_model.onnx"
DECODER_FILE = "decoder_model.onnx"  # no cache: the whole prefix recomputed at each step (with cache: first step)
WITH_PAST_FILE = "decoder_with_past_model.onnx"  # with cache: the later steps
MERGED_FILE = "decoder_model_merged.onnx"  # Optimum's merge of the two (not kept: its If costs a step)


def seq2seq_config(model_dir: str | Path, param: str | None = None):
    """The transformers config of a model (a directory or a Hub id); a model that cannot be read or is not a
    seq2seq language model is one error line, naming `param` (the params key it came from) if given."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES as SEQ2SEQ

    where = f"{param}: '{model_dir}'" if param else str(model_dir)
    if Path(model_dir).is_dir():  # a local directory is checked as every artifact
        check_model_dir(model_dir)
    try:
        config = AutoConfig.from_pretrained(model_dir)
    except (OSError, ValueError) as exc:  # not found, or no model_type
        first = (str(exc).strip().splitlines() or ["cannot load"])[0].split(". ")[0]
        raise QuantpipeError(f"{where}: cannot load the model config: {first}") from None
    if config.model_type not in SEQ2SEQ:  # by type, as AutoModelForSeq2SeqLM (t5-small names an old class)
        architectures = config.architectures or []
        raise QuantpipeError(
            f"{where}: not a seq2seq model ({config.model_type}, {', '.join(architectures) or 'no architecture'});"
            " text2text-generation needs an encoder-decoder language model (T5, BART, EncoderDecoderModel, ...)"
        )
    return config


def exports_bert_decoder(config) -> bool:
    """Whether the model is an EncoderDecoderModel with a BERT decoder, which `bert_decoder` exports with its cache."""
    return config.model_type == "encoder-decoder" and config.decoder.model_type == "bert"


def decoder_has_past(config) -> bool:
    """Whether the model's decoder is exported with a key/value cache: by Optimum, or by `bert_decoder` (an
    EncoderDecoderModel's BERT decoder, which Optimum exports without one)."""
    if config.model_type != "encoder-decoder":
        return True
    if exports_bert_decoder(config):
        return True
    import optimum.exporters.onnx.model_configs  # noqa: F401  (registers the ONNX configs with TasksManager)
    from optimum.exporters.onnx.base import OnnxConfigWithPast
    from optimum.exporters.tasks import TasksManager

    decoder = TasksManager.get_exporter_config_constructor(
        exporter="onnx", task="feature-extraction", model_type=config.decoder.model_type, library_name="transformers"
    )
    return issubclass(decoder.func, OnnxConfigWithPast)


def check_optimization(config, optimization: str) -> None:
    """One error line if ONNX Runtime's graph optimizer cannot take the model type (Optimum's own check)."""
    from optimum.onnxruntime.utils import ORTConfigManager

    if optimization == "none":
        return
    try:
        ORTConfigManager.check_optimization_supported_model(config.model_type, None)
    except NotImplementedError:
        raise QuantpipeError(
            f"seq2seq.optimization: ONNX Runtime cannot optimize {config.model_type} models ({optimization}); set none"
        ) from None


def export_seq2seq(model_dir: str | Path, out_dir: Path, with_past: bool, optimization: str = "none") -> Path:
    """Export a model (a directory or a Hub id) to `out_dir`: encoder_model.onnx plus decoder_model.onnx and, with
    `with_past`, decoder_with_past_model.onnx, with config, generation config and tokenizer. `optimization` (O1-O3,
    or none): ONNX Runtime's graph optimizations applied by the exporter, as `optimum-cli export onnx --optimize`
    does. Returns `out_dir`."""
    if Path(model_dir).is_dir():  # else a Hub id
        check_model_dir(model_dir)
        if not (Path(model_dir) / "tokenizer.json").is_file():  # every stage serving the export reads it there
            raise QuantpipeError(f"{Path(model_dir) / 'tokenizer.json'}: tokenizer not found (the export carries it)")
    config = seq2seq_config(model_dir)
    check_optimization(config, optimization)
    if with_past and not decoder_has_past(config):
        raise QuantpipeError(
            f"{model_dir}: the decoder ({config.decoder.model_type}) has no key/value cache in ONNX; "
            "export it with with_past false"
        )
    out_dir = Path(out_dir)
    if with_past and exports_bert_decoder(config):
        _export_bert2bert(model_dir, out_dir)
        return out_dir
    from optimum.exporters.onnx import main_export

    task = "text2text-generation-with-past" if with_past else "text2text-generation"
    optimize = None if optimization == "none" else optimization
    main_export(str(model_dir), output=out_dir, task=task, do_validation=False, optimize=optimize, no_post_process=True)
    for path in out_dir.glob(f"{MERGED_FILE}*"):  # the file and its external data, if any
        path.unlink()
    return out_dir


def _export_bert2bert(model_dir: str | Path, out_dir: Path) -> None:
    """`bert_decoder.export_bert2bert` of the model, with its config, generation config and tokenizer beside it."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from quantpipe.seq2seq.bert_decoder import export_bert2bert

    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir).eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    export_bert2bert(model, out_dir / ENCODER_FILE, out_dir / DECODER_FILE, out_dir / WITH_PAST_FILE)
    model.config.save_pretrained(out_dir)
    model.generation_config.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out_dir)


def is_optimized(onnx_dir: Path) -> bool:
    """Whether an exported directory was optimized by ONNX Runtime (O1-O3: the exporter records it in
    ort_config.json)."""
    ort_config = Path(onnx_dir) / "ort_config.json"
    return ort_config.is_file() and bool(read_json(ort_config, expect=dict).get("optimization"))


def part_files(onnx_dir: Path) -> dict[str, list[str]]:
    """The files of each part of an exported directory: the encoder's, and the decoder's: the decoder and
    decoder-with-past pair (with cache), the merged decoder (an earlier export), or the decoder alone (no cache)."""
    onnx_dir = Path(onnx_dir)
    if (onnx_dir / MERGED_FILE).is_file():
        decoder = [MERGED_FILE]
    elif (onnx_dir / WITH_PAST_FILE).is_file():
        decoder = [DECODER_FILE, WITH_PAST_FILE]
    else:
        decoder = [DECODER_FILE]
    return {"encoder": [ENCODER_FILE], "decoder": decoder}
