"""One way to name a model everywhere a command or a config takes one: `resolve_model_ref(ref) -> Path`.

A model reference is, tried in this order:

1. a path that exists as given (`~` expanded, relative to the working directory);
2. a path relative to the home (`runs/<run>/model`, as the docs write it, works from any directory);
3. a run id, or a unique prefix of one, from the run registry: that run's `model/` directory.

A run directory (one holding `model/`) stands for its `model/`. Further kinds of reference (aliases,
installed model names) are added as steps in `REF_RESOLVERS`, so every caller gets them at once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tldrlab.config import Settings, get_settings
from tldrlab.errors import InvalidInputError, NotFoundError
from tldrlab.runs.registry import open_registry

MODEL_SUBDIR = "model"
"""Where a run keeps its saved model: `<run_dir>/model`."""

RefResolver = Callable[[str, Settings], Path | None]
"""(reference, settings) -> the path it names, or None when this kind of reference does not apply."""


def _as_path(ref: str, settings: Settings) -> Path | None:
    path = Path(ref).expanduser()
    return path if path.exists() else None


def _under_home(ref: str, settings: Settings) -> Path | None:
    path = Path(ref).expanduser()
    if path.is_absolute():
        return None
    candidate = settings.home / path
    return candidate if candidate.exists() else None


def _run_id(ref: str, settings: Settings) -> Path | None:
    if not ref or "/" in ref or "\\" in ref:
        return None
    try:
        record = open_registry(settings).find(ref)
    except NotFoundError as exc:
        if "ambiguous" in exc.message:
            raise
        return None
    model_dir = Path(record.run_dir) / MODEL_SUBDIR
    if not model_dir.is_dir():
        raise NotFoundError(
            f"run {record.id} ({record.kind}, {record.status.value}) has no saved model in {model_dir}",
            run_id=record.id,
        )
    return model_dir


REF_RESOLVERS: list[RefResolver] = [_as_path, _under_home, _run_id]
"""The kinds of model reference, tried in order; the first that names something wins."""


def resolve_model_ref(ref: str | Path, settings: Settings | None = None) -> Path:
    """The model directory (or file) `ref` names: a path, a path under the home, or a run id.

    Raises NotFoundError, naming what was tried, when nothing matches.
    """
    settings = settings or get_settings()
    text = str(ref).strip()
    if not text:
        raise InvalidInputError("the model reference is empty: give a model directory or a run id")
    for resolver in REF_RESOLVERS:
        found = resolver(text, settings)
        if found is not None:
            nested = found / MODEL_SUBDIR
            if found.is_dir() and not (found / "config.json").exists() and nested.is_dir():
                return nested
            return found
    raise NotFoundError(
        f"no model named {text!r}: not a path (here or under the home {settings.home}) and not a run id"
    )


__all__ = ["MODEL_SUBDIR", "REF_RESOLVERS", "RefResolver", "resolve_model_ref"]
