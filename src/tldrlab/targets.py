"""Lazy references: "module:function" strings that registries hold instead of imports.

    execute = load_target("tldrlab.train.jobs:train_job")   # imports tldrlab.train.jobs now

A registry that sits below the code it names (run kinds, sweep programs) keeps strings, so importing the
registry stays cheap and the layers stay one-way.
"""

from __future__ import annotations

import importlib
from typing import Any

from tldrlab.errors import DependencyMissingError


def load_target(target: str) -> Any:
    """The object a "module:function" string names (importing the module now)."""
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise DependencyMissingError(f"{target} is not available here ({exc.name} is missing)") from exc
    return getattr(module, attribute)
