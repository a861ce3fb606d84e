"""What every params section shares: the section model (unknown keys refused, no boolean for a number), seeds
and accuracy budgets, names, one-line validation errors and the YAML loader that refuses duplicate keys."""

from __future__ import annotations

import difflib
import re
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")  # dataset, calibration and variant names: paths and dvc.yaml args
FRACTION_BELOW = 0.05  # an accuracy budget under this many points is a fraction written in the wrong unit


def _admitted(annotation: Any) -> set:
    """The types a field's annotation admits, unions flattened."""
    if get_origin(annotation) in (Union, UnionType):
        return set().union(*(_admitted(arg) for arg in get_args(annotation)))
    return {annotation}


def _bool_for_a_number(annotation: Any, value: Any) -> bool:
    """Whether `value` holds a YAML `true`/`false` where `annotation` wants an int or float (pydantic would read
    it as 1 or 0), at the top or as a value of a mapping or list."""
    admitted = _admitted(annotation)
    if isinstance(value, bool):
        return bool(admitted & {int, float}) and not admitted & {bool, Any}
    for tp in admitted:
        origin, args = get_origin(tp), get_args(tp)
        if origin is dict and isinstance(value, dict) and len(args) == 2:
            return any(_bool_for_a_number(args[1], v) for v in value.values())
        if origin is list and isinstance(value, list) and args:
            return any(_bool_for_a_number(args[0], v) for v in value)
    return False


def _in_points(budget: float) -> float:
    if 0 < budget < FRACTION_BELOW:
        raise ValueError(
            f"{budget:g} looks like a fraction; budgets are in accuracy points (1.0 = one point, 0.5 = half a point)"
        )
    return budget


Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # numpy's and torch's seeds are unsigned 32-bit
# an accuracy loss allowed, in accuracy points as the reports print them (0 < x < 0.05: a fraction, refused)
AccuracyBudget = Annotated[float, Field(ge=0, le=100), AfterValidator(_in_points)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        if _bool_for_a_number(cls.model_fields[info.field_name].annotation, value):
            raise ValueError(f"a number is expected, not a boolean (got {value!r})")
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
