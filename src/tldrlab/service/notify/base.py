"""What the notifiers share: the `Notifier` type, their settings and `redact`."""

from __future__ import annotations

import re
from collections.abc import Callable

from pydantic import SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from tldrlab.config import settings_error
from tldrlab.service.events import RunEvent

Notifier = Callable[[RunEvent], None]


class NotifySettings(BaseSettings):
    """Notifier settings from `TLDRLAB_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="TLDRLAB_", extra="ignore", use_attribute_docstrings=True)

    webhook_url: str | None = None
    """POST every lifecycle, checkpoint and eval event (and throttled progress) here as JSON."""
    webhook_timeout_s: float = 5.0
    """Timeout of one webhook POST."""
    webhook_retries: int = 3
    """Attempts per event (exponential backoff between them)."""
    discord_token: SecretStr | None = None
    """Bot token: enables the Discord notifier."""
    discord_owner_id: int | None = None
    """The only Discord user the bot talks to (DMs only)."""
    discord_api_base: str | None = None
    """Discord REST base URL (tests point it at a local fake)."""


def notify_settings() -> NotifySettings:
    """The notifier settings; a bad value (TLDRLAB_WEBHOOK_RETRIES=x, TLDRLAB_DISCORD_OWNER_ID=abc) is a
    ConfigError naming it, not a pydantic traceback from every worker and the bot."""
    try:
        return NotifySettings()
    except ValidationError as exc:
        raise settings_error(exc, toml=False) from None


_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][\w.@+~-]+){2,}[\\/]?")


def redact(text: str | None, limit: int = 300) -> str:
    """A message fit to leave the machine: file paths replaced, length capped."""
    if not text:
        return ""
    cleaned = _PATH.sub("<path>", text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
