"""Notifiers by registry: `webhook` (POST JSON) and `discord` (owner-only DMs through a bot).

A notifier is a callable taking a `RunEvent`. `attach_configured_notifiers(bus)` subscribes the ones the
environment configures (TLDRLAB_WEBHOOK_URL; TLDRLAB_DISCORD_TOKEN + TLDRLAB_DISCORD_OWNER_ID) to a worker's
event bus. Messages never carry corpus text or file paths (`redact`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from tldrlab.service.events import EventBus, RunEvent

Notifier = Callable[[RunEvent], None]


class NotifySettings(BaseSettings):
    """Notifier settings from `TLDRLAB_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="TLDRLAB_", extra="ignore")

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


_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][\w.@+~-]+){2,}[\\/]?")


def redact(text: str | None, limit: int = 300) -> str:
    """A message fit to leave the machine: file paths replaced, length capped."""
    if not text:
        return ""
    cleaned = _PATH.sub("<path>", text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def _webhook(settings: NotifySettings) -> Notifier:
    from tldrlab.service.notify.webhook import WebhookNotifier

    assert settings.webhook_url
    return WebhookNotifier(
        settings.webhook_url, timeout_s=settings.webhook_timeout_s, retries=settings.webhook_retries
    )


def _discord(settings: NotifySettings) -> Notifier:
    from tldrlab.service.notify.discord import discord_notifier

    return discord_notifier(settings)


NOTIFIERS: dict[str, Callable[[NotifySettings], Notifier]] = {"webhook": _webhook, "discord": _discord}


def configured_notifiers(settings: NotifySettings | None = None) -> list[Notifier]:
    settings = settings or NotifySettings()
    names = []
    if settings.webhook_url:
        names.append("webhook")
    if settings.discord_token and settings.discord_owner_id:
        names.append("discord")
    return [NOTIFIERS[name](settings) for name in names]


def attach_configured_notifiers(bus: EventBus, settings: NotifySettings | None = None) -> int:
    notifiers = configured_notifiers(settings)
    for notifier in notifiers:
        bus.subscribe(notifier)
    return len(notifiers)
