"""A boolean given where a number is meant is refused, not taken as 1 (1.0 for a float).

    list(booleans_for_numbers(TrainJobConfig, {"train": {"max_steps": True}}))
    # -> [{"loc": ["train", "max_steps"], "msg": "expected a number, got the boolean true"}]

`tldrlab.kinds.validate_model` walks every run config with it before pydantic sees it; a config class that
validates a free-form mapping against a class of its own (a training job's `model_settings`, against its
model family's settings) walks that mapping too. It sits below both so that there is one copy.
"""

from __future__ import annotations

import types
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel

_NUMBERS = (int, float)


def _number_only(annotation: Any) -> bool:
    """Whether `annotation` takes numbers and nothing else (None aside): `int`, `float | None`,
    `int | float`; not `bool`, nor a Union that also takes a bool or a string."""
    if get_origin(annotation) is Annotated:
        return _number_only(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        kept = [a for a in get_args(annotation) if a is not type(None)]
        return bool(kept) and all(_number_only(a) for a in kept)
    return annotation in _NUMBERS


def booleans_for_numbers(annotation: Any, value: Any, loc: tuple[str, ...] = ()) -> Iterator[dict[str, Any]]:
    """A problem (`{"loc": [...], "msg": ...}`, as `config_errors` gives them) for every boolean `value`
    gives where `annotation` wants a number, nested sections, lists and mappings walked.

    pydantic's lax mode takes `true` as 1 (1.0 for a float), so `max_steps: yes` trained one step; strict
    mode is no cure, as it refuses the strings YAML and JSON give for paths and choices.
    """
    if isinstance(value, bool):
        if _number_only(annotation):
            yield {"loc": list(loc), "msg": f"expected a number, got the boolean {str(value).lower()}"}
        return
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        yield from booleans_for_numbers(args[0], value, loc)
    elif origin in (Union, types.UnionType):
        # the one member this value can be (a mapping: the section, a list: the list type); none: pydantic's
        fits = [a for a in args if _could_hold(a, value)]
        if len(fits) == 1:
            yield from booleans_for_numbers(fits[0], value, loc)
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(value, Mapping):
        for name, info in annotation.model_fields.items():
            if name in value:
                yield from booleans_for_numbers(info.annotation, value[name], (*loc, name))
    elif origin in (list, tuple, set, frozenset) and isinstance(value, list | tuple):
        # a fixed tuple (`tuple[int, str]`) types each place; `list[int]`, `tuple[int, ...]` all alike
        fixed = origin is tuple and bool(args) and args[-1] is not Ellipsis
        for index, item in enumerate(value[: len(args)] if fixed else value if args else ()):
            yield from booleans_for_numbers(args[index] if fixed else args[0], item, (*loc, str(index)))
    elif origin in (dict, Mapping) and len(args) == 2 and isinstance(value, Mapping):
        for key, item in value.items():
            yield from booleans_for_numbers(args[1], item, (*loc, str(key)))


def _could_hold(annotation: Any, value: Any) -> bool:
    """Whether a mapping or list `value` may be an `annotation` (a section, a list, a mapping type)."""
    if get_origin(annotation) is Annotated:
        return _could_hold(get_args(annotation)[0], value)
    origin = get_origin(annotation)
    if isinstance(value, Mapping):
        return origin in (dict, Mapping) or (
            isinstance(annotation, type) and issubclass(annotation, BaseModel)
        )
    if isinstance(value, list | tuple):
        return origin in (list, tuple, set, frozenset)
    return False
