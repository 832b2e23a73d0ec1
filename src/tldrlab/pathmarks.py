"""The path-like markers of config fields (`InputPath`, `OutputPath`, `ModelRef`), at the bottom layer so
that any options class may mark its paths with them, a data command's as a run config's (`tldrlab.runs.paths`
re-exports them beside the other markers and walks a config for them). Each also validates its field: a blank
value is refused naming it, wherever the value comes from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import CoreSchema, core_schema

__all__ = ["InputPath", "ModelRef", "OutputPath"]


class _NotBlank:
    """A path-like marker also validates its field: a blank value (empty or only whitespace) is refused,
    naming the field, wherever the config comes from (flags, a config file, an API body). Path("") is
    Path("."), so an empty path would otherwise quietly mean the working directory (the server's, over
    the API) and fail far from its cause ("no saved model in /home/me")."""

    wanted = "a path"

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def _check(self, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError(f"is empty: give {self.wanted}")
        return value


@dataclass(frozen=True)
class InputPath(_NotBlank):
    """A file or directory the run reads."""

    wanted = "a file or directory"


@dataclass(frozen=True)
class OutputPath(_NotBlank):
    """A file or directory the run writes."""

    wanted = "a file or directory to write (or leave it unset)"


@dataclass(frozen=True)
class ModelRef(_NotBlank):
    """A model reference (`tldrlab.models.resolve.resolve_model_ref`): a name, a run id or a path; `keep`
    lists special values the field also takes (`scratch`), passed through as they are."""

    keep: tuple[str, ...] = ()
    wanted = "a model directory, a model name or a run id"
