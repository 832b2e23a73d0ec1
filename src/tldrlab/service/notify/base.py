"""What the notifiers share: the `Notifier` type, their settings and `redact`."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
from pydantic import SecretStr, ValidationError, field_validator
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

    @field_validator("webhook_url", mode="before")
    @classmethod
    def _webhook_address(cls, value: Any) -> Any:
        # checked once, here: a URL that can never be posted to (`localhost:8000/hook` without its scheme,
        # `http://[::1`) made every event fail in the worker, retried with backoff then "gave up after 3
        # tries" as if the receiver were down, or (a port httpx cannot parse) ended the delivery thread
        if not isinstance(value, str) or not value.strip():
            return value or None
        text = value.strip()
        try:
            url = httpx.URL(text)
            port = url.port
        except httpx.InvalidURL as exc:
            raise ValueError(f"not a URL ({exc})") from None
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("not an http:// or https:// URL with a host, e.g. https://example.com/hook")
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"port {port} is not between 1 and 65535")
        return text


def notify_settings() -> NotifySettings:
    """The notifier settings; a bad value (TLDRLAB_WEBHOOK_RETRIES=x, TLDRLAB_DISCORD_OWNER_ID=abc) is a
    ConfigError naming it, not a pydantic traceback from every worker and the bot."""
    try:
        return NotifySettings()
    except ValidationError as exc:
        raise settings_error(exc, toml=False) from None


_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][\w.@+~-]+){2,}[\\/]?")
# a URL with a host (`https://host/a/b`, not `file:///home/...`): matched first so that its path is not taken
# for a file path, which left `https:/<path>` of the address a message names
_URL_OR_PATH = re.compile(r"(?P<url>[A-Za-z][\w+.-]*://[^\s/]\S*)|" + _PATH.pattern)


def redact(text: str | None, limit: int = 300) -> str:
    """A message fit to leave the machine: file paths replaced (URLs with a host kept), length capped."""
    if not text:
        return ""
    cleaned = _URL_OR_PATH.sub(lambda match: match.group("url") or "<path>", text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
