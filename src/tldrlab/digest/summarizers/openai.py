"""Any OpenAI-compatible chat endpoint (Ollama, vLLM, llama.cpp server, Groq, OpenAI), streamed.

Base URL from `TLDRLAB_OPENAI_BASE_URL` or `OPENAI_BASE_URL` (for example http://localhost:11434/v1), key from
`TLDRLAB_OPENAI_API_KEY` or `OPENAI_API_KEY` (optional for local servers), model from `TLDRLAB_OPENAI_MODEL`
or the `model` parameter. The response is read as Server-Sent Events: `data: {chunk}` lines whose
`choices[0].delta.content` carry the text, ended by `data: [DONE]`. The answer is whole when the stream ends
with [DONE] or when its last choice chunk carried a `finish_reason` (some servers send no [DONE]); a stream
that ends with neither was cut (the connection closed mid-answer) and is an error, never a digest. An
answer cut at `max_tokens` (`finish_reason: "length"`) loses its unfinished last bullet, and a notice says
it was cut.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

from tldrlab.digest.fold import fold_thread
from tldrlab.digest.summarizers.base import (
    Notice,
    SummaryContext,
    SummaryEvent,
    cited_bullets_from_text,
    numbered_highlights,
    refuse_boolean,
    refuse_fraction,
    refuse_unknown_params,
)
from tldrlab.errors import ConfigError, ServiceUnavailableError

SYSTEM_PROMPT = (
    "You write TL;DRs of forum threads. Answer with 3 to 5 short bullet lines starting with '- '. "
    "End every bullet with the numbers of the key sentences it rests on, like [2] or [1, 3]. "
    "Use only facts from the thread."
)


def env_first(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


@dataclass
class OpenAISummarizer:
    base_url: str
    model: str
    api_key: str | None = None
    name: str = "openai"
    max_tokens: int = 300
    temperature: float = 0.2
    max_thread_chars: int = 12000
    """Threads longer than this are folded before prompting."""
    timeout_s: float = 60.0

    def cache_params(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "model": self.model,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "max_thread_chars": self.max_thread_chars,
            "prompt": SYSTEM_PROMPT,
        }

    def messages(self, context: SummaryContext, draft: str | None = None) -> list[dict[str, str]]:
        folded, _ = fold_thread(context.thread, context.highlights, self.max_thread_chars)
        user = f"Thread:\n{folded}\n\nKey sentences:\n{numbered_highlights(context.highlights)}\n"
        if draft:
            user += f"\nA first draft to consolidate and correct:\n{draft}\n"
        user += f"\nWrite at most {context.max_bullets} bullets, each citing key sentences by number."
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]

    def stream_text(
        self, context: SummaryContext, draft: str | None = None
    ) -> Generator[str, None, str | None]:
        """Raw text chunks from the endpoint; returns the answer's `finish_reason` (None when the stream
        ended with [DONE] and no finish_reason, or the client went away). A stream that ends with neither
        [DONE] nor a finish_reason in its last choice chunk is a ServiceUnavailableError: the connection
        closed mid-answer, and the cut answer was taken as the whole one (and cached)."""
        import httpx

        headers = {"Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        body = {
            "model": self.model,
            "messages": self.messages(context, draft),
            "stream": True,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
        }
        url = self.base_url.rstrip("/") + "/chat/completions"
        answering = False
        finish_reason: str | None = None
        try:
            with (
                httpx.Client(timeout=self.timeout_s) as client,
                client.stream("POST", url, json=body, headers=headers) as response,
            ):
                if response.status_code >= 400:
                    detail = response.read().decode("utf-8", "replace")[:300]
                    raise ServiceUnavailableError(
                        f"chat endpoint {url} answered {response.status_code}: {detail}"
                    )
                answering = True
                for line in response.iter_lines():
                    if context.stop.is_set():
                        return None  # leaving the block closes the connection: the server stops generating
                    if not line.startswith("data:"):
                        continue
                    payload = line[len("data:") :].strip()
                    if payload == "[DONE]":
                        return finish_reason
                    chunk = parse_chunk(payload, url)
                    if chunk.has_choice:  # a usage report after the last choice chunk does not undo it
                        finish_reason = chunk.finish_reason
                    if chunk.text:
                        yield chunk.text
        except httpx.HTTPError as exc:
            if answering:  # the answer had begun: the connection broke mid-answer, it was reached
                raise ServiceUnavailableError(
                    f"chat endpoint {url} ended before the answer was complete: {exc}"
                ) from exc
            raise ServiceUnavailableError(f"cannot reach the chat endpoint {url}: {exc}") from exc
        if finish_reason is None and not context.stop.is_set():
            raise ServiceUnavailableError(
                f"chat endpoint {url} ended before the answer was complete (no [DONE] and no "
                "finish_reason): the connection closed mid-answer; try again"
            )
        return finish_reason

    def stream(self, context: SummaryContext) -> Iterator[SummaryEvent]:
        yield from self.stream_answer(context)

    def stream_answer(self, context: SummaryContext, draft: str | None = None) -> Iterator[SummaryEvent]:
        """The answer's text chunks as they come, then notices and its cited bullets (`draft`: a first draft
        the endpoint consolidates, two_stage's final stage)."""
        chunks = self.stream_text(context, draft)
        pieces: list[str] = []
        try:
            while True:
                try:
                    piece = next(chunks)
                except StopIteration as end:  # the text is all there: `end.value` says why it ended
                    finish_reason = end.value
                    break
                pieces.append(piece)
                yield piece
        finally:
            chunks.close()  # a consumer that leaves early closes the connection now, not when collected
        if context.stop.is_set():
            return
        text = "".join(pieces)
        if finish_reason == "length":
            text, notice = without_unfinished_bullet(text, self.max_tokens)
            yield notice
        yield from cited_bullets_from_text(text, context)


def without_unfinished_bullet(text: str, max_tokens: int) -> tuple[str, Notice]:
    """An answer the endpoint cut at `max_tokens`, without its last line when that line was cut (it does not
    end the answer with a line break: half a sentence, a citation cut to "[3"), and the notice saying so."""
    said = f"the chat endpoint's answer was cut at its token limit (max_tokens={max_tokens})"
    if text.endswith("\n") or not text.strip():
        return text, Notice(f"{said}: more bullets may have followed")
    kept = text.rsplit("\n", 1)[0] + "\n" if "\n" in text.strip() else ""
    return kept, Notice(f"{said}: its unfinished last bullet was left out", explains_empty=not kept.strip())


@dataclass(frozen=True)
class ChatChunk:
    """What one streamed chunk says."""

    text: str | None
    """`choices[0].delta.content`; None when it carries none."""
    has_choice: bool
    """It carries a choice (a usage report, sent after the last one, does not)."""
    finish_reason: str | None
    """`choices[0].finish_reason`: why the answer ended (`stop`, `length`), in its last choice chunk."""


def parse_chunk(payload: str, url: str) -> ChatChunk:
    """One streamed chunk. An endpoint that reports an error in the stream (`{"error": {"message": ...}}`,
    as OpenAI-compatible servers do when a model fails mid-answer) or sends what is no chunk is a
    ServiceUnavailableError naming the endpoint: the error was skipped as a chunk without text, so the answer
    cut short there became the digest (and was cached), and a malformed chunk was an "internal error" of the
    service (a traceback in the CLI)."""
    try:
        chunk = json.loads(payload)
    except ValueError:
        raise ServiceUnavailableError(
            f"chat endpoint {url} sent a chunk that is not JSON: {payload[:200]!r}"
        ) from None
    if isinstance(chunk, dict) and chunk.get("error"):
        error = chunk["error"]
        message = error.get("message") if isinstance(error, dict) else None
        shown = str(message if message is not None else error)[:300]
        raise ServiceUnavailableError(f"chat endpoint {url} reported an error during its answer: {shown}")
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    first = choices[0] if isinstance(choices, list) and choices else {}
    delta = first.get("delta") if isinstance(first, dict) else None
    text = delta.get("content") if isinstance(delta, dict) else None
    finish_reason = first.get("finish_reason") if isinstance(first, dict) else None
    # a chunk without choices (a usage report) or without content (a role, a finish reason) carries no text
    shaped = isinstance(chunk, dict) and isinstance(choices, list | None) and isinstance(first, dict)
    if not shaped or not isinstance(text, str | None) or not isinstance(finish_reason, str | None):
        raise ServiceUnavailableError(
            f"chat endpoint {url} sent a chunk that is not a chat completion chunk: {payload[:200]!r}"
        )
    return ChatChunk(text, bool(choices), finish_reason or None)


def build(params: dict[str, Any]) -> OpenAISummarizer:
    refuse_unknown_params("openai", params, ("base_url", "model", "max_tokens", "temperature"))
    base_url = params.get("base_url") or env_first("TLDRLAB_OPENAI_BASE_URL", "OPENAI_BASE_URL")
    if not base_url:
        raise ConfigError("the openai summarizer needs TLDRLAB_OPENAI_BASE_URL (or OPENAI_BASE_URL)")
    numbers: dict[str, Any] = {}
    for key, kind, default, low in (("max_tokens", int, 300, 1), ("temperature", float, 0.2, 0.0)):
        value = params.get(key, default)
        refuse_boolean("openai", key, value)
        if kind is int:
            refuse_fraction("openai", key, value)
        try:
            numbers[key] = kind(value)
        # a clear 400 / exit 2, not an internal error (OverflowError: JSON's Infinity, or 1e400)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ConfigError(f"bad openai summarizer parameter {key}={value!r}: {exc}") from exc
        if not math.isfinite(numbers[key]):  # the endpoint would refuse it, after the stream started
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        if not numbers[key] >= low:
            raise ConfigError(f"{key} must be a number >= {low}, got {value!r}")
    return OpenAISummarizer(
        base_url=str(base_url),
        model=str(params.get("model") or env_first("TLDRLAB_OPENAI_MODEL") or "gpt-4o-mini"),
        api_key=env_first("TLDRLAB_OPENAI_API_KEY", "OPENAI_API_KEY"),
        **numbers,
    )
