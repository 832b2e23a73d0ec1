"""Free-form fields: values no class describes, holding finite numbers only.

Config, request and option classes set `allow_inf_nan=False`, which refuses `inf` and `nan` in their typed
float fields. A field whose value no class describes (a summarizer's params, settings handed on to a backbone,
a sweep file's mapping) is a `FreeForm` instead of a plain `dict[str, Any]`: a number that is not finite
anywhere inside it (JSON's `Infinity`, `NaN` or `1e400`, YAML's `.inf`) is refused as pydantic refuses a typed
float, `Input should be a finite number`, at the path down to the number (`params.temperature`,
`model_settings.blocks.0.scale`), so the API answers 422 and the CLI one line naming it, before any work.

    params: FreeForm = Field(default_factory=dict)
    config: Annotated[dict[str, Any], ValidatedWhole("the run kind's config class")]
    model_settings: Annotated[FreeForm, FieldsOf(LVMConfig)] = Field(default_factory=dict)

`ValidatedWhole` marks a free-form field whose whole value another class validates later (a run request's
config, by its kind's config class, whose own free-form fields are `FreeForm`): that class refuses its
numbers with the paths people know it by. The contract test (tests/kinds/test_finite_configs.py) holds
every free-form field of every run config, request and option class to one of the two. `FieldsOf` marks a
`FreeForm` field that holds another class's fields after all, checked by its own validator, so that the
config reference, `--help` and the JSON schema can say which.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ValidationError
from pydantic_core import InitErrorDetails

T = TypeVar("T")
Loc = tuple[str | int, ...]


def not_finite(value: Any, loc: Loc = ()) -> Iterator[tuple[Loc, float]]:
    """(path, number) of every float that is not finite inside `value` (mappings and sequences walked)."""
    if isinstance(value, float):
        if not math.isfinite(value):
            yield loc, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from not_finite(item, (*loc, key if isinstance(key, str | int) else str(key)))
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            yield from not_finite(item, (*loc, index))


def refuse_not_finite(value: T) -> T:
    """`value` itself, or a ValidationError with pydantic's own `finite_number` error at the path of each
    number inside it that is not finite (pydantic puts the field's own path in front)."""
    problems = [
        InitErrorDetails(type="finite_number", loc=loc, input=number) for loc, number in not_finite(value)
    ]
    if problems:
        raise ValidationError.from_exception_data("free-form value", problems)
    return value


FreeForm = Annotated[dict[str, Any], AfterValidator(refuse_not_finite)]
"""A mapping no class describes: any JSON-like values, with finite numbers only."""


@dataclass(frozen=True)
class ValidatedWhole:
    """Marks a free-form field whose whole value `by` validates later, numbers included."""

    by: str


@dataclass(frozen=True)
class FieldsOf:
    """Marks a free-form field holding the fields of `config`, which the field's own validator checks them
    against (an LVM training's `model_settings`: LVMConfig), so that the config reference, `--help` and the
    JSON schema say what it takes. A field whose class a sibling field picks is marked
    `tldrlab.runs.paths.SettingsOf` instead (a training's `model_settings`, by its `model`)."""

    config: type[BaseModel]


RunConfigMap = Annotated[dict[str, Any], ValidatedWhole("the run kind's config class")]
"""A run's config as a request carries it: validated whole by its kind's config class
(`kinds.validate_config`, whose refusal lists each field), so its numbers are refused there."""
