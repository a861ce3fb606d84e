"""The `search` section (its own pipeline, `search/dvc.yaml`) and its cross-checks against the rest of
params.yaml: the base variant, each axis and value of the space, the selection datasets, the fallback's start."""

from __future__ import annotations

import difflib
import math
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from quantpipe.config.base import AccuracyBudget, NestedParamError, Section, Seed, check_streams
from quantpipe.config.constants import PART
from quantpipe.config.registry import KINDS, get_kind, variant_params
from quantpipe.config.sections import check_calibration
from quantpipe.config.students import BASE_MODEL, check_model

if TYPE_CHECKING:
    from quantpipe.config import Params

EXCLUDE_PARTS = "exclude_parts"  # the axis of parts of the network left in fp32 (not a variant key)


class SelectionParams(Section):
    """The data trials are scored on: each dataset's `selection_split`, never what the report shows."""

    datasets: list[str] = Field(
        min_length=1, description="names in `data.datasets` with a `selection_split` (the winner must hold on each)"
    )
    max_samples: int | None = Field(
        500, gt=0, description="texts per dataset (a seeded sample of the held-out rows); null: all of them"
    )
    seed: Seed = Field(0, description="seed of the sample")


class SearchTimingParams(Section):
    """Each trial timed against the fp32 ONNX model in paired rounds that alternate between the two."""

    rounds: int = Field(3, gt=0, description="rounds per dataset (ratio: median and [min, max] over them)")
    max_samples: int | None = Field(100, gt=0, description="texts timed per dataset (the first selection texts)")


class FallbackParams(Section):
    """Accuracy-aware fallback (Intel Neural Compressor's basic strategy): leave the most damaging parts of the
    network in fp32, one at a time, until the trial meets the budget."""

    start: Literal["fastest"] | dict[str, Any] | None = Field(
        "fastest",
        description="`fastest`: the fastest trial, when it misses the budget; a variant (its keys as in "
        "`variants`, an ONNX Runtime int8 kind; a YAML alias of one works): that configuration; null: no fallback",
    )
    max_steps: int = Field(8, gt=0, description="parts left in fp32 at most")


class SearchParams(Section):
    """The search (its own pipeline, `search/dvc.yaml`): trials built from `base` and one value per axis of
    `space`, each scored on the selection split and timed against fp32 ONNX; the winner is the fastest within
    `accuracy_budget` on every selection dataset."""

    base: dict[str, Any] = Field(
        default_factory=lambda: {"kind": "dynamic"},
        description="the variant every trial starts from (any kind, its keys as in `variants`)",
    )
    space: dict[str, list[Any]] | list[dict[str, list[Any]]] = Field(
        description="axis -> values: any key of the trial's kind (`kind` too), or `exclude_parts` (lists of "
        "`embeddings`, `layer.<i>`, `head` left in fp32); a list of such grids searches their union"
    )
    strategy: Literal["grid", "random", "tpe"] = Field(
        "grid",
        description="`grid`: every combination; `random`: `max_trials` of them (seeded); `tpe`: Optuna's TPE "
        "sampler, multi-objective over accuracy and speed",
    )
    max_trials: int | None = Field(
        None, gt=0, description="trials at most (grid: null runs the whole space; random and tpe need it)"
    )
    seed: Seed = Field(0, description="seed of `random` and `tpe`")
    accuracy_budget: AccuracyBudget = Field(
        0.5,
        description="accuracy points below fp32 ONNX allowed, on every selection dataset (1.0 = one point); below "
        "0.05 (a fraction written by mistake) is refused",
    )
    selection: SelectionParams = Field(description="the data trials are scored on")
    timing: SearchTimingParams = Field(SearchTimingParams(), description="the paired timing of each trial")
    fallback: FallbackParams = Field(FallbackParams(), description="the accuracy-aware fallback")
    workers: int = Field(1, gt=0, description="trials run at once (processes, or Ray tasks)")
    executor: Literal["local", "ray"] = Field(
        "local", description="`local`: this machine; `ray`: Ray tasks (`pip install 'quantpipe[ray]'`)"
    )
    ray_address: str | None = Field(
        None,
        description="`ray.init` address of a running cluster, probed before the search starts "
        "(null: a local Ray instance listening on loopback only; docs/search.md)",
    )

    def grids(self) -> list[dict[str, list[Any]]]:
        """The space as a list of grids (one grid, or the union a list declares)."""
        return self.space if isinstance(self.space, list) else [self.space]

    @field_validator("ray_address")
    @classmethod
    def _a_ray_address(cls, address: str | None) -> str | None:
        if address is None or address == "auto":
            return address
        host, _, port = address.removeprefix("ray://").rpartition(":")
        if not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 2**16:
            raise ValueError(f"{address!r} is not a Ray address (auto, host:port or ray://host:port)")
        return address

    @field_validator("space")
    @classmethod
    def _axes_have_values(cls, space):
        for grid in space if isinstance(space, list) else [space]:
            if not grid:
                raise ValueError("a grid needs at least one axis")
            for axis, values in grid.items():
                if not values:
                    raise ValueError(f"{axis}: an axis needs at least one value")
        if isinstance(space, list) and not space:
            raise ValueError("a list of grids needs at least one grid")
        return space

    @model_validator(mode="after")
    def _trials_fit_the_space(self) -> SearchParams:
        size = sum(math.prod(len(values) for values in grid.values()) for grid in self.grids())
        if self.strategy in ("random", "tpe") and not self.max_trials:
            raise ValueError(f"max_trials: the {self.strategy} strategy needs it")
        if self.strategy in ("grid", "random") and self.max_trials and self.max_trials > size:
            raise ValueError(f"max_trials: {self.max_trials} asked, the space holds {size} combinations")
        return self


def _kind_fields(kinds: set[str]) -> set[str]:
    return {field for kind in kinds for field in get_kind(kind).params.model_fields}


def check_search(params: Params) -> None:
    """Cross-checks of the `search` section (raise ValueError, one line naming the param): the base variant, the
    axes and each value on its own, the selection datasets and the fallback's start."""
    search = params.search
    try:
        variant_params("base", dict(search.base))
    except NestedParamError as exc:
        raise ValueError(f"search.{exc}") from None
    for grid in search.grids():
        kinds = {k for k in grid.get("kind", [search.base["kind"]]) if k in KINDS}
        known = _kind_fields(kinds) | {EXCLUDE_PARTS, "kind"}
        for axis, values in grid.items():
            if axis not in known:
                close = difflib.get_close_matches(axis, sorted(known), n=1)
                hint = f"did you mean '{close[0]}'?" if close else f"known: {', '.join(sorted(known))}"
                raise ValueError(f"search.space: unknown axis '{axis}' ({hint})")
            for value in values:
                _check_value(kinds, axis, value)
                if axis == "model":
                    check_model(f"search.space.{axis}", value, params)
                if axis == "calibration":
                    check_calibration(f"search.space.{axis}", value, params)
        # a stream value that no threads value of its grid can serve
        threads = max(t or params.evaluate.threads for t in grid.get("threads", [search.base.get("threads")]))
        for streams in grid.get("streams", []):
            check_streams("search.space", streams, threads, "evaluate.threads")
    check_model("search.base.model", search.base.get("model", BASE_MODEL), params)
    check_calibration("search.base.calibration", search.base.get("calibration"), params)
    for name in search.selection.datasets:
        spec = params.data.datasets.get(name)
        if spec is None:
            raise ValueError(
                f"search.selection.datasets: '{name}' is not one of data.datasets {sorted(params.data.datasets)}"
            )
        if not spec.selection_split:
            raise ValueError(f"search.selection.datasets: '{name}' has no selection_split")
    start = search.fallback.start
    if isinstance(start, dict):
        try:
            variant = variant_params("start", dict(start))
        except NestedParamError as exc:
            raise ValueError(f"search.fallback.{exc}") from None
        if not get_kind(variant.kind).excludable_parts:
            raise ValueError(
                f"search.fallback.start: a {variant.kind} variant has no parts to leave in fp32 (pick an ONNX "
                "Runtime int8 one)"
            )
        try:
            variant.check_references("start", params)
        except ValueError as exc:  # it names `variants.start...`
            raise ValueError(str(exc).replace("variants.start", "search.fallback.start", 1)) from None


def _check_value(kinds: set[str], axis: str, value: Any) -> None:
    """A value no kind of its grid accepts on its own (a typo, a wrong type) is an error; one that clashes with
    another key is a combination the search skips."""
    if axis == EXCLUDE_PARTS:
        if not isinstance(value, list) or not all(isinstance(p, str) and PART.fullmatch(p) for p in value):
            raise ValueError(f"search.space.{axis}: {value!r} is not a list of parts (embeddings, layer.<i>, head)")
        return
    if axis == "kind":
        if value not in KINDS or get_kind(value).baseline:
            raise ValueError(f"search.space.kind: unknown variant kind {value!r}")
        return
    problems = []
    for kind in sorted(kinds):
        params_model = get_kind(kind).params
        if axis not in params_model.model_fields:
            continue
        try:
            params_model.model_validate({"kind": kind, axis: value})
        except ValidationError as exc:
            own = [e for e in exc.errors() if e["loc"] and e["loc"][0] == axis]  # not a clash with another key
            if own:
                problems.append(own[0]["msg"].removeprefix("Value error, "))
                continue
        return
    if problems:
        raise ValueError(f"search.space.{axis}: {problems[0]} (got {value!r})")
