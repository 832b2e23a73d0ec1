"""Threads, highlights and the streaming TL;DR.

    POST /threads                      a native thread (or a list), or {format, content} for Stack Exchange
                                       XML / Discourse JSON text: ingested (only changed posts re-embedded)
    GET  /threads                      stored threads, newest first: ?limit=&offset= pages (`next_offset`
                                       in the answer), ?q= filters by id/title substring in the store's SQL
    GET  /threads/{id}                 one thread with its posts and its content_hash (its version)
    GET  /threads/{id}/highlights      ?k=&q=&scorer=&version= provenance-linked highlights, with the
                                       content_hash of the version they index into
    DELETE /threads/{id}               the thread, its sentences, vectors and cached digests (404 unknown)

A thread id may hold "/": send it as %2F (what the page's encodeURIComponent does). Both routes take the rest
of the path (`:path`), and since Starlette routes on the decoded path, `/threads/x%2Fhighlights` (thread
"x/highlights") would match the highlights route for thread "x": that route looks at the path as sent
(`raw_path`) and answers the thread when its "/highlights" was an encoded part of the id.
    POST /stream_summary               Server-Sent Events: `notice` messages and a two-stage `draft` as
                                       they come, `token` chunks, one `digest`, then `done`; failures after
                                       the stream started arrive as an `error` event; `version` as for the
                                       highlights (409 thread_changed before the stream starts)

The store, embedder and summary cache are opened lazily, once per app (app.state.digest).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import tempfile
import threading
import time
import unicodedata
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import AfterValidator, ConfigDict, Field, ValidationError, field_validator
from starlette.convertors import Convertor, register_url_convertor

from tldrlab.choices import unknown_choice
from tldrlab.data.readers.native import with_native_defaults
from tldrlab.data.threads import MAX_THREAD_ID_CHARS, NUL, Thread, repeated_post
from tldrlab.digest.cache import SummaryCache, open_cache
from tldrlab.digest.highlights import MAX_QUERY_CHARS, HighlightOptions, thread_highlights
from tldrlab.digest.ingest import delete_thread, ingest_threads, load_threads, open_sentence_store
from tldrlab.digest.pipeline import DigestOptions, digest_events
from tldrlab.digest.scorers import ScorerName
from tldrlab.digest.summarizers import build_summarizer
from tldrlab.embed.base import Embedder
from tldrlab.errors import (
    ConfigError,
    InvalidConfigError,
    InvalidInputError,
    InvalidRequestError,
    TldrlabError,
    validation_problems,
)
from tldrlab.numbers import booleans_for_numbers
from tldrlab.service.confine import confine_summarizer_params, public_paths
from tldrlab.service.limits import StrictJSONRoute, read_json_body
from tldrlab.service.state import client_message
from tldrlab.store.base import SentenceStore, ThreadChangedError, ThreadSnapshot

log = logging.getLogger("tldrlab.service")

router = APIRouter(tags=["threads"], route_class=StrictJSONRoute)
TEXT_FORMATS = {"stackexchange": ".xml", "discourse": ".json", "native": ".json"}


class ThreadLocks:
    """One lock per forum-thread id: ingests of the same thread take turns, ingests of different threads run
    side by side (the store serialises its own writes; embedding, the slow part, needs no lock), so one
    request with a huge post does not hold up everyone else's."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, list[int]]] = {}

    @contextlib.contextmanager
    def hold(self, thread_ids: list[str]) -> Iterator[None]:
        keys = sorted(set(thread_ids))  # one order for everyone: no deadlock between multi-thread requests
        with self._guard:
            entries = [self._locks.setdefault(key, (threading.Lock(), [0])) for key in keys]
            for _, users in entries:
                users[0] += 1
        held: list[threading.Lock] = []
        try:
            for lock, _ in entries:
                lock.acquire()
                held.append(lock)
            yield
        finally:
            for lock in reversed(held):
                lock.release()
            with self._guard:
                for key, (_, users) in zip(keys, entries, strict=True):
                    users[0] -= 1
                    if users[0] == 0:
                        del self._locks[key]


@dataclass
class DigestResources:
    store: SentenceStore
    embedder: Embedder
    cache: SummaryCache
    thread_locks: ThreadLocks


_open_lock = threading.Lock()


def resources(request: Request) -> DigestResources:
    """The app's store, embedder and cache, opened on first use."""
    app_state = request.app.state
    with _open_lock:
        found: DigestResources | None = getattr(app_state, "digest", None)
        if found is None:
            settings = app_state.settings
            store, embedder = open_sentence_store(settings)
            found = DigestResources(store, embedder, open_cache(settings), ThreadLocks())
            app_state.digest = found
        return found


class StreamSummaryRequest(DigestOptions):
    # a field it does not know is refused, as every request body refuses one: a typo ("max_bullet") gave the
    # default digest without a word
    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")

    thread_id: str = Field(min_length=1, max_length=MAX_THREAD_ID_CHARS)
    """An ingested thread (POST /threads first)."""

    @field_validator("thread_id")
    @classmethod
    def _no_thread_may_have_it(cls, value: str) -> str:
        # refused with the body (422), not by the store's lookup (400 for a blank id, 404 for one holding a
        # line break): the one rule of the ids POST /threads stores and a URL names (`thread_id_problem`)
        if NUL in value:
            raise ValueError("must not contain NUL characters (U+0000): no thread id holds one")
        if (problem := thread_id_problem(value)) is not None:
            raise ValueError(problem)
        return value

    version: str | None = Field(default=None, min_length=1, max_length=64)
    """The content_hash of the thread the client shows (GET /threads/{id}): 409 thread_changed, before the
    stream starts, when the thread is no longer that version; the TL;DR's citations index into it."""


FORMAT_LOOKS = {
    "stackexchange": "Stack Exchange Posts.xml",
    "discourse": "a Discourse topic",
    "native": "a native thread",
}
"""What a client sent, in words, when it reads as that thread format (for the hint of a refused body)."""


def _read_text_threads(content: str, fmt: str) -> list[Thread]:
    """The threads of `content` read as `fmt` by the format's file reader; its errors name "content"."""
    with tempfile.TemporaryDirectory(prefix="tldrlab-upload-") as tmp:
        path = Path(tmp) / f"Posts{TEXT_FORMATS[fmt]}"
        path.write_text(content, encoding="utf-8")
        try:
            return load_threads(path, fmt)
        except TldrlabError as exc:
            raise InvalidRequestError(exc.message.replace(str(path), "content")) from exc


def _other_format_hint(content: str, declared: str, *, as_content: bool = False) -> str:
    """The hint " (this looks like X; send format: Y)" when `content`, refused as `declared`, reads as
    another known thread format, else "". A Discourse topic posted as a native thread was refused for its
    numeric id alone, which did not tell the client that only the declared format was wrong. `as_content`:
    the body was posted bare, so the hint says to wrap it as {format, content}."""
    for fmt in TEXT_FORMATS:
        if fmt == declared:
            continue
        try:
            threads = _read_text_threads(content, fmt)
        except Exception:  # a probe for a hint must never turn the body's 422 into a 500
            continue
        if threads:
            how = (
                f'{{"format": "{fmt}", "content": <its JSON as a string>}}'
                if as_content
                else f"format: {fmt}"
            )
            return f" (this looks like {FORMAT_LOOKS[fmt]}; send {how})"
    return ""


def parse_threads(body: Any) -> list[Thread]:
    """A native thread, a list of them, or {format, content} text in a supported thread format. Every refusal
    is an InvalidRequestError (422): a well-formed body that is not a valid thread, as a route declaring its
    body answers one."""
    if isinstance(body, dict) and "content" in body and "posts" not in body:
        fmt, content = body.get("format"), body.get("content")
        if not isinstance(content, str) or not content.strip():
            raise InvalidRequestError("content must be a non-empty string")
        if fmt not in TEXT_FORMATS:
            raise InvalidRequestError(unknown_choice("format", fmt, TEXT_FORMATS))
        try:
            threads = _read_text_threads(content, fmt)
        except InvalidRequestError as exc:
            raise InvalidRequestError(exc.message + _other_format_hint(content, fmt)) from exc
        if not threads:
            raise InvalidRequestError(f"no threads found in the {fmt} content")
        return threads
    items = body if isinstance(body, list) else [body]
    if not items:
        raise InvalidRequestError("no threads in the request body")
    threads = []
    for i, item in enumerate(items):
        if isinstance(item, dict):  # a post's number and text-from-html, as the file reader does
            item = with_native_defaults(item)
        try:
            threads.append(Thread.model_validate(item))
        except ValidationError as exc:
            prefix = f"thread {i}: " if isinstance(body, list) else ""
            hint = _other_format_hint(json.dumps(item), "native", as_content=True)
            raise InvalidRequestError(f"{prefix}{validation_problems(exc, whole='body')}{hint}") from exc
    seen: set[str] = set()
    for thread in threads:
        if (problem := thread_id_problem(thread.id)) is not None:
            raise InvalidRequestError(f"thread id {thread.id!r}: {problem}")
        if thread.id in seen:  # refused here too, so that nothing of the request is stored
            raise InvalidRequestError(f"thread {thread.id!r} appears twice in the request: send one version")
        seen.add(thread.id)
        if (repeat := repeated_post(thread)) is not None:
            i, field, problem = repeat
            raise InvalidRequestError(f"thread {thread.id}: posts.{i}.{field}: {problem}")
    return threads


def thread_id_problem(thread_id: str) -> str | None:
    """Why no thread may have the id `thread_id` (None: it may): the one rule of the ids POST /threads stores
    and of the ids a URL names (`url_thread_id`), so a URL naming one is refused as its body would be."""
    if not thread_id.strip():
        return "must not be empty"
    if thread_id in (".", ".."):  # clients resolve /threads/.. to / before sending it, %2E%2E as well
        return "no URL can name it; choose another id"
    # NUL: PostgreSQL's text cannot hold it; a line break ends the route's path match (GET /threads/t%0A
    # answered thread "t"); and none prints in a page or a log line
    if controls := sorted({c for c in thread_id if unicodedata.category(c) == "Cc"}):
        shown = ", ".join(f"U+{ord(c):04X}" for c in controls)
        return f"must not contain control characters ({shown}); choose another id"
    return None


def url_thread_id(request: Request, thread_id: str, suffix: str = "") -> str:
    """The thread id a URL names, as the client sent it (the route's match stops at a line break), refused
    (422 invalid_input) when no thread may have it (`thread_id_problem`)."""
    sent = thread_id_as_sent(request)
    if sent is not None:
        thread_id = urllib.parse.unquote(sent.removesuffix(suffix))
    if (problem := thread_id_problem(thread_id)) is not None:
        raise InvalidRequestError(f"thread id {thread_id!r} in the URL: {problem}")
    return thread_id


@router.post("/threads", status_code=201)
async def post_threads(request: Request) -> JSONResponse:
    """Ingest one or more threads; re-posting an edited thread re-embeds only its changed posts."""
    threads = parse_threads(await read_json_body(request, "send a thread as JSON"))
    res = await run_in_threadpool(resources, request)

    def ingest() -> Any:

        with res.thread_locks.hold([t.id for t in threads]):
            stats = ingest_threads(threads, res.store, res.embedder)
            for thread in threads:
                res.cache.drop_outdated(thread.id, thread.content_hash())
            return stats

    stats = await run_in_threadpool(ingest)
    body = {
        "thread_ids": stats.thread_ids,
        "threads": [{"id": t.id, "title": t.title, "posts": len(t.posts)} for t in threads],
        "stats": stats.metrics(),
    }
    return JSONResponse(body, status_code=201)


def no_nul_in_filter(value: str | None) -> str | None:
    # a bad query value, refused with the other query refusals (422 naming `query.q`), not by the store's
    # own check (400): PostgreSQL's text cannot hold U+0000 and no thread id or title does
    if value is not None and NUL in value:
        raise ValueError("must not contain NUL characters (U+0000): no thread id or title holds one")
    return value


@router.get("/threads")
def list_threads(
    request: Request,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=10**9),
    q: Annotated[
        str | None,
        Query(max_length=512, description="only threads whose id or title holds this text (ignoring case)"),
        AfterValidator(no_nul_in_filter),
    ] = None,
) -> dict[str, Any]:
    """A page of the stored threads, newest first. `next_offset` is where the next page starts (null on the
    last page): one row more than asked is read to know it."""
    res = resources(request)
    found = res.store.list_threads(limit=limit + 1, offset=offset, q=q or None)
    next_offset = offset + limit if len(found) > limit else None
    return {"threads": [asdict(t) for t in found[:limit]], "next_offset": next_offset}


def thread_id_as_sent(request: Request) -> str | None:
    """The part of the request's path after `/threads/` as the client sent it (percent-encoded), or None
    when the server does not pass the raw path on."""
    raw = request.scope.get("raw_path")
    if not isinstance(raw, bytes):
        return None
    path = raw.decode("latin-1")
    root = str(request.scope.get("root_path", ""))
    if root and path.startswith(root):
        path = path[len(root) :]
    return path.removeprefix("/threads/") if path.startswith("/threads/") else None


class AnyPath(Convertor[str]):
    """`:path` with line breaks too: Starlette's `.*` stops at one, so GET /threads/t%0A matched thread "t"
    and /threads/t%0A/highlights no route (404 Not Found), where the id is one no thread may have (422)."""

    regex = "[\\s\\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anypath", AnyPath())


def check_version(thread_id: str, snapshot: ThreadSnapshot, version: str | None) -> str:
    """The snapshot's content_hash; ThreadChangedError (409 thread_changed) when the client named the version
    it shows (`version`) and the snapshot, the thread as stored now, is another."""
    content_hash = snapshot.thread.content_hash()
    if version is not None and version != content_hash:
        raise ThreadChangedError(
            f"thread {thread_id!r} is version {content_hash} now, not {version}: read it again"
        )
    return content_hash


# `:anypath`, and highlights before the thread itself: a native thread's id may hold "/" (ingested fine, then
# unreachable: 404 for GET /threads/a%2Fb, which Starlette decodes before routing)
@router.get("/threads/{thread_id:anypath}/highlights")
def get_highlights(
    request: Request,
    thread_id: str,
    k: int = Query(5, ge=1, le=100),
    q: str | None = Query(None, max_length=MAX_QUERY_CHARS),
    scorer: ScorerName = Query(
        "auto", description="auto (per mode, the default scorer), heuristic, learned_v1 or learned_v2"
    ),
    version: str | None = Query(
        None,
        max_length=64,
        description="the content_hash of the thread the client shows: 409 thread_changed if it moved on",
    ),
) -> dict[str, Any]:
    """The thread's highlights, with the `content_hash` of the thread version their offsets index into: a
    client showing the thread's text (GET /threads/{id}, which carries it too) compares the two and reads
    the thread again when they differ, since a re-ingest may commit between its two requests."""
    sent = thread_id_as_sent(request)
    if sent is not None and not sent.endswith("/highlights"):
        # the "/highlights" this route matched was "%2Fhighlights": part of the id, e.g. GET
        # /threads/x%2Fhighlights is thread "x/highlights", not the highlights of thread "x"
        return get_thread(request, thread_id)
    thread_id = url_thread_id(request, thread_id, "/highlights")
    res = resources(request)
    options = HighlightOptions(k=k, q=q or None, scorer=scorer)
    snapshot = res.store.thread_snapshot(thread_id)  # the version the highlights are of, read with them
    content_hash = check_version(thread_id, snapshot, version)
    found = thread_highlights(res.store, thread_id, options, embedder=res.embedder, snapshot=snapshot)
    highlights = [h.model_dump() for h in found]
    return {"thread_id": thread_id, "content_hash": content_hash, "q": options.q, "highlights": highlights}


@router.get("/threads/{thread_id:anypath}")
def get_thread(request: Request, thread_id: str) -> dict[str, Any]:
    """The thread with its posts and its `content_hash`: the version that highlights and the TL;DR stream's
    `draft` and `digest` events name, so a client can tell whether their offsets index into this text."""
    thread_id = url_thread_id(request, thread_id)
    thread = resources(request).store.get_thread(thread_id)
    return {**thread.model_dump(mode="json"), "content_hash": thread.content_hash()}


@router.delete("/threads/{thread_id:anypath}")
def delete_stored_thread(request: Request, thread_id: str) -> dict[str, Any]:
    """Delete a thread with its sentences, their vectors and its cached digests; ingesting it again later
    starts afresh. A thread being ingested is deleted after that ingest, never half-way through it."""
    thread_id = url_thread_id(request, thread_id)
    res = resources(request)
    with res.thread_locks.hold([thread_id]):
        sentences = delete_thread(thread_id, res.store, res.cache)
    return {"thread_id": thread_id, "deleted": True, "sentences": sentences}


SSE_LINE_BREAK = re.compile(r"\r\n|\r|\n")
"""Where the SSE standard ends a line: a token's lone "\r" too, which a standard client otherwise took for the
end of its data line, reading the rest as a field of its own and dropping it."""


def sse(event: str, data: Any) -> str:
    payload = data if isinstance(data, str) else json.dumps(data)
    lines = "".join(f"data: {line}\n" for line in SSE_LINE_BREAK.split(payload))
    return f"event: {event}\n{lines}\n"


_END = object()
"""What a producer thread puts last on its queue."""

KEEP_ALIVE = ": keep-alive\n\n"
"""An SSE comment line: proxies and clients see the stream is alive while a model loads."""


async def queued_items(request: Request, queue: asyncio.Queue[Any], keepalive_s: float) -> AsyncIterator[Any]:
    """A producer thread's items up to `_END`, with KEEP_ALIVE whenever `keepalive_s` pass without one; stops
    early (before `_END`) when the client disconnects."""
    last_sent = time.monotonic()
    while True:
        try:
            item = await asyncio.wait_for(queue.get(), timeout=min(0.25, keepalive_s))
        except TimeoutError:
            if await request.is_disconnected():
                return
            if time.monotonic() - last_sent >= keepalive_s:
                yield KEEP_ALIVE
                last_sent = time.monotonic()
            continue
        last_sent = time.monotonic()
        if item is _END:
            return
        yield item


def produce_events(
    res: DigestResources,
    options: StreamSummaryRequest,
    snapshot: ThreadSnapshot,
    stop: threading.Event,
    loop: asyncio.AbstractEventLoop,
    queue: asyncio.Queue[Any],
) -> None:
    """Run the digest generator in its own thread, handing events to the response; once `stop` is set it
    closes the generator here, in the thread that runs it, which ends generation (and closes model/endpoint
    connections) at once."""

    def put(item: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the event loop is gone: nobody is listening
            loop.call_soon_threadsafe(queue.put_nowait, item)

    stream = digest_events(
        res.store,
        options.thread_id,
        DigestOptions.model_validate(options.model_dump(exclude={"thread_id", "version"})),
        embedder=res.embedder,
        cache=res.cache,
        stop=stop,
        snapshot=snapshot,
    )
    try:
        for event in stream:
            if stop.is_set():
                break
            put(event)
    except BaseException as exc:
        put(exc)
    finally:
        stream.close()
        put(_END)


@router.post("/stream_summary")
async def stream_summary(request: Request) -> StreamingResponse:
    """Stream a cited TL;DR of an ingested thread as Server-Sent Events."""
    body = await read_json_body(request, 'send a JSON object ({"thread_id": ...})')
    # pydantic's lax mode took `"k": true` for one key sentence: a boolean for a number is refused, as in
    # run configs (`tldrlab.numbers`); the summarizers refuse one in their params themselves
    if problems := list(booleans_for_numbers(StreamSummaryRequest, body)):
        raise InvalidRequestError("; ".join(f"{'.'.join(p['loc'])}: {p['msg']}" for p in problems))
    try:
        options = StreamSummaryRequest.model_validate(body)
    except ValidationError as exc:
        raise InvalidRequestError(validation_problems(exc, whole="body")) from exc
    res = await run_in_threadpool(resources, request)
    # 404 before the stream starts; and the version the digest is made of, so that the one checked against
    # the client's `version` is the one digested even if a re-ingest commits before the digest starts
    snapshot = await run_in_threadpool(res.store.thread_snapshot, options.thread_id)
    check_version(options.thread_id, snapshot, options.version)

    settings = request.app.state.settings
    options.params = await run_in_threadpool(
        confine_summarizer_params, options.summarizer, options.params, settings
    )
    try:
        build_summarizer(options.summarizer, options.params)
    except InvalidInputError as exc:  # the body's summarizer or its params: an invalid body, as above
        if exc.http_status != 400:
            raise
        if isinstance(exc, ConfigError):  # the summarizer's own check names no one field of the body
            raise InvalidConfigError.unplaced(exc.message) from exc
        raise InvalidRequestError(exc.message) from exc
    request_id = str(getattr(request.state, "request_id", "-"))
    keepalive_s = float(settings.sse_keepalive_s)
    stop = threading.Event()

    async def events() -> AsyncIterator[str]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        producer = threading.Thread(
            target=produce_events,
            args=(res, options, snapshot, stop, loop, queue),
            name=f"tldrlab-digest-{request_id}",
            daemon=True,
        )
        producer.start()
        try:
            async for item in queued_items(request, queue, keepalive_s):
                if item is KEEP_ALIVE:
                    yield item
                    continue
                if isinstance(item, TldrlabError):  # a load error names a model directory: as clients name it
                    # a database error's whole message (its host, socket path, user) is the server log's
                    message = client_message(item, f"stream_summary {request_id} failed")
                    message = public_paths(message, settings)
                    yield sse("error", {"code": item.code, "message": message, "request_id": request_id})
                    return
                if isinstance(item, BaseException):
                    log.error("stream_summary failed", exc_info=item)
                    message = f"internal error: {type(item).__name__}"
                    yield sse(
                        "error", {"code": "internal_error", "message": message, "request_id": request_id}
                    )
                    return
                if item.digest is not None:
                    yield sse("digest", item.digest.model_dump(mode="json"))
                elif item.kind == "notice":
                    yield sse("notice", {"message": item.text})
                elif item.kind == "draft":
                    draft = {
                        "content_hash": item.content_hash,
                        "bullets": [b.model_dump(mode="json") for b in item.bullets or []],
                        "highlights": [h.model_dump(mode="json") for h in item.highlights or []],
                    }
                    yield sse("draft", draft)
                else:
                    yield sse("token", item.text)
                if await request.is_disconnected():
                    return
            if await request.is_disconnected():  # the client left before the end: nothing more to send
                return
            yield sse("done", {"request_id": request_id})
        finally:  # normal end, client gone (cancelled) or error: the producer stops at its next event
            stop.set()

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
