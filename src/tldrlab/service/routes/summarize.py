"""`POST /summarize`: plain summaries of documents for a front end that is not a forum.

    curl -X POST localhost:8000/summarize -H 'content-type: application/json' \
         -d '{"documents": ["...", "..."], "alias": "production", "max_new_tokens": 96}'
    curl -N -X POST localhost:8000/summarize -H 'content-type: application/json' \
         -d '{"document": "...", "model": "smollm2", "stream": true}'       # Server-Sent Events

`model` is any model reference an API client may name (an installed or bundled model, a run id, a path
inside the read roots), `alias` a promoted alias; neither: the server's `digest_model`. Without `stream` the
answer is `{model, kind, summaries: [{index, summary, steps, eos_terminated}], seconds}`; with it the events
are `start`, `token` (`{index, text}`, greedy decoding only), `summary` (one per document), then `done`, or
`error` after the stream started. Summaries are decoded by `tldrlab.evaluate.summarize` (the generation code
of `tldrlab generate`, the digest's model loader); no server paths in answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from tldrlab.config import Settings
from tldrlab.configmodel import ConfigModel
from tldrlab.digest.local_model import NO_MODEL
from tldrlab.errors import InvalidConfigError, InvalidInputError, TldrlabError
from tldrlab.runs.aliases import alias_target
from tldrlab.runs.paths import ModelRef
from tldrlab.service.confine import public_paths, resolve_model
from tldrlab.service.limits import StrictJSONRoute
from tldrlab.service.routes.threads import _END, KEEP_ALIVE, queued_items, sse
from tldrlab.service.state import settings_of

if TYPE_CHECKING:
    # the generation code imports torch: loaded by the first summary, not by every server's start (~2 CPU-s)
    from tldrlab.evaluate.generate import GeneratedText
    from tldrlab.evaluate.summarize import SummarizerModel

log = logging.getLogger("tldrlab.service")
router = APIRouter(tags=["summarize"], route_class=StrictJSONRoute)
MAX_DOCUMENTS = 32
MAX_DOCUMENT_CHARS = 200_000


class SummarizeRequest(ConfigModel):
    """Documents to summarise and how."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid", protected_namespaces=())

    document: str | None = Field(default=None, min_length=1, max_length=MAX_DOCUMENT_CHARS)
    """One document (or give `documents`)."""
    documents: list[str] | None = Field(default=None, min_length=1, max_length=MAX_DOCUMENTS)
    """Several documents, summarised one by one."""
    model: Annotated[str | None, ModelRef()] = Field(default=None, min_length=1, max_length=1000)
    """A model reference: an installed or bundled model, a run id, a path inside the read roots, an alias."""
    alias: str | None = Field(default=None, min_length=1, max_length=64)
    """A promoted alias (`tldrlab models promote RUN --alias production`); instead of `model`."""
    max_new_tokens: int = Field(default=128, ge=1)
    """Most tokens per summary (at most the server's max_generate_tokens)."""
    num_beams: int = Field(default=1, ge=1, le=8)
    """Beam search width (1: greedy; beams cannot stream tokens, their summaries arrive whole)."""
    stream: bool = False
    """Answer with Server-Sent Events as the summaries are decoded."""

    @model_validator(mode="after")
    def _check(self) -> SummarizeRequest:
        if (self.document is None) == (self.documents is None):
            raise ValueError("give either document or documents")
        if self.model is not None and self.alias is not None:
            raise ValueError("give either model or alias, not both")
        for text in self.documents or []:
            if not text.strip() or len(text) > MAX_DOCUMENT_CHARS:
                raise ValueError(f"every document needs text, at most {MAX_DOCUMENT_CHARS} characters")
        return self

    @property
    def texts(self) -> list[str]:
        return [self.document] if self.document is not None else list(self.documents or [])


class SummaryInfo(BaseModel):
    index: int
    summary: str
    steps: int = Field(description="Tokens decoded (the end-of-sequence token included).")
    eos_terminated: bool = Field(description="Ended on the model's end-of-sequence token (not the length).")


class SummarizeResult(BaseModel):
    model: str
    kind: str = Field(description="`causal` (a chat LM) or `seq2seq`.")
    summaries: list[SummaryInfo]
    seconds: float


def _model_ref(body: SummarizeRequest, settings: Settings) -> str:
    """The reference to load: the alias, the model (confined like run configs), or the digest model."""
    if body.alias is not None:
        if alias_target(body.alias, settings) is None:
            raise InvalidConfigError.at("alias", f"no alias {body.alias!r} (see GET /models)")
        return body.alias
    if body.model is not None:
        return resolve_model(body.model, "model", settings)
    ref = settings.digest_model.strip()
    if ref.lower() in NO_MODEL:
        raise InvalidConfigError.at("model", "this server has no default model (digest_model): name one")
    return ref


def _load(ref: str, settings: Settings) -> SummarizerModel:
    from tldrlab.evaluate.summarize import summarizer_model

    try:
        return summarizer_model(ref)
    except TldrlabError as exc:  # the loader names the model's directory: as a client names it here
        exc.message = public_paths(exc.message, settings)
        if isinstance(exc.details.get("errors"), list):  # an invalid config's fields, its message among them
            exc.details["errors"] = public_paths(exc.details["errors"], settings)
        raise
    except (OSError, ValueError) as exc:  # a directory transformers cannot read
        raise InvalidInputError(f"the model cannot be loaded: {type(exc).__name__}") from None


def _summary(index: int, out: GeneratedText) -> dict[str, Any]:
    return {"index": index, "summary": out.text, "steps": out.steps, "eos_terminated": out.eos_terminated}


@router.post("/summarize", response_model=SummarizeResult)
async def summarize_documents(request: Request, body: SummarizeRequest) -> Any:
    """Summaries of `document` / `documents` with a model or alias (SSE when `stream`)."""
    settings = settings_of(request)
    limit = settings.max_generate_tokens
    if body.max_new_tokens > limit:
        raise InvalidConfigError.at("max_new_tokens", f"at most {limit} tokens (TLDRLAB_MAX_GENERATE_TOKENS)")
    ref = await run_in_threadpool(_model_ref, body, settings)
    # load errors are HTTP errors, before any stream starts
    model = await run_in_threadpool(_load, ref, settings)
    shown = public_paths(body.alias or body.model or ref, settings)
    started = time.perf_counter()
    if not body.stream:
        from tldrlab.evaluate.summarize import summarize

        outputs = await run_in_threadpool(
            summarize, model, body.texts, max_new_tokens=body.max_new_tokens, num_beams=body.num_beams
        )
        summaries = [_summary(i, out) for i, out in enumerate(outputs)]
        seconds = time.perf_counter() - started
        return {"model": shown, "kind": model.kind, "summaries": summaries, "seconds": seconds}
    return _stream(request, model, body, shown, started)


def _stream(
    request: Request, model: SummarizerModel, body: SummarizeRequest, shown: str, started: float
) -> StreamingResponse:
    from tldrlab.evaluate.summarize import stream_summaries

    request_id = str(getattr(request.state, "request_id", "-"))
    keepalive_s = float(settings_of(request).sse_keepalive_s)
    stop = threading.Event()

    def produce(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any]) -> None:
        def put(item: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the event loop is gone: nobody is listening
                loop.call_soon_threadsafe(queue.put_nowait, item)

        try:
            for event in stream_summaries(
                model, body.texts, max_new_tokens=body.max_new_tokens, num_beams=body.num_beams, stop=stop
            ):
                if stop.is_set():
                    break
                put(event)
        except BaseException as exc:
            put(exc)
        finally:
            put(_END)

    async def events() -> AsyncIterator[str]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        producer = threading.Thread(
            target=produce,
            args=(asyncio.get_running_loop(), queue),
            name=f"summarize-{request_id}",
            daemon=True,
        )
        yield sse("start", {"model": shown, "kind": model.kind, "documents": len(body.texts)})
        producer.start()
        try:
            async for item in queued_items(request, queue, keepalive_s):
                if item is KEEP_ALIVE:
                    yield item
                    continue
                if isinstance(item, BaseException):
                    code, message = "internal_error", f"internal error: {type(item).__name__}"
                    if isinstance(item, TldrlabError):
                        code, message = item.code, item.message
                    else:
                        log.error("summarize failed", exc_info=item)
                    yield sse("error", {"code": code, "message": message, "request_id": request_id})
                    return
                kind, index, value = item
                if kind == "token":
                    yield sse("token", {"index": index, "text": value})
                else:
                    yield sse("summary", _summary(index, value))
            if await request.is_disconnected():  # the client left before the end: nothing more to send
                return
            yield sse("done", {"request_id": request_id, "seconds": time.perf_counter() - started})
        finally:  # normal end, client gone or error: decoding stops after its current token
            stop.set()

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
