"""Typed configs of the `sweep` and `trial` run kinds (no torch, no optuna: the API validates with them)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator

from tldrlab.budget import field_errors
from tldrlab.configmodel import ConfigModel
from tldrlab.errors import ConfigError
from tldrlab.freeform import FreeForm
from tldrlab.runs.paths import ServerOnly
from tldrlab.sweep.spec import parse_sweep


class SweepConfig(ConfigModel):
    """Kind `sweep`: run (or resume) a W&B sweep on Optuna until the study holds `trials` finished trials."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    sweep: FreeForm
    """The sweep file's mapping: method, metric, parameters, program (tldrlab.train, tldrlab.experiment,
    tldrlab.elm or a script with `command`), config (the program's base config), early_terminate, ..."""
    source: Annotated[str | None, ServerOnly()] = None
    """The sweep file it came from, if any (a relative `program` path resolves against its directory)."""
    trials: int | None = Field(default=None, ge=1)
    """Total finished trials wanted in the study (None: run_cap, the grid's size, or 10)."""
    workers: int = Field(default=1, ge=1, le=64)
    """Worker processes sharing the study."""
    storage: Annotated[str | None, ServerOnly()] = None
    """Study storage: sqlite:///PATH or postgresql://...; None: SQLite file <home>/sweeps.db."""
    study: str | None = None
    """Study name (None: the sweep's `name`, else the file's stem); the same name resumes the study."""
    quiet: bool = False
    """No progress bars or run logs inside trials."""

    @field_validator("sweep")
    @classmethod
    def _parses(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            parse_sweep(value)
        except ConfigError as exc:
            # at the spec's key it refuses (`method`, `parameters.lr.min`), under `sweep`: pydantic puts the
            # field's own path in front. Placed at `sweep` alone, a client had nothing to point at
            if placed := exc.details.get("errors"):
                raise field_errors("SweepConfig", [(tuple(e["loc"]), e["msg"]) for e in placed]) from None
            raise ValueError(exc.message) from None
        return value


class TrialConfig(ConfigModel):
    """Kind `trial` (started by a sweep, not submitted): one trial of a command-line or experiment program
    (tldrlab training programs run as their own kinds: train, elm_train, lvm_train)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    program: Literal["command", "experiment"]
    """What the trial runs: the sweep's command line, or one arm of the dendrite experiment."""
    params: FreeForm
    """The trial's parameter values (dotted names), as the sweep's sampler chose them."""
    sweep: FreeForm
    """The sweep's mapping (program, command, config, metric, ...)."""
    source: Annotated[str | None, ServerOnly()] = None
    """The sweep file it came from, if any."""
