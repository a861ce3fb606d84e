"""The params.yaml schema: one typed model per section, validated at every stage start.

A typo or a bad value becomes one `QuantpipeError` line naming the param, never a traceback. This package is
the bottom layer: it imports only pydantic, yaml, `quantpipe.errors` and itself; a variant's keys are its
kind's params, which the registry (`quantpipe.config.registry`) imports by name when params.yaml names it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from quantpipe.config.base import (
    NAME,
    DuplicateKeyError,
    Section,
    UniqueKeyLoader,
    check_streams,
    check_unique,
    one_line,
)
from quantpipe.config.constants import BASELINES
from quantpipe.config.registry import get_kind, variant_params
from quantpipe.config.search import SearchParams, check_search
from quantpipe.config.sections import (
    BaseModelParams,
    CalibrationParams,
    CompareParams,
    DataParams,
    EvaluateParams,
    ExportParams,
    SensitivityParams,
    SideBySideParams,
    VariantParams,
)
from quantpipe.config.seq2seq import Seq2seqParams, check_seq2seq
from quantpipe.config.students import BASE_MODEL, DistillationParams, StudentParams, check_students
from quantpipe.errors import QuantpipeError


class Params(Section):
    """`params.yaml`: one section per concern."""

    data: DataParams = Field(description="datasets")
    base_model: BaseModelParams = Field(BaseModelParams(), description="the fp32 classifier")
    export: ExportParams = Field(ExportParams(), description="ONNX export (the base model's and the students')")
    distillation: DistillationParams = Field(
        DistillationParams(), description="the teacher's logits every student learns from (teacher_logits stage)"
    )
    students: dict[str, StudentParams] = Field(
        default_factory=dict,
        description="name -> a smaller model distilled from the base model (one student and one export stage each); "
        "a variant builds from one with `model: <name>`",
    )
    calibrations: dict[str, CalibrationParams] = Field(
        default_factory=dict, description="name -> calibration (one calibrate stage each)"
    )
    variants: dict[str, VariantParams] = Field(
        default_factory=dict,
        description="name -> variant (one quantize and one evaluate stage each); its `kind` decides its keys",
    )
    evaluate: EvaluateParams = Field(description="evaluation")
    sensitivity: SensitivityParams = Field(description="sensitivity analysis")
    side_by_side: SideBySideParams = Field(description="side-by-side timing")
    compare: CompareParams = Field(CompareParams(), description="comparison report")
    search: SearchParams | None = Field(None, description="the search (`search/dvc.yaml`; not in the default run)")
    seq2seq: Seq2seqParams | None = Field(None, description="the seq2seq pipeline (`seq2seq/dvc.yaml`)")

    @field_validator("variants", mode="before")
    @classmethod
    def _typed_by_kind(cls, value: Any) -> Any:
        """Each variant validated by the params model of its `kind` (the registry, `quantpipe.config.registry`)."""
        if not isinstance(value, dict):
            return value
        return {name: variant_params(name, raw) if isinstance(raw, dict) else raw for name, raw in value.items()}

    @model_validator(mode="after")
    def _cross_references(self) -> Params:
        for section, names in (
            ("data.datasets", self.data.datasets),
            ("calibrations", self.calibrations),
            ("students", self.students),
            ("variants", self.variants),
        ):
            for name in names:
                if not NAME.fullmatch(name):
                    raise ValueError(
                        f"{section}: '{name}' is not a valid name (letters, digits, `_`, `-`; not starting "
                        "with `-`): names become paths, command arguments and dotted param keys"
                    )
        if self.sensitivity.variant not in self.variants:
            raise ValueError(
                f"sensitivity.variant: '{self.sensitivity.variant}' is not one of variants {sorted(self.variants)}"
            )
        analysed = self.variants[self.sensitivity.variant]
        if not get_kind(analysed.kind).sensitivity:
            raise ValueError(
                f"sensitivity.variant: '{self.sensitivity.variant}' is a {analysed.kind} variant; the analysis "
                "quantizes ONNX Runtime graphs part by part (pick a static or dynamic variant)"
            )
        analysed.check_sensitivity(self.sensitivity.variant)
        if analysed.model != BASE_MODEL or analysed.max_length or analysed.truncation != "head":
            raise ValueError(
                f"sensitivity.variant: '{self.sensitivity.variant}' is built from {analysed.model!r} reading "
                f"{analysed.length_policy(self.evaluate)}; the analysis quantizes the base model's graph and reads "
                "evaluate.max_length tokens (pick a variant of the base model without its own length)"
            )
        if self.sensitivity.dataset not in self.evaluate.datasets:
            raise ValueError(
                f"sensitivity.dataset: '{self.sensitivity.dataset}' is not one of evaluate.datasets "
                f"{self.evaluate.datasets}"
            )
        for name, variant in self.variants.items():
            if name in BASELINES or name == "against_references":
                raise ValueError(
                    f"variants.{name}: the name is reserved (a baseline, or a key of metrics/compare.json)"
                )
            variant.check_references(name, self)
            check_streams(
                f"variants.{name}", variant.streams, variant.runtime_threads(self.evaluate), "evaluate.threads"
            )
        check_students(self)
        check_unique("compare.references", self.compare.references)
        for name in self.compare.references:
            if name not in self.variants:
                raise ValueError(f"compare.references: '{name}' is not one of variants {sorted(self.variants)}")
        for name in self.evaluate.datasets:
            if name not in self.data.datasets:
                raise ValueError(
                    f"evaluate.datasets: '{name}' is not one of data.datasets {sorted(self.data.datasets)}"
                )
            if not self.data.datasets[name].eval_split:
                raise ValueError(f"evaluate.datasets: '{name}' has no eval_split")
        if self.search:
            check_search(self)
        if self.seq2seq:
            check_seq2seq(self)
        return self


def parse_params(text: str, path: str | Path = "params.yaml") -> Params:
    """Validate the params file's text (`path` names it in errors); raise QuantpipeError with one line."""
    try:
        raw = yaml.load(text, Loader=UniqueKeyLoader) or {}
    except DuplicateKeyError as exc:
        raise QuantpipeError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise QuantpipeError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise QuantpipeError(f"{path}: {one_line(exc, Params)}") from None


def read_params_text(path: str | Path) -> str:
    """The params file's text; a missing or unreadable file is one line."""
    path = Path(path)
    if not path.is_file():
        raise QuantpipeError(f"{path}: params file not found")
    try:
        return path.read_text()
    except OSError as exc:
        raise QuantpipeError(f"{path}: cannot read: {exc.strerror}") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate the whole params file; raise QuantpipeError with one line on any problem."""
    return parse_params(read_params_text(path), Path(path))


def load_seq2seq_params(path: str | Path = "params.yaml") -> Params:
    """`load_params` for the seq2seq pipeline's stages: its `seq2seq` section must be there."""
    params = load_params(path)
    if params.seq2seq is None:
        raise QuantpipeError(f"{path}: seq2seq: no such section (the seq2seq pipeline's params)")
    return params
