"""Discord notifier and bot (personal mode): owner-only DMs, watch/unwatch, /runs /status /cancel /train (any
run kind).

Layers, so that everything up to Discord's HTTP boundary is testable here:
- plain logic: `format_event` (no corpus text, no file paths), `DmBatcher` (rate-limited, batched DMs),
  `WatchList` (watched run ids, a JSON file under the home or the Redis set `discord:watching`),
  `BotCommands.handle` (owner-only command handling over the tldrlab HTTP API);
- `DiscordRest`: the real REST client — discord.py's `HTTPClient` on a private event loop; its base URL is
  `TLDRLAB_DISCORD_API_BASE` when set (tests point it at a local fake of the few routes used);
- `run_bot`: the gateway bot (discord.py `Client` + slash commands) wiring commands to `BotCommands`.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import httpx

from tldrlab.config import Settings, get_settings
from tldrlab.errors import ConfigError, InvalidInputError, ServiceUnavailableError
from tldrlab.runs.atomic import atomic_write_text
from tldrlab.service.events import RunEvent
from tldrlab.service.notify.base import NotifySettings, notify_settings, redact
from tldrlab.service.redis_outage import redis_client

log = logging.getLogger("tldrlab.notify.discord")
# Discord refuses a message whose content is over 2000 characters (code points, as Python's len counts)
DISCORD_MESSAGE_LIMIT = 2000
MAX_MESSAGE = 1900  # a batch of event lines stays well under the limit
MAX_PENDING_LINES = 200
"""Lines kept for the next try while DMs fail (Discord down, refusing): beyond it the oldest are given up."""
RETRY_MAX_S = 300.0
"""Longest wait between tries of lines kept while DMs fail (the wait doubles from the rate limit's on)."""
CLOSE_WAIT_S = 10.0
"""Longest a notifier's close (and so its process's exit) waits for the lines left in its batch to go."""
ENDED = ("completed", "failed", "cancelled")
"""The events of a run that has ended: its line goes out at once, and the run leaves the watch list."""
METRIC_ORDER = ("loss", "train_loss", "eval_loss", "perplexity", "eval_perplexity", "rougeL", "lr")


# -- formatting ----------------------------------------------------------------------------------------------
def fit_message(text: str, *, more: str = "", limit: int = DISCORD_MESSAGE_LIMIT) -> str:
    """`text` as it is when it fits one Discord message, else cut with a visible "…" followed by `more`
    (where the full text is): Discord refuses a longer message outright, so the owner would get nothing."""
    if len(text) <= limit:
        return text
    tail = f"…\n{more}" if more else "…"
    return text[: max(limit - len(tail), 0)] + tail[:limit]


def format_event(event: RunEvent) -> str | None:
    """One line for a DM, or None for events not worth a message. Numbers and statuses only."""
    if event.type == "log":
        return None
    head = f"**{event.type}** `{event.run_id}`"
    details = []
    if event.step is not None:
        details.append(f"step {event.step}")
    if event.progress is not None:
        details.append(f"{event.progress:.0%}")
    shown = [k for k in METRIC_ORDER if k in event.metrics] or sorted(event.metrics)[:3]
    details += [f"{k}={event.metrics[k]:.4g}" for k in shown[:4]]
    if event.message and event.type in ("completed", "failed", "cancelled", "queued"):
        details.append(redact(event.message, limit=200))
    return head + (": " + ", ".join(details) if details else "")


class DmBatcher:
    """Collects lines and sends them as one message at most every `min_interval_s` seconds."""

    def __init__(
        self,
        send: Callable[[str], None],
        *,
        min_interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.send = send
        self.min_interval_s = min_interval_s
        self.clock = clock
        self.pending: list[str] = []
        self.last_sent = -1e18
        self.sent_messages = 0
        self._lock = threading.Lock()

    def add(self, line: str) -> None:
        with self._lock:
            self.pending.append(line)
            self._keep_bounded()

    def _keep_bounded(self) -> None:
        if len(self.pending) > MAX_PENDING_LINES:
            given_up = len(self.pending) - MAX_PENDING_LINES
            del self.pending[:given_up]
            log.warning(f"discord DMs failing: gave up the {given_up} oldest lines, {MAX_PENDING_LINES} kept")

    def flush(self, force: bool = False) -> int:
        """Send what is pending if the rate limit allows (or `force`); returns messages sent. When a send
        raises, the lines not sent are pending again (for the next flush) and the error is raised."""
        with self._lock:
            if not self.pending or (not force and self.clock() - self.last_sent < self.min_interval_s):
                return 0
            lines, self.pending = self.pending, []
            self.last_sent = self.clock()
        messages: list[list[str]] = [[]]
        length = -1
        for line in lines:
            line = fit_message(line, limit=MAX_MESSAGE)
            if messages[-1] and length + 1 + len(line) > MAX_MESSAGE:
                messages.append([])
                length = -1
            messages[-1].append(line)
            length += 1 + len(line)
        for sent, message in enumerate(messages):
            try:
                self.send("\n".join(message))
            except Exception:
                # the lines were dropped with the failed DM, a run's end among them: kept for the next try
                with self._lock:
                    self.pending = [line for unsent in messages[sent:] for line in unsent] + self.pending
                    self._keep_bounded()
                self.sent_messages += sent
                raise
        self.sent_messages += len(messages)
        return len(messages)


# -- watch list ----------------------------------------------------------------------------------------------
class WatchList(Protocol):
    def add(self, run_id: str) -> None: ...
    def remove(self, run_id: str) -> None: ...
    def ids(self) -> set[str]: ...


class FileWatchList:
    """Watched run ids in `<home>/discord/watching.json` (embedded mode)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def ids(self) -> set[str]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return set()
        except (OSError, ValueError) as exc:  # a directory in its place, no permission, bytes not UTF-8
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            message = f"{self.path} is not a readable watch list ({reason}): fix or delete it"
            raise ConfigError(message) from None
        if not text.strip():
            return set()
        try:
            watched = json.loads(text)
        except ValueError:
            # read as no list at all, it was overwritten by the next /watch or /train: every id it held lost
            raise ConfigError(f"{self.path} is not JSON (a list of run ids): fix or delete it") from None
        if not isinstance(watched, list) or not all(isinstance(run_id, str) for run_id in watched):
            # a JSON string was read as the set of its characters (a number raised TypeError in every event):
            # refused rather than guessed at, and not overwritten by the next /watch
            raise ConfigError(f"{self.path} is not a JSON list of run ids: fix or delete it")
        return set(watched)

    def _save(self, ids: set[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(sorted(ids)))

    def add(self, run_id: str) -> None:
        with self._lock:
            self._save(self.ids() | {run_id})

    def remove(self, run_id: str) -> None:
        with self._lock:
            self._save(self.ids() - {run_id})


class RedisWatchList:
    """Watched run ids in the Redis set `discord:watching` (scale-out)."""

    def __init__(self, url: str, key: str = "discord:watching", settings: Settings | None = None) -> None:
        self.redis = redis_client(url, settings)
        self.key = key

    def ids(self) -> set[str]:
        return {m.decode() for m in self.redis.smembers(self.key)}  # type: ignore[union-attr]

    def add(self, run_id: str) -> None:
        self.redis.sadd(self.key, run_id)

    def remove(self, run_id: str) -> None:
        self.redis.srem(self.key, run_id)


def open_watch_list(settings: Settings | None = None) -> WatchList:
    settings = settings or get_settings()
    if settings.queue_url:
        return RedisWatchList(settings.queue_url, settings=settings)
    return FileWatchList(settings.home / "discord" / "watching.json")


# -- the REST boundary ---------------------------------------------------------------------------------------
class DiscordRest:
    """discord.py's REST client on a private event loop thread (callable from synchronous code)."""

    def __init__(self, token: str, *, api_base: str | None = None, timeout_s: float = 15.0) -> None:
        from discord.http import HTTPClient, Route

        if api_base:
            Route.BASE = api_base.rstrip("/")
        self.timeout_s = timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="discord-rest", daemon=True)
        self._thread.start()
        self._http = HTTPClient(self._loop)
        self._dm_channels: dict[int, str] = {}
        try:
            self.me = self._call(self._http.static_login(token))
        except BaseException:  # a refused token or no Discord: no session or loop thread left behind
            self.close()
            raise

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self.timeout_s)

    def dm_channel(self, user_id: int) -> str:
        if user_id not in self._dm_channels:
            data = self._call(self._http.start_private_message(user_id))
            self._dm_channels[user_id] = str(data["id"])
        return self._dm_channels[user_id]

    def send_dm(self, user_id: int, content: str) -> None:
        from discord.http import handle_message_parameters

        channel = self.dm_channel(user_id)

        async def send() -> Any:
            with handle_message_parameters(content=content) as params:
                return await self._http.send_message(channel, params=params)

        self._call(send())

    def close(self) -> None:
        try:
            self._call(self._http.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)


# -- the notifier --------------------------------------------------------------------------------------------
class DiscordNotifier:
    """Events of watched runs -> batched DMs to the owner; progress at most every `progress_every_s`."""

    def __init__(
        self,
        send_dm: Callable[[str], None],
        watch_list: WatchList,
        *,
        min_interval_s: float = 5.0,
        progress_every_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.watch_list = watch_list
        self.batcher = DmBatcher(send_dm, min_interval_s=min_interval_s, clock=clock)
        self.progress_every_s = progress_every_s
        self.clock = clock
        self._last_progress: dict[str, float] = {}
        self._watch_list_error = ""
        # an event's flush and the timer's take turns: two at once could send their batches out of order
        self._flushing = threading.Lock()
        self._timer: threading.Timer | None = None
        self._failures = 0  # DMs failed in a row: the next try waits longer
        self._closed = False
        # the flush timer is a daemon, ended with its process: the lines the rate limit held back (a run's
        # `started` a second after its `queued`, the API's last `queued`) were never sent
        _open_notifiers.add(self)

    def __call__(self, event: RunEvent) -> None:
        try:
            watched = self.watch_list.ids()
        except ConfigError as exc:  # a watch list that cannot be read must never break a run: said once
            if exc.message != self._watch_list_error:
                log.warning(f"discord notifier: {exc.message}")
                self._watch_list_error = exc.message
            return
        self._watch_list_error = ""
        if event.run_id not in watched:
            return
        line = format_event(event)
        if event.type == "progress":
            if self.clock() - self._last_progress.get(event.run_id, -1e18) < self.progress_every_s:
                # no line, but the lines the rate limit held back go now: waiting for an event other than
                # progress kept `started` back until `completed` in a run with no checkpoints
                line = None
            else:
                self._last_progress[event.run_id] = self.clock()
        if line is not None:
            self.batcher.add(line)
        ended = event.type in ENDED
        self._flush(force=ended)
        if ended:
            # its end is reported, or its line waits in the batch for the next try: the run leaves the list
            # (which otherwise only grew, every run ever watched looked up on every event for good, and a
            # run whose end a failed DM dropped stayed in it); `/watch` adds it again, e.g. once it is resumed
            self.watch_list.remove(event.run_id)
            self._last_progress.pop(event.run_id, None)

    def _flush(self, *, force: bool = False, timer: threading.Timer | None = None) -> None:
        """Send what the batch holds (as the rate limit allows, or all when `force`), then time the next
        flush for what is left. `timer`: the timer calling, which has fired."""
        with self._flushing:
            if timer is not None:
                if timer is not self._timer or self._closed:  # closed, or replaced meanwhile
                    return
                self._timer = None
            try:
                self.batcher.flush(force=force)
                self._failures = 0
            except Exception as exc:  # Discord down must never break a run
                self._failures += 1
                kept = len(self.batcher.pending)
                log.warning(f"discord DM failed: {type(exc).__name__}; {kept} lines kept")
            self._flush_later()

    def _flush_later(self) -> None:
        """Lines left in the batch (held back by the rate limit, or kept from a DM that failed) are sent by a
        timer once the interval has passed: waiting for the next event of a watched run, the end of the last
        run to end stayed unsent after a failed DM, and a line held back in a process that hears few events
        (the API's, which hears only `queued`) waited there until some other run was queued.
        Called holding `_flushing`; the timer counts real seconds, whatever `clock` is."""
        if self._closed or self._timer is not None or not self.batcher.pending:
            return
        if self._failures:
            wait = min(self.batcher.min_interval_s * 2 ** min(self._failures - 1, 16), RETRY_MAX_S)
        else:
            wait = self.batcher.min_interval_s - (self.clock() - self.batcher.last_sent)
        timer = threading.Timer(max(wait, 0.0), lambda: self._flush(timer=timer))
        timer.name = "discord-dm-flush"
        timer.daemon = True  # a process does not wait for it to exit (a run's end was sent when it ended)
        self._timer = timer
        timer.start()

    def close(self, wait_s: float = CLOSE_WAIT_S) -> None:
        """No more timed flushes; the lines still in the batch (held back by the rate limit, or kept from a
        DM that failed) are sent now, tried once, waiting at most `wait_s` (Discord down must not hold a
        process's exit). Called at the process's exit too."""
        _open_notifiers.discard(self)
        with self._flushing:
            if self._closed:
                return
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if not self.batcher.pending:
                return
        # the flush of an ended run, tried once (closed: no timer is set for what a failure leaves)
        sender = threading.Thread(
            target=self._flush, kwargs={"force": True}, name="discord-dm-close", daemon=True
        )
        sender.start()
        sender.join(wait_s)
        if sender.is_alive():
            log.warning(f"discord: the last DM was not sent within {wait_s:g} s of closing")


_open_notifiers: weakref.WeakSet[DiscordNotifier] = weakref.WeakSet()
"""The notifiers not closed yet, closed at the process's exit (weakly held: one that nothing else holds, an
event bus's subscriber or its pending flush timer, has nothing left to send)."""


@atexit.register
def _close_open_notifiers_at_exit() -> None:
    for notifier in list(_open_notifiers):
        notifier.close()


def discord_notifier(settings: NotifySettings) -> DiscordNotifier:
    if settings.discord_token is None or settings.discord_owner_id is None:
        raise ConfigError("the Discord notifier needs TLDRLAB_DISCORD_TOKEN and TLDRLAB_DISCORD_OWNER_ID")
    rest = DiscordRest(settings.discord_token.get_secret_value(), api_base=settings.discord_api_base)
    owner = settings.discord_owner_id
    return DiscordNotifier(lambda text: rest.send_dm(owner, text), open_watch_list())


# -- commands ------------------------------------------------------------------------------------------------
class Reply(NamedTuple):
    """A command's answer, and where its full text is when it may be too long for one message."""

    text: str
    full_text_at: str = ""


class BotCommands:
    """What the slash commands do, over the tldrlab HTTP API; only the owner gets answers."""

    def __init__(self, api: httpx.Client, owner_id: int, watch_list: WatchList) -> None:
        self.api = api
        self.owner_id = owner_id
        self.watch_list = watch_list

    def handle(self, user_id: int, command: str, argument: str = "", *, in_dm: bool = True) -> str | None:
        """The reply text, at most one Discord message long, or None when the request is ignored (not the
        owner, not a DM)."""
        if user_id != self.owner_id or not in_dm:
            return None
        reply = self._answer(command, argument)
        if isinstance(reply, str):
            reply = Reply(reply)
        # the one place every reply passes: whatever a handler built, Discord gets a message it accepts
        return fit_message(reply.text, more=reply.full_text_at)

    def _answer(self, command: str, argument: str) -> str | Reply:
        handler: Callable[[str], str | Reply] | None = {
            "runs": self.runs,
            "status": self.status,
            "cancel": self.cancel,
            "train": self.train,
            "watch": self.watch,
            "unwatch": self.unwatch,
        }.get(command)
        if handler is None:
            return f"unknown command {command!r}: use /runs, /status, /cancel, /train, /watch, /unwatch"
        try:
            return handler(argument.strip())
        except InvalidInputError as exc:
            return exc.message
        except httpx.HTTPError as exc:  # the API is down or slow: say so in the DM, not "did not respond"
            return f"cannot reach the tldrlab API at {self.api.base_url}: {type(exc).__name__}"

    def _get(self, path: str, **params: Any) -> dict[str, Any]:
        response = self.api.get(path, params=params)
        return self._json(response)

    @staticmethod
    def _json(response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:  # e.g. a proxy's HTML error page in front of the API
            body = None
        if not isinstance(body, dict):
            status = response.status_code
            raise InvalidInputError(f"the tldrlab API answered HTTP {status} without a JSON object")
        if response.status_code >= 400:
            # `handle` fits the reply to one message; redact's 300 cut the kinds an unknown kind lists
            message = redact(body.get("message"), limit=DISCORD_MESSAGE_LIMIT)
            raise InvalidInputError(f"{body.get('code', 'error')}: {message}")
        return body

    @staticmethod
    def _need_id(argument: str) -> str:
        if not argument or len(argument) > 100 or not all(c.isalnum() or c in "-_" for c in argument):
            raise InvalidInputError("give a run id, e.g. /status train-20250101-120000-abc123")
        return argument

    def runs(self, argument: str) -> str:
        runs = self._get("/runs", limit=10)["runs"]
        if not runs:
            return "no runs yet"
        return "\n".join(
            f"`{r['id']}` {r['kind']} **{r['status']}**"
            + (f" {r['progress']:.0%}" if r["progress"] is not None else "")
            for r in runs
        )

    def status(self, argument: str) -> str | Reply:
        run = self._get(f"/runs/{self._need_id(argument)}")
        parts = [f"`{run['id']}` {run['kind']} **{run['status']}**"]
        if run["progress"] is not None:
            parts.append(f"{run['progress']:.0%}")
        last = run.get("last_metrics") or {}
        if "step" in last:
            parts.append(f"step {last['step']}")
        for key in METRIC_ORDER:
            if isinstance(last.get(key), int | float):
                parts.append(f"{key}={last[key]:.4g}")
        if run["heartbeat_age_s"] is not None and run["status"] == "running":
            parts.append(f"heartbeat {run['heartbeat_age_s']:.0f}s ago")
        if run["message"]:
            parts.append(redact(run["message"], limit=200))
        line = ", ".join(parts)
        if run["status"] != "completed":
            return line
        report_path = f"/runs/{run['id']}/report"
        try:  # a completed run's result, as the CLI prints it (kinds without a result have none)
            report = self._get(report_path)["markdown"]
        except InvalidInputError:
            return line
        # redact's cap only bounds the work: `handle` cuts the reply to one message and says where the rest is
        full_report = f"full report: {str(self.api.base_url).rstrip('/')}{report_path}"
        return Reply(f"{line}\n{redact(report, limit=DISCORD_MESSAGE_LIMIT)}", full_report)

    def cancel(self, argument: str) -> str:
        run = self._json(self.api.post(f"/runs/{self._need_id(argument)}/cancel"))
        return f"`{run['id']}` **{run['status']}**: {redact(run['message'])}"

    def train(self, argument: str) -> str:
        """`/train KIND {json config}` starts a run of any kind (`/train sweep {"sweep": ...}`,
        `/train smoke`); `/train {json config}` a training run. The API validates the config (its 422 names
        the field) and lists the kinds when KIND is unknown."""
        text = argument.strip()
        if text.startswith("{"):
            kind, rest = "train", text
        else:
            kind, _, rest = text.partition(" ")
        if not kind:
            raise InvalidInputError('give a kind and its config as JSON, e.g. /train smoke {"steps": 20}')
        written = rest.strip() or "{}"
        try:
            config = json.loads(written)
        except ValueError as exc:
            raise InvalidInputError(f"give the {kind} config as JSON, e.g. /train smoke {{}}") from exc
        if not isinstance(config, dict):
            raise InvalidInputError(f"give the {kind} config as a JSON object")
        # the config goes to the API as written (one JSON object, checked just now): re-encoding the parsed
        # value raised on NaN, 1e999 or a lone surrogate (no reply at all) and dropped a key given twice,
        # all of which the API refuses in its own words
        body = f'{{"kind": {json.dumps(kind)}, "config": {written}}}'.encode("utf-8", "surrogatepass")
        headers = {"content-type": "application/json"}
        # a watch list that cannot be read refuses the command before the run exists: read after the run was
        # queued, the owner was told the list was broken while a run nobody watched went ahead
        self.watch_list.ids()
        run = self._json(self.api.post("/runs", content=body, headers=headers))
        self.watch_list.add(run["id"])
        return f"queued `{run['id']}` ({run['kind']}); watching it"

    def watch(self, argument: str) -> str:
        run_id = self._get(f"/runs/{self._need_id(argument)}")["id"]
        self.watch_list.add(run_id)
        return f"watching `{run_id}`"

    def unwatch(self, argument: str) -> str:
        watched = self.watch_list.ids()
        if self._need_id(argument) not in watched:  # a typo of a watched id must not look like success
            shown = ", ".join(f"`{run_id}`" for run_id in sorted(watched)[:10]) or "none"
            more = f" and {len(watched) - 10} more" if len(watched) > 10 else ""
            return f"not watching `{argument}` (watching: {shown}{more})"
        self.watch_list.remove(argument)
        return f"stopped watching `{argument}`"


def check_bot_login(settings: NotifySettings) -> None:
    """Log in over REST once before the gateway starts: a wrong token or an unreachable Discord is then one
    line naming the cause, where the gateway client died with discord.py's or aiohttp's traceback."""
    import aiohttp
    import discord

    if settings.discord_token is None or settings.discord_owner_id is None:
        raise ConfigError("set TLDRLAB_DISCORD_TOKEN and TLDRLAB_DISCORD_OWNER_ID")
    where = settings.discord_api_base or "discord.com"
    try:
        DiscordRest(settings.discord_token.get_secret_value(), api_base=settings.discord_api_base).close()
    except discord.LoginFailure as exc:
        raise ConfigError(f"Discord ({where}) refused the bot token in TLDRLAB_DISCORD_TOKEN: {exc}") from exc
    except (aiohttp.ClientError, discord.HTTPException, OSError, TimeoutError) as exc:
        raise ServiceUnavailableError(f"cannot reach Discord at {where}: {type(exc).__name__}") from exc


def run_bot(api_base_url: str, settings: NotifySettings | None = None) -> None:  # pragma: no cover - gateway
    """The gateway bot: slash commands in the owner's DMs. Needs a reachable Discord (not in tests)."""
    import discord
    from discord import app_commands

    settings = settings or notify_settings()
    check_bot_login(settings)
    assert settings.discord_token is not None and settings.discord_owner_id is not None  # checked just now
    api_key = get_settings().api_key
    headers = {"X-Api-Key": api_key.get_secret_value()} if api_key else {}
    commands = BotCommands(
        httpx.Client(base_url=api_base_url, headers=headers, timeout=30),
        settings.discord_owner_id,
        open_watch_list(),
    )
    client = discord.Client(intents=discord.Intents.default())
    tree = app_commands.CommandTree(client)

    def add(name: str, description: str) -> None:
        @tree.command(name=name, description=description)
        async def command(interaction: discord.Interaction, argument: str = "") -> None:
            reply = await asyncio.to_thread(
                commands.handle, interaction.user.id, name, argument, in_dm=interaction.guild is None
            )
            await interaction.response.send_message(reply or "not available here", ephemeral=True)

    for name, description in [
        ("runs", "recent runs"),
        ("status", "a run's status"),
        ("cancel", "cancel a run"),
        ("train", "start a run: KIND {json config} (e.g. smoke {}), or a training config as JSON"),
        ("watch", "DM updates of a run"),
        ("unwatch", "stop DM updates of a run"),
    ]:
        add(name, description)

    @client.event
    async def on_ready() -> None:
        await tree.sync()

    client.run(settings.discord_token.get_secret_value(), log_handler=None)
