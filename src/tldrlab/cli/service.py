"""`tldrlab serve` (API + local workers) and `tldrlab worker` (one worker on any queue)."""

from __future__ import annotations

import signal
import subprocess
import sys

import typer

from tldrlab.cli.runkinds import RunCommand, add
from tldrlab.config import get_settings
from tldrlab.service.periodic import PeriodicCleanup
from tldrlab.service.queue import queue_kind
from tldrlab.service.worker import WorkerConfig, run_worker
from tldrlab.threads import child_env


def _die_with_parent() -> None:
    """In a local worker (Linux): get SIGTERM when `serve` dies, even by SIGKILL, instead of lingering."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, help="TCP port."),
    workers: int = typer.Option(1, min=0, max=64, help="Local worker processes to start (0: API only)."),
    log_level: str = typer.Option("warning", help="uvicorn log level."),
) -> None:
    """Serve the API and web pages, with local workers taking jobs from the queue (and, when
    `retention.enabled` is set, a periodic cleanup by the retention policy).

    Example: tldrlab serve --port 8000 --workers 2
    """
    import uvicorn

    # lazy: loads fastapi, starlette (kept off `tldrlab --help`)
    from tldrlab.service.app import check_api_key_setting, create_app

    settings = get_settings()
    check_api_key_setting(settings)  # refuse a placeholder key before starting anything
    kind = queue_kind(settings)
    app = create_app(settings)
    procs = [
        subprocess.Popen(
            # each worker takes its share of the CPUs for its threads
            [sys.executable, "-m", "tldrlab", "worker"],
            env=child_env(workers),
            preexec_fn=_die_with_parent,
        )
        for _ in range(workers)
    ]
    cleanup = PeriodicCleanup(settings).start() if settings.retention.enabled else None
    typer.echo(f"tldrlab API on http://{host}:{port} ({kind} queue, {workers} local worker(s))", err=True)
    # lazy: loads torch (kept off `tldrlab --help`)
    from tldrlab.digest.local_model import warm_default_model

    warm_default_model()  # in the background: the first digest need not wait for the model to load

    def graceful_exit(signum: int, frame: object) -> None:
        raise SystemExit(0)

    # uvicorn shuts down on SIGTERM and then re-raises it to the previous handler: make that handler exit
    # through `finally`, so the workers get their SIGTERM instead of being orphaned.
    signal.signal(signal.SIGTERM, graceful_exit)
    try:
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
    finally:
        if cleanup is not None:
            cleanup.stop()
        for proc in procs:  # SIGTERM: running jobs checkpoint and go back on the queue
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def worker(
    burst: bool = typer.Option(False, help="Exit once the queue is empty."),
    heartbeat_s: float = typer.Option(2.0, help="Seconds between heartbeats."),
    stale_after_s: float = typer.Option(30.0, help="Heartbeat age that means a dead worker."),
    reconcile_every_s: float = typer.Option(10.0, help="Seconds between checks for runs of dead workers."),
    max_attempts: int = typer.Option(5, help="Executions of a run before giving up on it."),
    backoff_base_s: float = typer.Option(5.0, help="First retry delay after a transient failure (doubles)."),
    poll_s: float = typer.Option(0.2, help="Idle polling interval of the embedded queue."),
) -> None:
    """Run one worker: take runs from the queue (embedded, or Redis when TLDRLAB_QUEUE_URL is set).

    Example: TLDRLAB_QUEUE_URL=redis://host:6379/0 tldrlab worker
    """

    # the console was configured by the root callback (quiet; `tldrlab --verbose worker` for every line)
    config = WorkerConfig(
        heartbeat_s=heartbeat_s,
        stale_after_s=stale_after_s,
        reconcile_every_s=reconcile_every_s,
        max_attempts=max_attempts,
        backoff_base_s=backoff_base_s,
        poll_s=poll_s,
        burst=burst,
    )
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
    app.command("serve")(serve)
    app.command("worker")(worker)
    app.command("discord-bot")(discord_bot)
    add(app, RunCommand("smoke", "smoke", "tldrlab smoke --steps 30 --json"))
