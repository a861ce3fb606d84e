"""The search space: `search.base` plus one value per axis of `search.space` makes a candidate trial; the
variant it describes is validated by its kind's params, and an invalid combination is a skipped candidate
with that one-line reason, not an error."""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from quantpipe.params import NestedParamError, Params, SearchParams, VariantParams

EXCLUDE_PARTS = "exclude_parts"  # the axis of parts of the network left in fp32 (not a variant key)


@dataclass(frozen=True)
class Candidate:
    """One point of the space: the variant it makes (None when invalid, with the reason)."""

    point: dict[str, Any]
    raw: dict[str, Any]
    exclude_parts: tuple[str, ...]
    variant: VariantParams | None
    reason: str | None

    @property
    def trial_id(self) -> str:
        """Short, stable name of the configuration (the validated params when valid, else the raw ones)."""
        content = self.variant.model_dump(mode="json") if self.variant else self.raw
        text = json.dumps({"variant": content, EXCLUDE_PARTS: list(self.exclude_parts)}, sort_keys=True)
        return "t" + hashlib.sha256(text.encode()).hexdigest()[:10]

    @property
    def label(self) -> str:
        return ", ".join(f"{axis}={_show(value)}" for axis, value in self.point.items())


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + " ".join(str(v) for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def candidate(search: SearchParams, point: dict[str, Any]) -> Candidate:
    """The trial a point of the space makes: `search.base` updated with the point's values."""
    raw = {**search.base, **{axis: value for axis, value in point.items() if axis != EXCLUDE_PARTS}}
    return make_candidate(raw, tuple(point.get(EXCLUDE_PARTS) or ()), point)


def make_candidate(raw: dict[str, Any], parts: tuple[str, ...], point: dict[str, Any]) -> Candidate:
    """A candidate from a variant's keys and the parts it leaves in fp32; `point` is what the report shows."""
    from quantpipe.environment import cpu_info
    from quantpipe.kinds import get_kind, variant_params

    try:
        variant = variant_params("trial", raw)
    except NestedParamError as exc:
        return Candidate(point, raw, parts, None, str(exc).removeprefix("trial.").removeprefix("trial: "))
    if parts and not hasattr(variant, "nodes_to_exclude"):
        return Candidate(point, raw, parts, None, f"{EXCLUDE_PARTS}: a {variant.kind} variant has no nodes to exclude")
    unsupported = get_kind(variant.kind).skip_reason(variant, cpu_info())
    if unsupported:  # e.g. bf16 on a CPU without it: skipped as the pipeline skips such a variant, not run in f32
        return Candidate(point, raw, parts, None, unsupported)
    return Candidate(point, raw, parts, variant, None)


def grid_points(search: SearchParams) -> list[dict[str, Any]]:
    """Every combination of each grid (the first axis varying slowest), grid after grid."""
    points = []
    for grid in search.grids():
        axes = list(grid)
        points += [dict(zip(axes, values, strict=True)) for values in itertools.product(*(grid[a] for a in axes))]
    return points


def planned_points(search: SearchParams) -> list[dict[str, Any]]:
    """The points `grid` and `random` try: all of them (up to `max_trials`), or a seeded sample."""
    points = grid_points(search)
    if search.strategy == "random":
        rng = np.random.default_rng(search.seed)
        return [points[i] for i in sorted(rng.choice(len(points), size=search.max_trials, replace=False))]
    return points[: search.max_trials]


def _kind_fields(kinds: set[str]) -> set[str]:
    from quantpipe.kinds import get_kind

    return {field for kind in kinds for field in get_kind(kind).params.model_fields}


def check_search(params: Params) -> None:
    """Cross-checks of the `search` section (raise ValueError, one line naming the param): the base variant, the
    axes and each value on its own, the selection datasets and the fallback's start."""
    from quantpipe.kinds import KINDS, variant_params

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
        if not hasattr(variant, "nodes_to_exclude"):
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
        from quantpipe.sensitivity import PART

        if not isinstance(value, list) or not all(isinstance(p, str) and PART.fullmatch(p) for p in value):
            raise ValueError(f"search.space.{axis}: {value!r} is not a list of parts (embeddings, layer.<i>, head)")
        return
    from quantpipe.kinds import KINDS, get_kind

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
            own = [e for e in exc.errors() if e["loc"] and e["loc"][0] == axis and e["type"] != "value_error"]
            if own:
                problems.append(own[0]["msg"])
                continue
        return
    if problems:
        raise ValueError(f"search.space.{axis}: {problems[0]} (got {value!r})")
