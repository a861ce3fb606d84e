"""What every params section shares: the section model (unknown keys refused, no boolean for a number, no string
for a number or a boolean), seeds, accuracy budgets and threads, the rule of streams, names, one-line validation
errors and the YAML loader that refuses duplicate keys."""

from __future__ import annotations

import difflib
import os
import re
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")  # dataset, calibration and variant names: paths and dvc.yaml args
FRACTION_BELOW = 0.05  # an accuracy budget under this many points is a fraction written in the wrong unit
# threads per CPU a params file may ask for: a few per core can hide a stall (a machine shared with other jobs),
# more only wait for each other, and 100000 ONNX Runtime threads ran the machine out of memory (issue 36)
THREADS_PER_CPU = 4


def _admitted(annotation: Any) -> set:
    """The types a field's annotation admits, unions flattened and constraints (`Annotated`) dropped."""
    if get_origin(annotation) in (Union, UnionType):
        return set().union(*(_admitted(arg) for arg in get_args(annotation)))
    if get_origin(annotation) is Annotated:
        return _admitted(get_args(annotation)[0])
    return {annotation}


def _misread(annotation: Any, value: Any) -> str | None:
    """What pydantic would misread in `value` where `annotation` wants it, at the top or as a value of a mapping
    or list: a YAML `true`/`false` for an int or float (read as 1 or 0), or a string for a number or a boolean
    (`'1.0'` read as 1.0, `'yes'` as True); None if nothing."""
    admitted = _admitted(annotation)
    if isinstance(value, bool) and admitted & {int, float} and not admitted & {bool, Any}:
        return f"a number is expected, not a boolean (got {value!r})"
    scalars = admitted - {type(None)}
    if isinstance(value, str) and scalars and scalars <= {int, float, bool}:
        wanted = "true or false" if scalars == {bool} else "a number"
        return f"{wanted} is expected, not a string (got {value!r}; write it without quotes)"
    for tp in admitted:
        origin, args = get_origin(tp), get_args(tp)
        if origin is dict and isinstance(value, dict) and len(args) == 2:
            return next(filter(None, (_misread(args[1], v) for v in value.values())), None)
        if origin is list and isinstance(value, list) and args:
            return next(filter(None, (_misread(args[0], v) for v in value)), None)
    return None


def _in_points(budget: float) -> float:
    if 0 < budget < FRACTION_BELOW:
        raise ValueError(
            f"{budget:g} looks like a fraction; budgets are in accuracy points (1.0 = one point, 0.5 = half a point)"
        )
    return budget


def _within_the_machine(threads: int) -> int:
    cpus = os.cpu_count() or 1
    if threads > THREADS_PER_CPU * cpus:
        raise ValueError(
            f"{threads} threads on this machine's {cpus} CPU(s): at most {THREADS_PER_CPU * cpus} "
            f"({THREADS_PER_CPU} per CPU; more only wait for each other, and enough of them exhaust the memory)"
        )
    return threads


def check_streams(where: str, streams: int, threads: int, fallback: str) -> None:
    """The one rule of streams, for classification and generation alike: each stream needs a thread of its own
    (`threads` resolved: the variant's, else the section named by `fallback`); raise ValueError naming `where`."""
    if streams > threads:
        raise ValueError(
            f"{where}.streams: {streams} streams on {threads} thread(s) (its threads, else {fallback}): each stream "
            "needs a thread of its own"
        )


def check_unique(where: str, names: list[str]) -> None:
    """A list of names gives each once (raise ValueError naming `where` and the repeated ones)."""
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{where}: {', '.join(repeated)} given more than once")


Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # numpy's and torch's seeds are unsigned 32-bit
# an accuracy loss allowed, in accuracy points as the reports print them (0 < x < 0.05: a fraction, refused)
AccuracyBudget = Annotated[float, Field(ge=0, le=100), AfterValidator(_in_points)]
# intra-op threads: at least 1, at most THREADS_PER_CPU per CPU of the machine reading params.yaml
Threads = Annotated[int, Field(gt=0), AfterValidator(_within_the_machine)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _read_as_written(cls, value: Any, info: ValidationInfo) -> Any:
        problem = _misread(cls.model_fields[info.field_name].annotation, value)
        if problem:
            raise ValueError(problem)
        return value


class NestedParamError(ValueError):
    """A problem inside a mapping entry validated by its own model (a variant by its kind's params): its
    message starts with the entry's path below the field (`<name>.<key>: ...`)."""


def _known_keys(loc: tuple, model: type[BaseModel]) -> list[str]:
    """The keys allowed beside the last part of `loc` (a validation error's location), if a section holds it."""
    target: Any = model
    for part in loc[:-1]:
        if get_origin(target) in (Union, UnionType):  # an optional section: its model
            target = next((arg for arg in get_args(target) if arg is not type(None)), None)
        if get_origin(target) is dict:
            target = get_args(target)[1]
        elif isinstance(target, type) and issubclass(target, BaseModel) and part in target.model_fields:
            target = target.model_fields[part].annotation
        else:
            return []
    return list(target.model_fields) if isinstance(target, type) and issubclass(target, BaseModel) else []


def first_error(err: ValidationError) -> dict:
    """The error reported: a misspelt key also leaves the intended one missing, so the misspelling first."""
    return next((e for e in err.errors() if e["type"] == "extra_forbidden"), err.errors()[0])


def one_line(err: ValidationError, model: type[BaseModel]) -> str:
    """The first problem of a validation error of `model` (the whole params file, a variant's kind...), as one line."""
    first = first_error(err)
    where = ".".join(str(p) for p in first["loc"])
    more = f" [+{err.error_count() - 1} more]" if err.error_count() > 1 else ""
    nested = first.get("ctx", {}).get("error")
    if isinstance(nested, NestedParamError):
        return f"{where}.{nested}{more}"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        known = _known_keys(first["loc"], model)
        close = difflib.get_close_matches(str(first["loc"][-1]), known, n=1)
        msg = f"unknown key (did you mean '{close[0]}'?)" if close else f"unknown key (known: {', '.join(known)})"
    got = first.get("input")
    quiet = first["type"] in ("value_error", "extra_forbidden") or isinstance(got, dict)
    shown = "" if quiet else f" (got {got!r})"
    return f"{where + ': ' if where else ''}{msg}{shown}{more}"


class DuplicateKeyError(yaml.YAMLError):
    """A key given twice in one mapping of a YAML file (plain YAML loaders keep the last one silently)."""


def _check_unique_keys(node: yaml.Node, where: tuple[str, ...], done: set[int]) -> None:
    if id(node) in done:  # an alias: its anchor was checked
        return
    done.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_unique_keys(item, (*where, str(i)), done)
    elif isinstance(node, yaml.MappingNode):
        lines: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else "?"
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                line = key.start_mark.line + 1
                if (key.tag, name) in lines:
                    raise DuplicateKeyError(
                        f"{'.'.join((*where, name))}: duplicate key (lines {lines[key.tag, name]} and {line}; "
                        "YAML would silently keep the last)"
                    )
                lines[key.tag, name] = line
            _check_unique_keys(value, (*where, name), done)


class UniqueKeyLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a key given twice in a mapping (`DuplicateKeyError` names it and both lines)."""

    def construct_document(self, node: yaml.Node) -> Any:
        _check_unique_keys(node, (), set())
        return super().construct_document(node)
