"""The digest of a stored thread as a stream of events: highlights -> summarizer tokens -> final digest.

    for event in digest_events(store, "t1", DigestOptions(), embedder=embedder, cache=cache):
        event.kind  # "notice" (event.text), "draft" (event.bullets), "token" (event.text)... then "digest"

The same generator feeds the SSE endpoint, the CLI and the benchmarks. A cached digest (same thread content,
summarizer and parameters) is replayed at once; setting `stop` ends generation early (client went away).
Whatever the summarizer, repeated bullets (equal up to case, whitespace and punctuation) are merged into one
citing what each cited (`summarizers/repeats.py`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tldrlab.configmodel import ConfigModel
from tldrlab.data.formats import ThreadFormat
from tldrlab.digest.cache import SummaryCache, cache_key
from tldrlab.digest.highlights import (
    HIGHLIGHTER_VERSION,
    Highlight,
    HighlightOptions,
    Query,
    thread_highlights,
)
from tldrlab.digest.summarizers import Bullet, SummaryContext, build_summarizer
from tldrlab.digest.summarizers.base import Draft, Notice
from tldrlab.digest.summarizers.repeats import MERGE_VERSION, merge_repeated_bullets
from tldrlab.embed.base import Embedder
from tldrlab.errors import WriteRefusedError
from tldrlab.freeform import FreeForm
from tldrlab.logs import get_logger
from tldrlab.store.base import SentenceStore, ThreadSnapshot

log = get_logger(__name__)


class DigestOptions(ConfigModel):
    """What to digest and how."""

    model_config = ConfigDict(allow_inf_nan=False)

    summarizer: str = "two_stage"
    """Registry name: two_stage (the extractive draft, then the local LM's cited bullets; extractive alone
    when no model is installed), extractive, local, openai."""
    params: FreeForm = Field(default_factory=dict)
    """Summarizer parameters (model_path for local, model for openai, draft/final/top_up for two_stage)."""
    k: int = Field(default=8, ge=1, le=50)
    """Highlights to pick (the summarizer's candidates; the page marks all of them)."""
    q: Query = None
    """Optional query: query-aware highlights."""
    max_bullets: int = Field(default=5, ge=1, le=20)
    """Most bullets in the TL;DR."""
    use_cache: bool = True
    """Serve and store cached digests."""


class ThreadDigestOptions(DigestOptions):
    """`tldrlab digest`: which thread (a file, ingested first by `digest.ingest.thread_to_digest`, or a stored
    thread id), and the digest options."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")

    target: str = Field(min_length=1)
    """A thread file or directory (ingested first) or a stored thread id."""
    thread: str | None = None
    """Which thread of the file to digest (default: its first)."""
    format: ThreadFormat = None
    """Input format when TARGET is a file (detected when omitted)."""

    def digest_options(self) -> DigestOptions:
        return DigestOptions.model_validate(self.model_dump(exclude={"target", "thread", "format"}))


class ThreadHighlightOptions(HighlightOptions):
    """`tldrlab highlights`: the stored thread, and how its highlights are picked."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")

    thread_id: str = Field(min_length=1)
    """A stored thread id."""


class Digest(BaseModel):
    thread_id: str
    title: str
    content_hash: str
    """The thread content the digest was made from."""
    summarizer: str
    bullets: list[Bullet]
    highlights: list[Highlight]
    draft: list[Bullet] = Field(default_factory=list)
    """Two-stage digests: the draft bullets shown before the final ones."""
    notices: list[str] = Field(default_factory=list)
    """How the digest was made, for the reader (a fallback to extractive, bullets dropped as unsupported)."""
    text: str = ""
    """The streamed text, as it came."""
    cached: bool = False
    seconds: float = 0.0


NO_SENTENCES_NOTICE = (
    "the thread has no sentences to summarize, so there are no bullets: its posts are empty or hold only "
    "links, sign-offs and quoted text"
)
"""Why a digest has no bullets when there were no highlights to summarize: nothing a model could fix."""


def empty_digest_notice(summarizer: str, text: str, has_highlights: bool = True) -> str:
    """Why a digest has no bullets: nothing to summarize, the summarizer generated nothing, or nothing that
    made a bullet."""
    if not has_highlights:
        return NO_SENTENCES_NOTICE
    if not text.strip():
        return (
            f"the {summarizer} summarizer generated no text, so there are no bullets: an untrained or too "
            "small model often ends its output at once (or generates only special tokens, which are "
            "dropped); train it longer, use another model_path, or the extractive summarizer"
        )
    return (
        f"the {summarizer} summarizer's text held no bullet ({len(text.strip())} characters of "
        f"{text.strip()[:60]!r}...): the model may not have learned to write summaries yet"
    )


@dataclass
class DigestEvent:
    kind: Literal["token", "notice", "draft", "digest"]
    text: str = ""
    """A token's text, or a notice's message."""
    bullets: list[Bullet] | None = None
    """The draft bullets (kind `draft`)."""
    highlights: list[Highlight] | None = None
    """The highlights the draft's citations name (kind `draft`)."""
    content_hash: str = ""
    """The thread version the draft's highlights are offsets into (kind `draft`), as `Digest.content_hash`."""
    digest: Digest | None = None


def digest_events(
    store: SentenceStore,
    thread_id: str,
    options: DigestOptions,
    *,
    embedder: Embedder | None = None,
    cache: SummaryCache | None = None,
    stop: threading.Event | None = None,
    snapshot: ThreadSnapshot | None = None,
) -> Generator[DigestEvent, None, None]:
    """Notice, draft and token events as they come, then one digest event (nothing more if `stop` is set
    midway). `snapshot`: the thread version to digest, read by the caller (`store.thread_snapshot`) when it
    shows or checks that version itself (a title, a client's `version`): the digest, cached or made, is then
    of that very version even if the thread is re-ingested meanwhile. None: the store's version now."""
    started = time.perf_counter()
    stop = stop or threading.Event()
    summarizer = build_summarizer(options.summarizer, options.params)  # bad options fail first
    if snapshot is not None and snapshot.thread.id != thread_id:
        raise ValueError(f"a snapshot of thread {snapshot.thread.id!r} given to digest thread {thread_id!r}")
    # NotFoundError for unknown ids, before anything is streamed
    thread = snapshot.thread if snapshot is not None else store.get_thread(thread_id)
    content_hash = thread.content_hash()
    key = cache_key(
        options.summarizer,
        {
            "summarizer": summarizer.cache_params(),
            "k": options.k,
            "q": options.q,
            "max_bullets": options.max_bullets,
            "embedder": getattr(embedder, "name", None),
            "highlighter": HIGHLIGHTER_VERSION,
            "bullet_merge": MERGE_VERSION,
        },
    )
    if cache is not None and options.use_cache:
        hit = cache.get(thread_id, key, content_hash)
        if hit is not None:
            digest = Digest.model_validate({**hit, "cached": True, "seconds": time.perf_counter() - started})
            for notice in digest.notices:
                yield DigestEvent("notice", text=notice)
            if digest.draft:
                yield DigestEvent(
                    "draft",
                    bullets=digest.draft,
                    highlights=digest.highlights,
                    content_hash=digest.content_hash,
                )
            yield DigestEvent("token", text=digest.text)
            yield DigestEvent("digest", digest=digest)
            return
    # The thread the digest is made of and its sentences, from one snapshot: the thread read above (for the
    # cache) may since have been re-ingested, and then its text is not what these sentences' offsets and
    # post numbers point into. The digest is of the snapshot's version (its hash is the one cached below).
    if snapshot is None:
        snapshot = store.thread_snapshot(thread_id)
    thread, content_hash = snapshot.thread, snapshot.thread.content_hash()
    highlights = thread_highlights(
        store, thread_id, HighlightOptions(k=options.k, q=options.q), embedder=embedder, snapshot=snapshot
    )
    context = SummaryContext(
        thread=thread, highlights=highlights, embedder=embedder, max_bullets=options.max_bullets, stop=stop
    )
    pieces: list[str] = []
    bullets: list[Bullet] = []
    draft: list[Bullet] = []
    notices: list[str] = []
    explained = False  # the summarizer said why it kept no bullet
    for event in summarizer.stream(context):
        if stop.is_set():
            return
        if isinstance(event, str):
            pieces.append(event)
            yield DigestEvent("token", text=event)
        elif isinstance(event, Notice):
            notices.append(event.text)
            explained = explained or event.explains_empty
            yield DigestEvent("notice", text=event.text)
        elif isinstance(event, Draft):
            draft = merge_repeated_bullets(event.bullets)
            yield DigestEvent("draft", bullets=draft, highlights=highlights, content_hash=content_hash)
        else:
            # every summarizer's bullets pass here: a model that wrote one bullet twice shows it once
            bullets = merge_repeated_bullets(event)
    if stop.is_set():
        return
    text = "".join(pieces)
    if not bullets and not explained:  # a model that generated nothing: say so, with the likely cause
        notice = empty_digest_notice(options.summarizer, text, has_highlights=bool(highlights))
        log.warning(notice, extra={"fields": {"thread_id": thread_id}})
        notices.append(notice)
        yield DigestEvent("notice", text=notice)
    digest = Digest(
        thread_id=thread_id,
        title=thread.title,
        content_hash=content_hash,
        summarizer=options.summarizer,
        bullets=bullets,
        highlights=highlights,
        draft=draft,
        notices=notices,
        text=text,
        seconds=time.perf_counter() - started,
    )
    if cache is not None and options.use_cache and bullets:  # an empty digest is not worth keeping
        try:
            cache.drop_outdated(thread_id, content_hash)
            cache.put(thread_id, key, content_hash, options.summarizer, digest.model_dump(mode="json"))
        except WriteRefusedError as exc:
            # The digest is made and whole: a full disk (or a read-only database) costs its cache entry, not
            # the TL;DR the reader waited for. The log names where (a server path); the notice only the cause.
            log.warning(f"digest not cached: {exc.message}", extra={"fields": {"thread_id": thread_id}})
            notice = f"this TL;DR was not cached: {exc.what}; the next request makes it again"
            digest.notices.append(notice)
            yield DigestEvent("notice", text=notice)
    yield DigestEvent("digest", digest=digest)


def make_digest(
    store: SentenceStore,
    thread_id: str,
    options: DigestOptions,
    *,
    embedder: Embedder | None = None,
    cache: SummaryCache | None = None,
) -> Digest:
    """The final digest, without streaming."""
    for event in digest_events(store, thread_id, options, embedder=embedder, cache=cache):
        if event.digest is not None:
            return event.digest
    raise RuntimeError("digest stream ended without a digest")
