"""Plain summaries of documents with a local model: what `POST /summarize` serves to a front end.

    model = summarizer_model("production")                        # any model reference or alias, loaded once
    summaries = summarize(model, ["doc one", "doc two"], max_new_tokens=96)
    for event in stream_summaries(model, docs, ...): ...          # ("token", i, text) ... ("summary", i, out)

The model is loaded by the digest's local-model loader (`tldrlab.digest.local_model`: a causal chat LM such as
the bundled SmolLM2, prompted with its chat template, or a seq2seq run) and decoded by the one generation
path of `tldrlab.evaluate.generate` (greedy, or beam search with `num_beams`), so a summary here is what
`tldrlab generate` gives for the same model. A seq2seq run's documents get its training prefix. Streaming
decodes one document at a time through transformers' `TextIteratorStreamer`; beam search cannot stream
tokens, so with `num_beams > 1` each summary arrives whole. One generation at a time per process (the model is
shared by every request).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tldrlab.digest.local_model import LocalModel, load_local_model
from tldrlab.evaluate.config import GenerateOptions
from tldrlab.evaluate.generate import GeneratedText, generate_detailed
from tldrlab.evaluate.run_eval import training_prefix

MAX_INPUT_TOKENS = 1536
"""Tokens of a document kept (its start for seq2seq models; chat prompts are cut to fit the same budget)."""
_GENERATING = threading.Lock()


@dataclass(frozen=True)
class SummarizerModel:
    """A loaded model and how documents are put to it."""

    ref: str
    loaded: LocalModel
    prefix: str
    """Put before every document (a seq2seq run's training prefix)."""

    @property
    def kind(self) -> str:
        return self.loaded.kind


def summarizer_model(ref: str) -> SummarizerModel:
    """Load (once per process) the model a reference or alias names."""
    loaded = load_local_model(ref)
    if getattr(loaded.model, "tldrlab_name", None) is None and loaded.kind == "causal":
        loaded.model.tldrlab_name = "causal_lm"  # a chat LM: prompted with its chat template
    prefix = training_prefix(ref) if loaded.kind == "seq2seq" else ""
    return SummarizerModel(ref, loaded, prefix)


def _options(max_new_tokens: int, num_beams: int) -> GenerateOptions:
    return GenerateOptions(
        temperature=0.0,
        max_new_tokens=max_new_tokens,
        num_beams=num_beams,
        max_input_tokens=MAX_INPUT_TOKENS,
        batch_size=8,
    )


def summarize(
    model: SummarizerModel, documents: list[str], *, max_new_tokens: int = 128, num_beams: int = 1
) -> list[GeneratedText]:
    """One summary per document (greedy, or beam search), with its steps and how it ended."""
    prompts = [model.prefix + d for d in documents]
    with _GENERATING:
        outputs = generate_detailed(
            model.loaded.model, model.loaded.tokenizer, prompts, _options(max_new_tokens, num_beams)
        )
    return [outs[0] for outs in outputs]


def stream_summaries(
    model: SummarizerModel,
    documents: list[str],
    *,
    max_new_tokens: int = 128,
    num_beams: int = 1,
    stop: threading.Event | None = None,
) -> Iterator[tuple[str, int, Any]]:
    """`("token", i, text)` as document i's summary is decoded (greedy only), then `("summary", i,
    GeneratedText)`; document by document. Setting `stop` ends the current decoding and the stream."""
    from transformers import TextIteratorStreamer

    stop = stop or threading.Event()
    options = _options(max_new_tokens, num_beams)
    tokenizer = model.loaded.tokenizer
    for index, document in enumerate(documents):
        if stop.is_set():
            return
        prompt = model.prefix + document
        with _GENERATING:
            if num_beams > 1:
                outputs = generate_detailed(model.loaded.model, tokenizer, [prompt], options, stop_event=stop)
                yield "summary", index, outputs[0][0]
                continue
            streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
            done: dict[str, Any] = {}

            def decode(prompt: str = prompt, streamer: Any = streamer, done: dict[str, Any] = done) -> None:
                try:
                    done["outputs"] = generate_detailed(
                        model.loaded.model, tokenizer, [prompt], options, streamer=streamer, stop_event=stop
                    )
                except BaseException as exc:  # handed to the stream's reader below
                    done["error"] = exc
                    streamer.end()

            worker = threading.Thread(target=decode, name="tldrlab-summarize", daemon=True)
            worker.start()
            for chunk in streamer:
                if chunk:
                    yield "token", index, chunk
            worker.join()
        if "error" in done:
            raise done["error"]
        yield "summary", index, done["outputs"][0][0]
