"""Discord notifier (in progress)."""

from __future__ import annotations

from typing import Any


def discord_notifier(settings: Any) -> Any:
    raise NotImplementedError
