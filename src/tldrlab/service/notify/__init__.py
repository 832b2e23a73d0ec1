"""Notifiers by registry: `webhook` (POST JSON) and `discord` (owner-only DMs through a bot).

A notifier is a callable taking a `RunEvent`. `attach_configured_notifiers(bus)` subscribes the ones the
environment configures (TLDRLAB_WEBHOOK_URL; TLDRLAB_DISCORD_TOKEN + TLDRLAB_DISCORD_OWNER_ID) to a worker's
event bus. Messages never carry corpus text or file paths (`redact`).
"""

from __future__ import annotations

from collections.abc import Callable

from tldrlab.service.events import EventBus
from tldrlab.service.notify.base import Notifier, NotifySettings, notify_settings, redact
from tldrlab.service.notify.discord import discord_notifier
from tldrlab.service.notify.webhook import WebhookNotifier

__all__ = [
    "NOTIFIERS",
    "Notifier",
    "NotifySettings",
    "attach_configured_notifiers",
    "configured_notifiers",
    "redact",
]


def _webhook(settings: NotifySettings) -> Notifier:
    assert settings.webhook_url
    return WebhookNotifier(
        settings.webhook_url, timeout_s=settings.webhook_timeout_s, retries=settings.webhook_retries
    )


def _discord(settings: NotifySettings) -> Notifier:
    return discord_notifier(settings)


NOTIFIERS: dict[str, Callable[[NotifySettings], Notifier]] = {"webhook": _webhook, "discord": _discord}


def configured_notifiers(settings: NotifySettings | None = None) -> list[Notifier]:
    settings = settings or notify_settings()
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
