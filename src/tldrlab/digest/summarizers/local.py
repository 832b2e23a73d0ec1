"""A local seq2seq model: a checkpoint trained by tldrlab or any Hugging Face summarization model directory.

The thread is folded to the model's input length, prefixed with the numbered highlights so a model that
learned to cite can; tokens stream through transformers' TextIteratorStreamer while `generate` runs in a
thread, and a StoppingCriteria watching `context.stop` ends generation when the client disconnects.
Loaded models are cached per path (loading is the slow part).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from tldrlab.digest.fold import fold_thread
from tldrlab.digest.summarizers.base import SummaryContext, SummaryEvent, bullets_from_text
from tldrlab.errors import ConfigError, InvalidInputError, NotFoundError
from tldrlab.models.resolve import resolve_model_ref


@lru_cache(maxsize=2)
def load_seq2seq(path: str) -> tuple[Any, Any]:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    if not Path(path).is_dir():
        raise NotFoundError(f"summarization model directory not found: {path}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSeq2SeqLM.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{path} is not a seq2seq model directory: {exc}") from exc
    model.eval()
    return model, tokenizer


@dataclass
class LocalSummarizer:
    model_path: str
    name: str = "local"
    max_new_tokens: int = 96
    max_input_tokens: int = 512
    num_beams: int = 1
    """Streaming needs greedy or sampling; beams > 1 still work but tokens arrive at the end."""
    prefix: str = "summarize: "

    def cache_params(self) -> dict[str, Any]:
        return {
            "model_path": str(Path(self.model_path).resolve()),
            "max_new_tokens": self.max_new_tokens,
            "max_input_tokens": self.max_input_tokens,
            "num_beams": self.num_beams,
        }

    def prompt(self, context: SummaryContext, max_chars: int) -> str:
        folded, _ = fold_thread(context.thread, context.highlights, max_chars)
        return f"{self.prefix}{folded}"

    def stream(self, context: SummaryContext) -> Iterator[SummaryEvent]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        model, tokenizer = load_seq2seq(self.model_path)
        limit = min(self.max_input_tokens, getattr(tokenizer, "model_max_length", 512) or 512)
        text = self.prompt(context, max_chars=limit * 4)  # ~4 characters a token, then cut exactly
        inputs = tokenizer(text, return_tensors="pt", truncation=True, max_length=limit)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=60.0)
        stop = context.stop

        class StopOnFlag(StoppingCriteria):
            def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool)

        failure: list[BaseException] = []

        def generate() -> None:
            try:
                with torch.inference_mode():
                    model.generate(
                        **inputs,
                        max_new_tokens=self.max_new_tokens,
                        num_beams=self.num_beams,
                        do_sample=False,
                        streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([StopOnFlag()]),
                    )
            except BaseException as exc:  # surfaced in the caller's thread below
                failure.append(exc)
                streamer.end()

        worker = threading.Thread(target=generate, name="tldrlab-local-generate", daemon=True)
        worker.start()
        pieces: list[str] = []
        finished = False
        try:
            for chunk in streamer:
                if chunk:
                    pieces.append(chunk)
                    yield chunk
                if stop.is_set():
                    break
            finished = True
        finally:
            if not finished:  # the consumer closed this generator early: stop generating too
                stop.set()  # generate() sees the flag at its next step, so the join below is short
            worker.join(timeout=60)
        if failure:
            raise InvalidInputError(f"local summarizer failed: {failure[0]}") from failure[0]
        if stop.is_set():
            return
        yield bullets_from_text("".join(pieces), context)


def build(params: dict[str, Any]) -> LocalSummarizer:
    path = params.get("model_path") or params.get("model")
    if not path:
        raise ConfigError(
            "the local summarizer needs model_path (a seq2seq model directory, runs/<run>/model or a run id)"
        )
    return LocalSummarizer(
        model_path=str(resolve_model_ref(str(path))),
        max_new_tokens=int(params.get("max_new_tokens", 96)),
        max_input_tokens=int(params.get("max_input_tokens", 512)),
        num_beams=int(params.get("num_beams", 1)),
    )
