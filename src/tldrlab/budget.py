"""The model parameter budget: a run config whose settings would build a model bigger than the
`max_model_parameters` setting (`TLDRLAB_MAX_MODEL_PARAMETERS`) is refused while it is validated, naming the
field, so `POST /runs` answers 422 and the command line exits with the message, before a run exists and
before a worker tries to allocate the model.

    within_budget(count, loc=("model_settings",), title="TrainJobConfig")   # ValidationError when over
    field_error("TrainJobConfig", ("model",), "unknown model 'x'")           # an error at that field

Config classes call these from their validators. The counts come from the model families themselves
(`tldrlab.models.registry.parameter_count`, `tldrlab.lvm.config.lvm_parameter_count`, ...), computed from
the dimensions alone: nothing is allocated and no torch is imported.

Some dimensions are known only once the run reads its data (an LVM's vector width from its sequences file,
the vocabulary of a tokenizer directory), so a run counts its model again with them before allocating it,
with the same counting function its config's validator used:

    within_budget_as_read(count, [ReadDimension(("model_settings", "dim"), 384, 4096, "dim comes from ...")])
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from tldrlab.config import get_settings
from tldrlab.errors import InvalidConfigError, error_message

Loc = tuple[str | int, ...]


def field_error(title: str, loc: Loc, message: str) -> ValidationError:
    """A validation error at `loc` (relative to the model being validated; pydantic prefixes the path of
    the model inside its parents), for a model validator that checks several fields together."""
    return field_errors(title, [(loc, message)])


def field_errors(title: str, problems: list[tuple[Loc, str]]) -> ValidationError:
    """One validation error holding each `(loc, message)` of `problems` (see `field_error`)."""
    details = [
        InitErrorDetails(
            type=PydanticCustomError("value_error", "{message}", {"message": message}), loc=loc, input=None
        )
        for loc, message in problems
    ]
    return ValidationError.from_exception_data(title, details)


def nested_errors(title: str, loc: Loc, exc: ValidationError) -> ValidationError:
    """`exc`'s errors (from validating a sub-config by hand) moved under `loc`."""
    details = [
        InitErrorDetails(
            type=PydanticCustomError("value_error", "{message}", {"message": error_message(error)}),
            loc=(*loc, *error["loc"]),
            input=error.get("input"),
        )
        for error in exc.errors()
    ]
    return ValidationError.from_exception_data(title, details)


def over_budget(count: int) -> str | None:
    """Why a model of `count` parameters is refused, or None when it is within the budget."""
    limit = get_settings().max_model_parameters
    if count <= limit:
        return None
    return f"{count:,} parameters ({count:.3g}), above the limit of {limit:,} (TLDRLAB_MAX_MODEL_PARAMETERS)"


def within_budget(count: int | None, *, loc: Loc, title: str) -> None:
    """ValidationError at `loc` when a model of `count` parameters is over the budget (None: not bounded,
    e.g. a pretrained checkpoint)."""
    if count is not None and (reason := over_budget(count)) is not None:
        raise field_error(title, loc, reason)


@dataclass(frozen=True)
class ReadDimension:
    """A dimension of a model that its run reads from its data, where its config's validation counted a
    configured value instead (an LVM's `dim`, counted as the settings' 384, is its sequences' vector
    width)."""

    loc: tuple[str, ...]
    """The config field the validation counted it as (`("model_settings", "dim")`)."""
    counted: int
    """The value the validation counted."""
    value: int
    """The value the run read."""
    source: str
    """Where the value came from, for the refusal: "dim comes from the sequences file P, whose vectors have
    4096 dimensions"."""


def within_budget_as_read(
    count: int | None,
    dimensions: list[ReadDimension],
    *,
    unchanged: list[tuple[tuple[str, ...], str]] | None = None,
) -> None:
    """InvalidConfigError when a model of `count` parameters, counted with the `dimensions` its run read from
    its data, is over the budget (None: not bounded), before the run allocates it: the config was within the
    budget as validated, so the refusal names each field whose data made the model bigger than counted (all
    of `dimensions` when none did), worded as the validation words a field, with where its value came from:
    `model_settings.dim: 1,600,000 parameters (...), above the limit of ... (dim comes from ...)`.

    `unchanged` (each a field's path and what its value adds) names the fields that make the count when no
    dimension grew, instead of all of `dimensions`: a config whose own settings were not counted as such at
    validation (an `elm_optimize` trial's searched hidden_dim) is too big because of them, not its data."""
    if count is None or (reason := over_budget(count)) is None:
        return
    grown = [(d.loc, d.source) for d in dimensions if d.value > d.counted]
    named = grown or unchanged or [(d.loc, d.source) for d in dimensions]
    raise InvalidConfigError.at_fields((loc, f"{reason} ({note})") for loc, note in named)
