"""`tldrlab serve` (API + local workers) and `tldrlab worker` (one worker on any queue)."""

from __future__ import annotations

from typing import Any

import typer

from tldrlab.cli.options import config_command
from tldrlab.cli.runkinds import RunCommand, add
from tldrlab.logs import show_progress_bars_in_service
from tldrlab.service.worker import WorkerConfig, run_worker


def serve(config: Any) -> None:
    """Serve the API and web pages, with local workers taking jobs from the queue (and, when
    `retention.enabled` is set, a periodic cleanup by the retention policy).

    Example: tldrlab serve --port 8000 --workers 2
    """
    # lazy: loads fastapi, starlette, uvicorn (kept off `tldrlab --help`)
    from tldrlab.service.server import serve as run_server

    show_progress_bars_in_service()  # the API's own work (a digest's first-use model conversion) too
    run_server(**config.model_dump())


def worker(config: WorkerConfig) -> None:
    """Run one worker: take runs from the queue (embedded, or Redis when TLDRLAB_QUEUE_URL is set).

    Example: TLDRLAB_QUEUE_URL=redis://host:6379/0 tldrlab worker
    """
    # the console was configured by the root callback (quiet; `tldrlab --verbose worker` for every line)
    show_progress_bars_in_service()
    run_worker(config=config)


def discord_bot(
    api_url: str = typer.Option("http://127.0.0.1:8000", help="The tldrlab API the bot talks to."),
) -> None:
    """Run the Discord bot (owner-only DMs: /runs /status /cancel /train /watch /unwatch).

    Needs TLDRLAB_DISCORD_TOKEN and TLDRLAB_DISCORD_OWNER_ID. Example: tldrlab discord-bot --api-url URL
    """
    # lazy: loads httpx (kept off `tldrlab --help`)
    from tldrlab.service.notify.discord import run_bot

    run_bot(api_url)


def register(app: typer.Typer) -> None:
    config_command(app, "serve", "tldrlab.service.server:ServeConfig", serve)
    config_command(app, "worker", WorkerConfig, worker)
    app.command("discord-bot")(discord_bot)
    add(app, RunCommand("smoke", "smoke", "tldrlab smoke --steps 30 --json"))
