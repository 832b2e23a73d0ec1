"""Notifiers: the webhook against a real local HTTP receiver, and the Discord bot up to Discord's HTTP
boundary — discord.py's real REST client talking to a local fake of the Discord routes it uses."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.testclient import TestClient
from pydantic import SecretStr
from svc_helpers import ServerThread, record, wait_for

from cliutil import run_captured
from netutil import free_port
from tldrlab.config import get_settings
from tldrlab.errors import ConfigError, ServiceUnavailableError
from tldrlab.kinds import submittable_kinds
from tldrlab.runs import RunStatus, create_run, open_registry, start_run
from tldrlab.service.app import create_app
from tldrlab.service.events import RunEvent
from tldrlab.service.notify import NotifySettings, configured_notifiers, redact
from tldrlab.service.notify.discord import (
    DISCORD_MESSAGE_LIMIT,
    MAX_PENDING_LINES,
    METRIC_ORDER,
    BotCommands,
    DiscordNotifier,
    DiscordRest,
    DmBatcher,
    FileWatchList,
    fit_message,
    format_event,
    open_watch_list,
)
from tldrlab.service.notify.webhook import WebhookNotifier
from tldrlab.service.queue import open_queue
from tldrlab.service.worker import WorkerConfig, build_worker

BURST = WorkerConfig(burst=True, heartbeat_s=0.1, poll_s=0.05)


def _receiver(fail_first: int) -> tuple[FastAPI, list[dict[str, Any]]]:
    app, received, calls = FastAPI(), [], itertools.count()

    @app.post("/hook")
    async def hook(request: Request) -> JSONResponse:
        if next(calls) < fail_first:
            return JSONResponse({"error": "busy"}, status_code=503)
        received.append(await request.json())
        return JSONResponse({"ok": True})

    return app, received


def test_webhook_posts_json_with_retries_and_redaction() -> None:
    app, received = _receiver(fail_first=2)
    with ServerThread(app) as server:
        notifier = WebhookNotifier(f"{server.url}/hook", retries=3, backoff_s=0.01, progress_every_s=60)
        notifier(
            RunEvent(
                type="failed",
                run_id="r1",
                status="failed",
                message="failed: cannot read /home/alice/corpus/secret.jsonl",
            )
        )
        notifier(RunEvent(type="progress", run_id="r1", step=1, metrics={"loss": 2.0}))
        notifier(RunEvent(type="progress", run_id="r1", step=2, metrics={"loss": 1.5}))  # throttled
        notifier(RunEvent(type="log", run_id="r1", message="a log line"))  # not sent
        notifier.flush()
        notifier.close()
    assert [b["event"] for b in received] == ["failed", "progress"]
    assert received[0]["message"] == "failed: cannot read <path>" and received[1]["metrics"] == {"loss": 2.0}
    assert notifier.delivered == 2 and notifier.failed == 0


def test_webhook_gives_up_after_bounded_retries() -> None:
    app, received = _receiver(fail_first=100)
    with ServerThread(app) as server:
        notifier = WebhookNotifier(f"{server.url}/hook", retries=2, backoff_s=0.01)
        notifier(RunEvent(type="completed", run_id="r2"))
        notifier.flush()
        notifier.close()
    assert received == [] and notifier.failed == 1


def test_an_event_with_a_metric_that_is_not_finite_reaches_the_webhook_and_so_do_later_ones() -> None:
    """A NaN or infinite metric (a diverged fp16 step's loss) has no JSON: httpx refused to encode it and
    the delivery thread died, so that event and every later one of the process were never sent."""
    app, received = _receiver(fail_first=0)
    with ServerThread(app) as server:
        notifier = WebhookNotifier(f"{server.url}/hook", retries=1, backoff_s=0.01)
        notifier(RunEvent(type="eval", run_id="r3", step=4, metrics={"eval_loss": math.nan, "ppl": math.inf}))
        notifier(RunEvent(type="completed", run_id="r3", status="completed"))
        notifier.flush(timeout_s=10)
        notifier.close()
    assert [b["event"] for b in received] == ["eval", "completed"]
    assert received[0]["metrics"] == {"eval_loss": None, "ppl": None}
    assert notifier.delivered == 2 and notifier.failed == 0


def test_format_event_and_batcher() -> None:
    line = format_event(
        RunEvent(type="progress", run_id="r", step=7, progress=0.5, metrics={"loss": 1.23456})
    )
    assert line == "**progress** `r`: step 7, 50%, loss=1.235"
    assert format_event(RunEvent(type="log", run_id="r", message="x")) is None
    assert "/" not in redact("saved /srv/tldrlab/runs/x/checkpoints/step-5.pt and C:\\data\\x.txt")
    now = [0.0]
    sent: list[str] = []
    batcher = DmBatcher(sent.append, min_interval_s=10, clock=lambda: now[0])
    batcher.add("one")
    assert batcher.flush() == 1
    batcher.add("two")
    batcher.add("three")
    assert batcher.flush() == 0  # rate limited: batched until the interval passes
    now[0] = 10.5
    assert batcher.flush() == 1 and sent == ["one", "two\nthree"]
    for _ in range(30):
        batcher.add("x" * 100)
    assert batcher.flush(force=True) == 2 and all(len(m) <= 1900 for m in sent)


def test_redact_keeps_urls_and_hides_file_paths() -> None:
    """A URL's path was taken for a file path: `https://host/a/b` left the machine as `https:/<path>`."""
    message = "POST https://hooks.example.com/a/b?x=1 failed; see http://localhost:8000/runs/r1/report"
    assert redact(message) == message
    assert redact("read file:///home/alice/secret.txt and /srv/x/y") == "read file://<path> and <path>"


def _fake_discord(token: str) -> tuple[FastAPI, dict[str, list[Any]]]:
    """Discord's routes the bot uses; `seen["unavailable"]`: the messages still to answer with a 503 (as
    Discord does while it is briefly down), before they are accepted again."""
    app = FastAPI()
    seen: dict[str, list[Any]] = {"auth": [], "dm": [], "messages": [], "unavailable": [0]}

    @app.get("/api/v10/users/@me")
    async def me(request: Request) -> JSONResponse:
        seen["auth"].append(request.headers.get("authorization"))
        if request.headers.get("authorization") != f"Bot {token}":
            return JSONResponse({"message": "401: Unauthorized", "code": 0}, status_code=401)
        return JSONResponse(
            {"id": "9001", "username": "tldrlab", "discriminator": "0", "avatar": None, "bot": True}
        )

    @app.post("/api/v10/users/@me/channels")
    async def dm(request: Request) -> JSONResponse:
        body = await request.json()
        seen["dm"].append(body)
        return JSONResponse({"id": "777", "type": 1, "recipients": [{"id": str(body["recipient_id"])}]})

    @app.post("/api/v10/channels/{channel_id}/messages")
    async def message(channel_id: str, request: Request) -> JSONResponse:
        body = await request.json()
        if seen["unavailable"][0] > 0:
            seen["unavailable"][0] -= 1
            return JSONResponse({"message": "503: Service Unavailable", "code": 0}, status_code=503)
        seen["messages"].append((channel_id, body["content"]))
        return JSONResponse(
            {"id": str(len(seen["messages"])), "channel_id": channel_id, "content": body["content"]}
        )

    return app, seen


def test_discord_dms_the_owner_about_watched_runs(
    monkeypatch: pytest.MonkeyPatch, tldrlab_home: Path
) -> None:
    token = "fake-bot-token-" + "c0ffee" * 4
    app, seen = _fake_discord(token)
    with ServerThread(app) as server:
        monkeypatch.setenv("TLDRLAB_DISCORD_TOKEN", token)
        monkeypatch.setenv("TLDRLAB_DISCORD_OWNER_ID", "4242")
        monkeypatch.setenv("TLDRLAB_DISCORD_API_BASE", f"{server.url}/api/v10")
        get_settings.cache_clear()
        watched = create_run("smoke", {"steps": 8, "checkpoint_every": 4}).id
        ignored = create_run("smoke", {"steps": 3}).id
        FileWatchList(tldrlab_home / "discord" / "watching.json").add(watched)
        for run_id in (watched, ignored):
            open_queue().enqueue(run_id)
        build_worker(config=BURST).run()  # attaches the notifiers the environment configures
        assert record(watched).status == RunStatus.COMPLETED
    assert seen["auth"] == [f"Bot {token}"]
    assert seen["dm"] == [{"recipient_id": 4242}]
    text = "\n".join(content for _, content in seen["messages"])
    assert all(channel == "777" for channel, _ in seen["messages"])
    assert f"**completed** `{watched}`" in text and "**checkpoint**" in text and ignored not in text
    assert str(tldrlab_home) not in text and "/" not in text


@pytest.mark.parametrize("where", ["file", "redis"])
def test_a_watched_run_leaves_the_watch_list_once_its_end_is_reported(
    where: str, monkeypatch: pytest.MonkeyPatch, tldrlab_home: Path, request: pytest.FixtureRequest
) -> None:
    # the watch list only grew: every run ever watched (each one `/train` started) was looked up on every
    # event of every run for good, in the JSON file or the Redis set
    token = "fake-bot-token-" + "c0ffee" * 4
    app, seen = _fake_discord(token)
    with ServerThread(app) as server:
        monkeypatch.setenv("TLDRLAB_DISCORD_TOKEN", token)
        monkeypatch.setenv("TLDRLAB_DISCORD_OWNER_ID", "4242")
        monkeypatch.setenv("TLDRLAB_DISCORD_API_BASE", f"{server.url}/api/v10")
        if where == "redis":
            monkeypatch.setenv("TLDRLAB_QUEUE_URL", request.getfixturevalue("redis_url"))
        get_settings.cache_clear()
        watch_list = open_watch_list()
        finished, waiting = (create_run("smoke", {"steps": 3}).id for _ in range(2))
        for run_id in (finished, waiting):
            watch_list.add(run_id)
        open_queue().enqueue(finished)  # the other one stays queued
        worker = build_worker(config=BURST)
        try:
            worker.run()
            wait_for(lambda: finished not in watch_list.ids(), 10, what="the finished run to leave the list")
        finally:
            close = getattr(worker.bus, "close", None)
            if close is not None:
                close()
    text = "\n".join(content for _, content in seen["messages"])
    assert f"**completed** `{finished}`" in text  # reported, then dropped
    assert watch_list.ids() == {waiting}


def test_discord_login_failure_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    app, _ = _fake_discord("the-right-token-0123456789")
    with ServerThread(app) as server:
        settings = NotifySettings(
            discord_token=SecretStr("wrong-token-0123456789"),
            discord_owner_id=1,
            discord_api_base=f"{server.url}/api/v10",
        )
        import discord

        with pytest.raises(discord.LoginFailure):
            configured_notifiers(settings)


def test_bot_commands_over_the_api(tldrlab_home: Path) -> None:
    watch_list = FileWatchList(tldrlab_home / "discord" / "watching.json")
    commands = BotCommands(cast(httpx.Client, TestClient(create_app())), owner_id=42, watch_list=watch_list)
    assert commands.handle(7, "runs") is None  # not the owner
    assert commands.handle(42, "runs", in_dm=False) is None  # not a DM
    assert commands.handle(42, "runs") == "no runs yet"
    queued = commands.handle(42, "train", "smoke")
    assert queued is not None and queued.startswith("queued `smoke-")
    run_id = queued.split("`")[1]
    assert watch_list.ids() == {run_id}
    assert run_id in (commands.handle(42, "runs") or "")
    assert "**queued**" in (commands.handle(42, "status", run_id) or "")
    assert "**cancelled**" in (commands.handle(42, "cancel", run_id) or "")
    assert "conflict" in (commands.handle(42, "cancel", run_id) or "")
    assert "not_found" in (commands.handle(42, "status", "nope") or "")
    assert "give a run id" in (commands.handle(42, "status", "../etc") or "")
    assert "JSON" in (commands.handle(42, "train", "{not json") or "")
    # any run kind: KIND {config}; the API's validation answers in the DM
    sized = commands.handle(42, "train", 'smoke {"steps": 3}')
    assert sized is not None and sized.startswith("queued `smoke-")
    commands.handle(42, "unwatch", sized.split("`")[1])
    build_worker(config=BURST).run()  # runs the 3-step smoke run (the first one was cancelled)
    done = commands.handle(42, "status", sized.split("`")[1]) or ""
    assert "**completed**" in done and "| final_loss |" in done  # the run's report, as the CLI prints it
    assert "steps" in (commands.handle(42, "train", 'smoke {"steps": 0}') or "")  # the 422 names the field
    unknown = commands.handle(42, "train", "dance {}") or ""
    assert "unknown_kind" in unknown and "choose one of elm_compare_lm, " in unknown  # listed, in order
    assert "invalid_config" in (commands.handle(42, "train", '{"model": "t5"}') or "")  # no data: a 422
    assert commands.handle(42, "unwatch", run_id) == f"stopped watching `{run_id}`" and not watch_list.ids()
    assert commands.handle(42, "watch", run_id) == f"watching `{run_id}`"
    assert "unknown command" in (commands.handle(42, "rm") or "")
    notifier = DiscordNotifier(lambda text: None, watch_list)
    notifier(RunEvent(type="completed", run_id=run_id))
    assert notifier.batcher.sent_messages == 1


def test_a_bad_notifier_setting_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # TLDRLAB_WEBHOOK_RETRIES=x (or TLDRLAB_DISCORD_OWNER_ID=abc) made every worker, `tldrlab serve`'s
    # included, and the Discord bot die with a pydantic traceback
    monkeypatch.setenv("TLDRLAB_WEBHOOK_RETRIES", "x")
    with pytest.raises(ConfigError, match=r"webhook_retries \(TLDRLAB_WEBHOOK_RETRIES\): Input should be"):
        build_worker(config=WorkerConfig(burst=True))


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("localhost:8000/hook", "not an http:// or https:// URL with a host"),
        ("http://[::1", r"not a URL \(Invalid port"),
        ("https://hooks.example.com:99999/x", "port 99999 is not between 1 and 65535"),
    ],
)
def test_a_webhook_url_that_cannot_be_posted_to_is_a_config_error(
    url: str, said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Such a URL was taken: every event then failed in the workers, retried and 'gave up after 3 tries' as
    if the receiver were down, or (a port httpx cannot read) ended the delivery thread for good."""
    monkeypatch.setenv("TLDRLAB_WEBHOOK_URL", url)
    with pytest.raises(ConfigError, match=rf"webhook_url \(TLDRLAB_WEBHOOK_URL\): {said}"):
        build_worker(config=WorkerConfig(burst=True))
    monkeypatch.setenv("TLDRLAB_WEBHOOK_URL", " https://hooks.example.com/x ")
    assert NotifySettings().webhook_url == "https://hooks.example.com/x"  # spaces around it are no error


def test_a_webhook_hears_of_an_api_run_from_queued_to_completed(
    tldrlab_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the queued event never reached a webhook: workers derive events from the run once they have claimed it
    # (from `started` on), and the API, the one process that saw the run queued, published nothing
    receiver, received = _receiver(fail_first=0)
    with ServerThread(receiver) as server:
        monkeypatch.setenv("TLDRLAB_WEBHOOK_URL", f"{server.url}/hook")
        client = TestClient(create_app())
        run_id = client.post("/runs", json={"kind": "smoke", "config": {"steps": 2}}).json()["id"]
        wait_for(lambda: len(received) == 1, 10, what="the queued event")
        assert received[0]["event"] == "queued" and received[0]["run_id"] == run_id
        assert received[0]["status"] == "queued" and received[0]["kind"] == "smoke"
        build_worker(config=BURST).run()
        wait_for(lambda: received[-1]["event"] == "completed", 10, what="the completed event")
    events = [body["event"] for body in received]
    assert events[:2] == ["queued", "started"] and events.count("queued") == 1


def test_a_burst_worker_delivers_its_last_events_to_a_slow_webhook_before_it_exits(
    tldrlab_home: Path, tmp_path: Path
) -> None:
    """The delivery thread is a daemon: a `tldrlab worker --burst` process returned as its run completed and
    exited with `completed` (and the checkpoint, the last eval) still queued, never sent to a webhook that
    takes a moment to answer."""
    app, received = FastAPI(), []

    @app.post("/hook")
    async def hook(request: Request) -> JSONResponse:
        await asyncio.sleep(0.3)  # a receiver that takes its time, as one across a network does
        received.append((await request.json())["event"])
        return JSONResponse({"ok": True})

    run_id = create_run("smoke", {"steps": 2}).id
    open_queue().enqueue(run_id)
    with ServerThread(app) as server:
        done = subprocess.run(
            [sys.executable, "-m", "tldrlab", "-q", "worker", "--burst", "--poll-s", "0.1"],
            env={**os.environ, "TLDRLAB_WEBHOOK_URL": f"{server.url}/hook"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert open_registry().get(run_id).status is RunStatus.COMPLETED
        assert received[0] == "started" and received[-1] == "completed", (received, done.stderr)


def test_a_process_exiting_tries_each_pending_event_once_when_the_webhook_refuses_connections() -> None:
    """At exit the pending events were delivered with their retries and backoff: against a receiver that
    refuses connections, 20 events held the process 15 s and most were still not tried."""
    script = (
        "from tldrlab.service.events import RunEvent\n"
        "from tldrlab.service.notify.webhook import WebhookNotifier\n"
        f"notifier = WebhookNotifier('http://127.0.0.1:{free_port()}/hook')\n"
        "for step in range(20):\n"
        "    notifier(RunEvent(type='checkpoint', run_id='r', step=step))\n"
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "not delivered" not in done.stderr, done.stderr
    assert done.stderr.count("after 1 tries") >= 19 and time.monotonic() - started < 10, done.stderr


def test_at_scale_out_each_event_reaches_a_webhook_once(
    tldrlab_home: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every worker subscribes the configured notifiers to Redis, where each receives every process's
    # events: with three workers, every webhook was sent three times
    receiver, received = _receiver(fail_first=0)
    with ServerThread(receiver) as server:
        monkeypatch.setenv("TLDRLAB_WEBHOOK_URL", f"{server.url}/hook")
        monkeypatch.setenv("TLDRLAB_QUEUE_URL", redis_url)
        get_settings.cache_clear()
        workers = [build_worker(config=BURST) for _ in range(3)]  # every worker has the notifiers
        client = TestClient(create_app())
        try:
            run_id = client.post("/runs", json={"kind": "smoke", "config": {"steps": 2}}).json()["id"]
            workers[0].run()
            wait_for(lambda: any(body["event"] == "completed" for body in received), 10, what="completed")
            time.sleep(1.0)  # time for any duplicate to arrive
        finally:
            for worker in workers:
                worker.bus.close()  # type: ignore[attr-defined]  # a RedisBus
    events = [body["event"] for body in received if body["run_id"] == run_id]
    assert events.count("queued") == 1 and events.count("started") == 1 and events.count("completed") == 1, (
        events
    )


def test_bot_commands_answer_when_the_api_is_down_or_answers_no_json(tldrlab_home: Path) -> None:
    # the API unreachable raised httpx.ConnectError, and an HTML error page (a proxy's 502) a JSONDecodeError,
    # out of BotCommands.handle: the slash command's interaction got no reply at all ("did not respond")
    watch_list = FileWatchList(tldrlab_home / "discord" / "watching.json")
    down = BotCommands(httpx.Client(base_url=f"http://127.0.0.1:{free_port()}", timeout=5), 42, watch_list)
    for command, argument in [("runs", ""), ("status", "smoke-1"), ("cancel", "smoke-1"), ("train", "smoke")]:
        reply = down.handle(42, command, argument) or ""
        assert reply.startswith("cannot reach the tldrlab API at http://127.0.0.1:"), reply
    proxy = FastAPI()

    @proxy.api_route("/{path:path}", methods=["GET", "POST"])
    async def bad_gateway(path: str) -> HTMLResponse:
        return HTMLResponse("<html><body>502 Bad Gateway</body></html>", status_code=502)

    behind = BotCommands(cast(httpx.Client, TestClient(proxy)), 42, watch_list)
    assert behind.handle(42, "runs") == "the tldrlab API answered HTTP 502 without a JSON object"
    assert behind.handle(42, "train", "smoke") == "the tldrlab API answered HTTP 502 without a JSON object"
    assert watch_list.ids() == set()


def test_on_redis_a_run_queued_while_no_worker_listened_reaches_the_webhook_once(
    tldrlab_home: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the API published `queued` on Redis pub/sub, which reaches only the processes listening right then:
    # with no worker up yet (starting, restarting) no webhook ever heard the run was queued
    receiver, received = _receiver(fail_first=0)
    with ServerThread(receiver) as server:
        monkeypatch.setenv("TLDRLAB_WEBHOOK_URL", f"{server.url}/hook")
        monkeypatch.setenv("TLDRLAB_QUEUE_URL", redis_url)
        get_settings.cache_clear()
        client = TestClient(create_app())
        run_id = client.post("/runs", json={"kind": "smoke", "config": {"steps": 2}}).json()["id"]
        time.sleep(0.3)
        assert received == []  # nobody listened
        workers = [build_worker(config=BURST) for _ in range(2)]
        try:
            workers[1].announce_queued()  # a second worker announcing as well: still one event
            workers[0].run()
            wait_for(lambda: any(body["event"] == "completed" for body in received), 10, what="completed")
            time.sleep(1.0)  # time for any duplicate to arrive
        finally:
            for worker in workers:
                worker.bus.close()  # type: ignore[attr-defined]  # a RedisBus
    queued = [body for body in received if body["run_id"] == run_id and body["event"] == "queued"]
    assert len(queued) == 1 and queued[0]["time"] == pytest.approx(record(run_id).created_at, abs=1e-3)
    assert [body["event"] for body in received].count("started") == 1


def test_a_sweeps_trials_are_queued_events_too(
    tldrlab_home: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a sweep's trials are queued runs, but the sweep published nothing when it queued them: a webhook heard
    # of each trial from `started` on
    from tldrlab.sweep.config import SweepConfig
    from tldrlab.sweep.runner import launch_sweep

    sweep = {
        "name": "queued-trials",
        "program": str(Path(__file__).parents[1] / "sweep" / "toy_program.py"),
        "method": "grid",
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"x": {"values": [0.1, 0.2]}, "steps": {"value": 2}},
    }
    receiver, received = _receiver(fail_first=0)
    with ServerThread(receiver) as server:
        monkeypatch.setenv("TLDRLAB_WEBHOOK_URL", f"{server.url}/hook")
        monkeypatch.setenv("TLDRLAB_QUEUE_URL", redis_url)
        get_settings.cache_clear()
        launch_sweep(SweepConfig(sweep=sweep, trials=2, quiet=True), echo=lambda line: None)
        trials = [r.id for r in open_registry().list(kind="trial")]
        assert len(trials) == 2
        wait_for(lambda: {b["run_id"] for b in received if b["event"] == "started"} >= set(trials), 10)
    for trial in trials:
        events = [body["event"] for body in received if body["run_id"] == trial]
        assert events.count("queued") == 1 and events.index("queued") < events.index("started"), events


def test_the_discord_bot_command_names_a_refused_token_or_an_unreachable_discord(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `tldrlab discord-bot` went straight to the gateway client, which ignored TLDRLAB_DISCORD_API_BASE and
    # died with discord.py's LoginFailure or aiohttp's connection error as a traceback
    app, seen = _fake_discord("the-right-token-0123456789")
    monkeypatch.setenv("TLDRLAB_DISCORD_TOKEN", "wrong-token-0123456789")
    monkeypatch.setenv("TLDRLAB_DISCORD_OWNER_ID", "42")
    with ServerThread(app) as server:
        monkeypatch.setenv("TLDRLAB_DISCORD_API_BASE", f"{server.url}/api/v10")
        code, _, err = run_captured(["discord-bot", "--api-url", "http://127.0.0.1:8000"], capsys)
    assert code == ConfigError.exit_code, err
    assert "refused the bot token in TLDRLAB_DISCORD_TOKEN" in err and "Traceback" not in err, err
    assert seen["auth"] == ["Bot wrong-token-0123456789"]
    monkeypatch.setenv("TLDRLAB_DISCORD_API_BASE", f"http://127.0.0.1:{free_port()}/api/v10")
    code, _, err = run_captured(["discord-bot"], capsys)
    assert code == ServiceUnavailableError.exit_code, err
    assert "cannot reach Discord at http://127.0.0.1:" in err and "Traceback" not in err, err


def test_unwatching_a_run_that_is_not_watched_says_so(tldrlab_home: Path) -> None:
    # /unwatch of an id never watched (a typo of a watched one) answered "stopped watching", so the typo
    # went unnoticed and the run kept sending DMs
    watch_list = FileWatchList(tldrlab_home / "discord" / "watching.json")
    commands = BotCommands(cast(httpx.Client, TestClient(create_app())), owner_id=42, watch_list=watch_list)
    watch_list.add("smoke-20260101-000000-abc123")
    assert commands.handle(42, "unwatch", "smoke-20260101-000000-abc124") == (
        "not watching `smoke-20260101-000000-abc124` (watching: `smoke-20260101-000000-abc123`)"
    )
    assert watch_list.ids() == {"smoke-20260101-000000-abc123"}
    assert commands.handle(42, "unwatch", "smoke-20260101-000000-abc123") == (
        "stopped watching `smoke-20260101-000000-abc123`"
    )
    assert commands.handle(42, "unwatch", "smoke-1") == "not watching `smoke-1` (watching: none)"


ANNOUNCE_CLAIM = "tldrlab:claimed:queued:"


def _claim_round_trips(bus: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The round-trips to Redis that carry announcement claims, as the number of claims each carried,
    counted on the bus's real client (the commands still go to Redis): a command sent alone is one
    round-trip, a pipeline's `execute` one however many commands it holds."""
    trips: list[int] = []
    client = bus.redis
    execute_command, pipeline = client.execute_command, client.pipeline

    def claims(commands: list[tuple[Any, ...]]) -> int:
        return sum(1 for args in commands if args[0] == "SET" and str(args[1]).startswith(ANNOUNCE_CLAIM))

    def counted_command(*args: Any, **options: Any) -> Any:
        if claims([args]):
            trips.append(1)
        return execute_command(*args, **options)

    def counted_pipeline(*args: Any, **options: Any) -> Any:
        pipe = pipeline(*args, **options)
        execute = pipe.execute

        def counted_execute(*args: Any, **options: Any) -> Any:
            if carried := claims([command for command, _ in pipe.command_stack]):
                trips.append(carried)
            return execute(*args, **options)

        pipe.execute = counted_execute
        return pipe

    monkeypatch.setattr(client, "execute_command", counted_command)
    monkeypatch.setattr(client, "pipeline", counted_pipeline)
    return trips


def test_announcing_queued_runs_costs_one_round_trip_per_pass_and_none_once_announced(
    tldrlab_home: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every reconcile pass sent one SET NX to Redis per run still waiting to be claimed, one round-trip
    # each: a backlog of N queued runs cost N round-trips per worker every few seconds, for days
    receiver, received = _receiver(fail_first=0)
    with ServerThread(receiver) as server:
        monkeypatch.setenv("TLDRLAB_WEBHOOK_URL", f"{server.url}/hook")
        monkeypatch.setenv("TLDRLAB_QUEUE_URL", redis_url)
        get_settings.cache_clear()
        waiting = [create_run("smoke", {"steps": 2}).id for _ in range(4)]
        workers = [build_worker(config=BURST) for _ in range(2)]
        first, second = (_claim_round_trips(worker.bus, monkeypatch) for worker in workers)
        try:
            workers[0].announce_queued()
            assert first == [4]  # every waiting run claimed in one round-trip
            workers[0].announce_queued()
            assert first == [4]  # known to be announced: nothing asked again
            waiting.append(create_run("smoke", {"steps": 2}).id)
            workers[0].announce_queued()
            assert first == [4, 1]  # only the new one
            workers[1].announce_queued()  # a worker that starts now asks once about all, and wins none
            assert second == [5]
            wait_for(lambda: len(received) >= 5, 10, what="5 queued events")
            time.sleep(1.0)  # time for any duplicate to arrive
        finally:
            for worker in workers:
                worker.bus.close()  # type: ignore[attr-defined]  # a RedisBus
    announced = [body["run_id"] for body in received if body["event"] == "queued"]
    assert sorted(announced) == sorted(waiting)  # each once, across both workers


def test_a_status_reply_fits_discords_2000_characters(tldrlab_home: Path) -> None:
    # /status of a completed run cut its report at a fixed 1,500 characters without saying where the rest
    # was, and stayed under Discord's 2,000 (which Discord refuses outright) only because the status line's
    # own caps happened to leave room (1,925 characters here: long metric names, every metric, a long
    # generate result); now one place cuts every reply to one message, marked, with the full report's URL
    commands = BotCommands(
        cast(httpx.Client, TestClient(create_app())),
        owner_id=42,
        watch_list=FileWatchList(tldrlab_home / "discord" / "watching.json"),
    )
    with start_run("generate", {"prompts": ["ROMEO:"]}) as run:
        run.log_metrics(step=123456, **{key: -1.234567e-5 for key in METRIC_ORDER})
        long_names = {f"compressed_pai_seed_{i}_eval_rougeLsum_max_reference": 0.123456 for i in range(4)}
        run.set_summary(**long_names)  # the completion message lists them
        text = " ".join(f"word{i}" for i in range(600))  # ~5,000 characters of generated text
        result = {"model": run.id, "outputs": [[text]]}
        (run.artifacts_dir / "result.json").write_text(json.dumps(result), encoding="utf-8")
    reply = commands.handle(42, "status", run.id) or ""
    assert "**completed**" in reply and "word1 word2" in reply  # the status line and the report's start
    assert len(reply) <= DISCORD_MESSAGE_LIMIT == 2000, len(reply)
    assert reply.endswith(f"…\nfull report: http://testserver/runs/{run.id}/report")  # marked, and where
    assert len(fit_message("x" * 5000)) == 2000 and fit_message("x" * 5000).endswith("x…")  # any reply
    # a reply that fits is left as it was
    short = commands.handle(42, "runs") or ""
    assert "…" not in short and run.id in short


def test_a_requeued_run_reaches_the_webhook_as_queued_again_once(
    tldrlab_home: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a run put back on the queue (its worker preempted or dead) was never announced again: the announcements
    # covered runs no worker had claimed yet (attempts = 0) and were claimed once per run (`queued:<id>`), so
    # a webhook heard `queued` once, then `started` of the second attempt out of nowhere
    from tldrlab.service.worker import requeue

    receiver, received = _receiver(fail_first=0)
    with ServerThread(receiver) as server:
        monkeypatch.setenv("TLDRLAB_WEBHOOK_URL", f"{server.url}/hook")
        monkeypatch.setenv("TLDRLAB_QUEUE_URL", redis_url)
        get_settings.cache_clear()
        run_id = create_run("smoke", {"steps": 2}).id
        workers = [build_worker(config=BURST) for _ in range(2)]
        try:
            workers[0].announce_queued()
            wait_for(lambda: len(received) == 1, 10, what="the first queued event")
            registry = open_registry()
            assert registry.claim(run_id, "gone:1:dead", stale_before=time.time())  # a worker took it
            requeue(registry, open_queue(get_settings()), run_id, "requeued: worker gone:1:dead stopped")
            for worker in workers:  # both announce it: still once
                worker.announce_queued()
                worker.announce_queued()
            wait_for(lambda: len(received) == 2, 10, what="the second queued event")
            workers[1].run()
            wait_for(lambda: any(body["event"] == "completed" for body in received), 10, what="completed")
            time.sleep(1.0)  # time for any duplicate to arrive
        finally:
            for worker in workers:
                worker.bus.close()  # type: ignore[attr-defined]  # a RedisBus
    events = [body["event"] for body in received if body["run_id"] == run_id]
    assert events[:3] == ["queued", "queued", "started"] and events.count("queued") == 2, events
    again = [body for body in received if body["event"] == "queued"][1]
    assert again["message"] == "requeued: worker gone:1:dead stopped"
    assert again["time"] > received[0]["time"]  # when it was queued again, not its creation


def test_without_redis_a_run_requeued_from_a_dead_worker_reaches_the_webhook_as_queued(
    tldrlab_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # on an in-process bus nothing announced a run a worker's reconcile put back on the queue (its dead
    # worker's tail never saw it requeued, and announcements are for Redis): a webhook heard `started` again
    # out of nowhere
    receiver, received = _receiver(fail_first=0)
    with ServerThread(receiver) as server:
        monkeypatch.setenv("TLDRLAB_WEBHOOK_URL", f"{server.url}/hook")
        run_id = create_run("smoke", {"steps": 2}).id
        registry = open_registry()
        assert registry.claim(run_id, "gone:1:dead", stale_before=time.time())  # its worker, then killed
        registry.update(run_id, heartbeat_at=time.time() - 3600)
        build_worker(config=BURST).run()  # reconciles it back onto the queue, then runs it
        wait_for(lambda: any(body["event"] == "completed" for body in received), 10, what="completed")
    events = [body for body in received if body["run_id"] == run_id and body["status"]]  # lifecycle events
    assert [body["event"] for body in events] == ["queued", "started", "completed"], events
    assert events[0]["message"] == (
        "requeued: worker gone:1:dead stopped responding; resuming from the last checkpoint"
    )


def test_train_answers_a_config_the_api_refuses_for_its_numbers_or_keys(tldrlab_home: Path) -> None:
    # `/train smoke {"steps": NaN}` (or 1e999, a lone surrogate) raised httpx's ValueError out of
    # BotCommands.handle, since the bot re-encoded the parsed config: the slash command got no reply at all
    # ("did not respond"); and a key given twice was silently the last, where the API refuses it. The config
    # text now reaches the API as written, and its refusal is the reply
    watch_list = FileWatchList(tldrlab_home / "discord" / "watching.json")
    commands = BotCommands(cast(httpx.Client, TestClient(create_app())), owner_id=42, watch_list=watch_list)
    for config, said in [
        ('{"steps": NaN}', "steps: Input should be a finite number"),
        ('{"steps": 1e999}', "steps: Input should be a finite number"),
        ('{"wandb": "\\ud800"}', "lone surrogate"),
        ('{"wandb": "café ☕"}', "wandb: "),
        ('{"steps": 3, "steps": 0}', "the key 'steps' is given twice"),
    ]:
        reply = commands.handle(42, "train", f"smoke {config}") or ""
        assert said in reply, (config, reply)
    assert watch_list.ids() == set() and open_registry().list() == []
    queued = commands.handle(42, "train", 'smoke {"steps": 3}') or ""
    assert queued.startswith("queued `smoke-"), queued
    assert record(queued.split("`")[1]).config["steps"] == 3


def test_an_unknown_kind_lists_every_kind_the_api_names(tldrlab_home: Path) -> None:
    # the API's message names every kind, but the bot cut error messages at 300 characters: `/train dance`
    # listed kinds up to lvm_tra… and never showed smoke, sweep, tokenizer or train
    commands = BotCommands(
        cast(httpx.Client, TestClient(create_app())),
        owner_id=42,
        watch_list=FileWatchList(tldrlab_home / "discord" / "watching.json"),
    )
    reply = commands.handle(42, "train", "dance {}") or ""
    assert "unknown_kind" in reply and "…" not in reply, reply
    assert all(kind.name in reply for kind in submittable_kinds()), reply


def test_a_line_held_back_by_the_rate_limit_goes_out_with_the_next_event(tldrlab_home: Path) -> None:
    # a line the rate limit held back (`started`, a second after `queued`) waited for an event that is not a
    # throttled progress one: an evaluation or a tokenizer run has none until it ends, so the owner heard
    # "queued" and then nothing until "completed", however long the run took
    now = [0.0]
    sent: list[str] = []
    watch_list = FileWatchList(tldrlab_home / "discord" / "watching.json")
    watch_list.add("evaluate-1")
    notifier = DiscordNotifier(sent.append, watch_list, min_interval_s=5, clock=lambda: now[0])
    notifier(RunEvent(type="queued", run_id="evaluate-1"))
    now[0] = 1.0
    notifier(RunEvent(type="started", run_id="evaluate-1"))
    assert len(sent) == 1  # held back: 5 s between messages
    for second in range(2, 60):
        now[0] = float(second)
        notifier(RunEvent(type="progress", run_id="evaluate-1", step=second, metrics={"loss": 1.0}))
    assert len(sent) == 2 and sent[1].startswith("**started** `evaluate-1`"), sent
    assert "**progress** `evaluate-1`: step 2" in sent[1]  # the first progress line passed its throttle
    assert sum("**progress**" in message for message in sent) == 1  # the rest stayed throttled


def test_lines_the_rate_limit_held_back_are_sent_when_the_notifier_closes(tldrlab_home: Path) -> None:
    # close() cancelled the flush timer and left the batch unsent: the second of two runs queued within the
    # interval was never announced to the owner when the process shut its notifier down
    token = "fake-bot-token-" + "c0ffee" * 4
    app, seen = _fake_discord(token)
    with ServerThread(app) as server:
        rest = DiscordRest(token, api_base=f"{server.url}/api/v10")
        watch_list = FileWatchList(tldrlab_home / "discord" / "watching.json")
        notifier = DiscordNotifier(lambda text: rest.send_dm(4242, text), watch_list, min_interval_s=60)
        try:
            for run_id in ("train-1", "train-2"):
                watch_list.add(run_id)
                notifier(RunEvent(type="queued", run_id=run_id, status="queued"))
            assert [content for _, content in seen["messages"]] == ["**queued** `train-1`"]  # held back
            notifier.close()
        finally:
            rest.close()
    assert [content for _, content in seen["messages"]] == ["**queued** `train-1`", "**queued** `train-2`"]


def test_lines_the_rate_limit_held_back_are_sent_when_the_process_exits(tldrlab_home: Path) -> None:
    # the flush timer is a daemon thread: a process exiting within the interval dropped the held-back line
    token = "fake-bot-token-" + "c0ffee" * 4
    app, seen = _fake_discord(token)
    with ServerThread(app) as server:
        script = (
            "from pathlib import Path\n"
            "from tldrlab.service.events import RunEvent\n"
            "from tldrlab.service.notify.discord import DiscordNotifier, DiscordRest, FileWatchList\n"
            f"rest = DiscordRest({token!r}, api_base={server.url + '/api/v10'!r})\n"
            f"watch_list = FileWatchList(Path({str(tldrlab_home / 'discord' / 'watching.json')!r}))\n"
            "send = lambda text: rest.send_dm(4242, text)\n"
            "notifier = DiscordNotifier(send, watch_list, min_interval_s=60)\n"
            "for run_id in ('train-1', 'train-2'):\n"
            "    watch_list.add(run_id)\n"
            "    notifier(RunEvent(type='queued', run_id=run_id, status='queued'))\n"
        )
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    assert [content for _, content in seen["messages"]] == ["**queued** `train-1`", "**queued** `train-2`"]


def test_lines_of_a_failed_dm_are_kept_for_the_next_try_and_the_ended_run_leaves_the_list(
    tldrlab_home: Path,
) -> None:
    # a failed DM dropped its batched lines, and when one was a run's end the run stayed watched for good
    now = [0.0]
    sent: list[str] = []
    discord_down = [True]

    def send(text: str) -> None:
        if discord_down[0]:
            raise httpx.ConnectError("Discord is down")
        sent.append(text)

    watch_list = FileWatchList(tldrlab_home / "discord" / "watching.json")
    for run_id in ("train-1", "train-2"):
        watch_list.add(run_id)
    notifier = DiscordNotifier(send, watch_list, min_interval_s=5, clock=lambda: now[0])
    notifier(RunEvent(type="started", run_id="train-1"))
    notifier(RunEvent(type="completed", run_id="train-1", status="completed"))
    assert sent == [] and watch_list.ids() == {"train-2"}  # its end waits for the next try, unwatched
    discord_down[0] = False
    now[0] = 10.0
    notifier(RunEvent(type="started", run_id="train-2"))
    assert sent == ["**started** `train-1`\n**completed** `train-1`\n**started** `train-2`"]
    discord_down[0] = True
    for second in range(20, 20 + 2 * MAX_PENDING_LINES):
        now[0] = float(second)
        notifier(RunEvent(type="checkpoint", run_id="train-2", step=second))
    assert len(notifier.batcher.pending) == MAX_PENDING_LINES  # bounded while Discord stays down
    assert notifier.batcher.pending[-1] == f"**checkpoint** `train-2`: step {20 + 2 * MAX_PENDING_LINES - 1}"
    notifier.close()


@pytest.mark.parametrize("content", ['"train-1"', '{"train-1": true}', "7", '["train-1", 7]'])
def test_a_watch_file_that_is_not_a_list_of_run_ids_is_refused_not_read_as_its_characters(
    tldrlab_home: Path, content: str
) -> None:
    path = tldrlab_home / "discord" / "watching.json"
    path.parent.mkdir(parents=True)
    path.write_text(content, encoding="utf-8")
    watch_list = FileWatchList(path)
    with pytest.raises(ConfigError, match="is not a JSON list of run ids"):
        watch_list.ids()
    with pytest.raises(ConfigError, match="is not a JSON list of run ids"):
        watch_list.add("train-2")
    assert path.read_text(encoding="utf-8") == content  # not overwritten
    sent: list[str] = []
    DiscordNotifier(sent.append, watch_list)(RunEvent(type="completed", run_id="t", status="completed"))
    assert sent == []  # a run's events are not broken by it, and nothing is sent for characters
    commands = BotCommands(httpx.Client(base_url="http://127.0.0.1:9"), 1, watch_list)
    assert "is not a JSON list of run ids" in (commands.handle(1, "unwatch", "train-1") or "")


@pytest.mark.parametrize("broken", ['"train-1"', "[not json", "directory"])
def test_train_with_a_broken_watch_file_is_refused_before_a_run_exists(
    tldrlab_home: Path, broken: str
) -> None:
    # `/train` queued the run, then failed to add it to the watch list: the owner read that the watch file
    # was broken (or, a directory in its place, "is a directory: give a file path") while a run nobody
    # watched went ahead; a file that was no JSON was read as no list and overwritten by the new run's id
    path = tldrlab_home / "discord" / "watching.json"
    if broken == "directory":
        path.mkdir(parents=True)
    else:
        path.parent.mkdir(parents=True)
        path.write_text(broken, encoding="utf-8")
    commands = BotCommands(
        cast(httpx.Client, TestClient(create_app())), owner_id=42, watch_list=FileWatchList(path)
    )
    reply = commands.handle(42, "train", 'smoke {"steps": 3}') or ""
    assert reply.startswith(f"{path} is not") and "fix or delete it" in reply, reply
    assert open_registry().list() == []  # nothing queued
    assert path.is_dir() if broken == "directory" else path.read_text(encoding="utf-8") == broken


@pytest.fixture
def discord_dms(tldrlab_home: Path) -> Iterator[tuple[DiscordNotifier, FileWatchList, dict[str, list[Any]]]]:
    """A Discord notifier DMing through discord.py's real REST client to the local fake of Discord (half a
    second between messages), its watch list, and what the fake received."""
    token = "fake-bot-token-" + "c0ffee" * 4
    app, seen = _fake_discord(token)
    with ServerThread(app) as server:
        rest = DiscordRest(token, api_base=f"{server.url}/api/v10")
        watch_list = FileWatchList(tldrlab_home / "discord" / "watching.json")
        notifier = DiscordNotifier(lambda text: rest.send_dm(4242, text), watch_list, min_interval_s=0.5)
        try:
            yield notifier, watch_list, seen
        finally:
            notifier.close()
            rest.close()


def test_a_line_the_rate_limit_held_back_goes_out_once_the_interval_passed_without_another_event(
    discord_dms: tuple[DiscordNotifier, FileWatchList, dict[str, list[Any]]],
) -> None:
    # a line the rate limit held back waited for the next event of a watched run: the API process, whose
    # notifier hears only `queued`, kept a run's `queued` line (the second of two runs queued within the
    # interval) until another run was queued, by which time the run itself had long ended
    notifier, watch_list, seen = discord_dms
    for run_id in ("train-1", "train-2"):
        watch_list.add(run_id)
        notifier(RunEvent(type="queued", run_id=run_id, status="queued"))
    assert [content for _, content in seen["messages"]] == ["**queued** `train-1`"]  # held: 0.5 s apart
    wait_for(lambda: len(seen["messages"]) == 2, 10, what="the held-back line, with no other event")
    assert seen["messages"][1][1] == "**queued** `train-2`"


def test_the_end_of_a_run_a_failed_dm_kept_is_sent_again_without_another_event(
    discord_dms: tuple[DiscordNotifier, FileWatchList, dict[str, list[Any]]],
) -> None:
    # the lines of a DM Discord refused (a run's end among them) were kept for the next try, which was the
    # next event of a watched run: the end of the last run to end was never sent
    notifier, watch_list, seen = discord_dms
    watch_list.add("train-1")
    seen["unavailable"][0] = 1  # Discord answers the run's end with a 503
    notifier(RunEvent(type="completed", run_id="train-1", status="completed"))
    assert seen["messages"] == [] and watch_list.ids() == set()
    wait_for(lambda: seen["messages"], 10, what="the run's end, sent again with no other event")
    assert [content for _, content in seen["messages"]] == ["**completed** `train-1`"]
