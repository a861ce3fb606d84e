"""Calibration for static quantization: activation ranges of the fp32 ONNX graph on a train sample.

Ranges are computed for every tensor (not only the operators one variant quantizes), so one
calibration serves every static variant that names it; they are stored as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from quantpipe.config.sections import CalibrationParams
from quantpipe.errors import QuantpipeError
from quantpipe.export import prepare_graph
from quantpipe.io import artifact_error, check_model_dir, loading, read_json, write_json

RANGES_FILE = "ranges.json"

if TYPE_CHECKING:
    import pandas as pd


def calibration_sample(texts: pd.Series, cfg: CalibrationParams) -> list[str]:
    """The `num_samples` train texts a calibration draws (seeded): ranges here, NNCF's statistics for OpenVINO."""
    if len(texts) == 0:
        raise QuantpipeError("calibration: the train split is empty")
    return texts.sample(n=min(cfg.num_samples, len(texts)), random_state=cfg.seed).tolist()


def calibration_dataset(texts: pd.Series, tokenizer, cfg: CalibrationParams, input_names: set[str]):
    """A `datasets.Dataset` of `num_samples` tokenized texts, padded to `max_length`."""
    from datasets import Dataset

    sample = calibration_sample(texts, cfg)
    encoded = tokenizer(sample, padding="max_length", truncation=True, max_length=cfg.max_length, return_tensors="np")
    return Dataset.from_dict({k: v.astype(np.int64) for k, v in encoded.items() if k in input_names})


def calibration_config(dataset, cfg: CalibrationParams):
    from optimum.onnxruntime import AutoCalibrationConfig

    if cfg.method == "minmax":
        return AutoCalibrationConfig.minmax(dataset)
    if cfg.method == "entropy":
        return AutoCalibrationConfig.entropy(dataset)
    return AutoCalibrationConfig.percentiles(dataset, percentile=cfg.percentile)


def compute_ranges(model_dir: Path, texts: pd.Series, cfg: CalibrationParams, work_dir: Path) -> dict[str, list]:
    """Run the ONNX Runtime calibrator (through Optimum's ORTQuantizer.fit); {tensor: [lowest, highest]}
    (each bound a float, or a list of floats where the calibrator keeps one per channel)."""
    import onnxruntime as ort
    from optimum.onnxruntime import ORTQuantizer
    from transformers import AutoTokenizer

    model_path = Path(model_dir) / "model.onnx"
    if not model_path.is_file():
        raise QuantpipeError(f"{model_path}: ONNX model not found (run the export stage)")
    check_model_dir(model_dir)
    with loading(model_path, "ONNX model"):
        input_names = {i.name for i in ort.InferenceSession(str(model_path)).get_inputs()}
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dataset = calibration_dataset(texts, tokenizer, cfg, input_names)
    quantizer = ORTQuantizer.from_pretrained(model_dir, file_name="model.onnx")
    data = quantizer.fit(
        dataset=dataset,
        calibration_config=calibration_config(dataset, cfg),
        onnx_augmented_model_name=Path(work_dir) / "augmented_model.onnx",
        batch_size=cfg.batch_size,
    )
    (Path(work_dir) / "augmented_model.onnx").unlink(missing_ok=True)
    # float32 bounds as the shortest decimal that reads back to the same float32: stable text, no float64 noise
    return {name: [_float32_text(bound) for bound in t.range_value] for name, t in data.items()}


def _float32_text(bound) -> float | list:
    values = np.asarray(bound, dtype=np.float32)
    if values.ndim == 0:
        return float(np.format_float_positional(values[()], unique=True, trim="-"))
    return [float(np.format_float_positional(v, unique=True, trim="-")) for v in values]


def calibrate(model_dir: Path, texts: pd.Series, cfg: CalibrationParams, out_dir: Path) -> dict[str, list]:
    """Ranges of `cfg` into `out_dir/ranges.json`; with `cfg.optimization`, the graph is optimized first
    and stored in `out_dir` next to its ranges (static variants with that optimization quantize it)."""
    graph_dir = Path(model_dir)
    if cfg.optimization != "none":
        graph_dir = prepare_graph(graph_dir, cfg.optimization, out_dir).parent
    ranges = compute_ranges(graph_dir, texts, cfg, out_dir)
    write_json(Path(out_dir) / RANGES_FILE, ranges, sort_keys=True)  # byte-stable: a re-run changes no hash
    return ranges


def read_ranges(path: Path) -> dict[str, list]:
    """The ranges a calibrate stage stored in `path`: {tensor: [lowest, highest]}, each bound a number or a list
    of numbers; anything else is one line naming the file."""
    ranges = read_json(path, expect=dict)
    if not ranges:
        raise artifact_error(path, "no tensor ranges (an empty object)")
    for name, bounds in ranges.items():
        numbers = [b if isinstance(b, list) else [b] for b in bounds] if isinstance(bounds, list) else []
        if len(numbers) != 2 or not all(isinstance(x, int | float) for part in numbers for x in part):
            raise artifact_error(path, f"tensor {name!r}: {json.dumps(bounds)[:60]} is not a [lowest, highest] pair")
    return ranges


def tensors_range(ranges: dict[str, list]):
    """Rebuild ONNX Runtime's TensorsData from stored JSON ranges."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData

    return TensorsData(
        CalibrationMethod.MinMax,
        {
            name: TensorData(lowest=np.asarray(lo, dtype=np.float32), highest=np.asarray(hi, dtype=np.float32))
            for name, (lo, hi) in ranges.items()
        },
    )
