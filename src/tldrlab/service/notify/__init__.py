"""Notifiers by registry: `webhook` (POST JSON) and `discord` (owner-only DMs through a bot).

A notifier is a callable taking a `RunEvent`. `attach_configured_notifiers(bus)` subscribes the ones the
environment configures (TLDRLAB_WEBHOOK_URL; TLDRLAB_DISCORD_TOKEN + TLDRLAB_DISCORD_OWNER_ID) to a worker's
event bus. Messages never carry corpus text or file paths (`redact`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from tldrlab.service.events import EventBus, RunEvent
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
    """Subscribe the configured notifiers to `bus`. Every worker (and the API) attaches them, and on Redis
    every subscribed process receives every process's events: each event is handed to a notifier of one
    process only (`first_to_claim`), or three workers sent every webhook three times."""
    notifiers = configured_notifiers(settings)
    for notifier in notifiers:
        bus.subscribe(_once_per_event(bus, notifier))
    return len(notifiers)


def _once_per_event(bus: EventBus, notifier: Notifier) -> Callable[[RunEvent], None]:
    name = type(notifier).__name__

    def deliver(event: RunEvent) -> None:
        # the same event arrives identical in every process: its JSON names it
        digest = hashlib.sha256(event.model_dump_json().encode()).hexdigest()
        if bus.first_to_claim(f"{name}:{digest}"):
            notifier(event)

    return deliver
