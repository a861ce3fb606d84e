"""The search space: `search.base` plus one value per axis of `search.space` makes a candidate trial; the
variant it describes is validated by its kind's params, and an invalid combination is a skipped candidate
with that one-line reason, not an error."""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from quantpipe.config.base import NestedParamError, check_streams
from quantpipe.config.registry import get_kind, variant_params
from quantpipe.config.search import EXCLUDE_PARTS, SearchParams
from quantpipe.config.sections import VariantParams


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

    try:
        variant = variant_params("trial", raw)
    except NestedParamError as exc:
        return Candidate(point, raw, parts, None, str(exc).removeprefix("trial.").removeprefix("trial: "))
    if variant.threads is not None:  # a grid crossing streams with threads (threads null: checked at start)
        try:
            check_streams("trial", variant.streams, variant.threads, "evaluate.threads")
        except ValueError as exc:
            return Candidate(point, raw, parts, None, str(exc).removeprefix("trial."))
    if parts and not get_kind(variant.kind).excludable_parts:
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
