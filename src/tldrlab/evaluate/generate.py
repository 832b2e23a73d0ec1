"""`generate`: seeded sampling or greedy decoding for every model family with one set of options.

t5, gpt2 and causal_lm use transformers' `generate` (with its KV cache); char_lstm has its own loop that
carries the LSTM state forward. A `chat` model (causal_lm) gets each prompt as a document: it is cut to
`max_input_tokens`, wrapped in the model's chat template with the instruction it was fine-tuned with
(`models.chat`), and the answer ends at the end-of-turn token (the tokenizer's eos or one the model's
generation config lists: `end_token_ids`). Greedy chat prompts are decoded in left-padded
batches.
The seed is applied to a forked RNG so generation never disturbs the caller's random state.

`generate_detailed` also says, per output, how many tokens were decoded (`steps`, the end-of-sequence token
included) and whether it ended on the end-of-sequence token (`eos_terminated`) or a stop string (`stopped`);
with `stop_on_eos=False` decoding goes on to `max_new_tokens`. A `streamer` (transformers'
`TextIteratorStreamer`) receives the tokens of a single prompt as they are decoded (the summarize endpoint).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import torch

from tldrlab.errors import InvalidInputError
from tldrlab.evaluate.config import GenerateOptions
from tldrlab.logs import get_logger
from tldrlab.models.chat import (
    chat_prompt_ids,
    context_limit,
    fitting_document,
    instruction_of,
    truncate_text,
)
from tldrlab.models.registry import model_name_of, model_task, unwrap_model
from tldrlab.tokenizers.plain import plain_ids

log = get_logger("evaluate.generate")


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Mask (to -inf) what top-k / top-p exclude, on the last dimension."""
    if top_k > 0:
        k = min(top_k, logits.size(-1))
        kth = torch.topk(logits, k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = torch.softmax(sorted_logits, dim=-1)
        # Drop a token when the tokens before it already reach top_p (the first token always stays).
        drop_sorted = (probs.cumsum(dim=-1) - probs) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def apply_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """(text cut before the earliest stop string, whether one was found)."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def _encode_prompt(tokenizer: Any, prompt: str, options: GenerateOptions, *, keep_end: bool) -> list[int]:
    ids = plain_ids(tokenizer, prompt)  # user text: an "</s>" in it is text, not the end of the prompt
    if len(ids) > options.max_input_tokens:
        ids = ids[-options.max_input_tokens :] if keep_end else ids[: options.max_input_tokens]
    return ids


def answer_room(limit: int, prompt_tokens: int, requested: int, fixed: int = 1) -> int:
    """New tokens a model of `limit` learned positions (GPT-2's n_positions) generates after a prompt of
    `prompt_tokens`, as it takes prompt and answer within them: all `requested` where both fit; else what the
    whole prompt leaves, but at least a quarter of the positions (the prompt is cut for it: an LM prompt's
    start, a chat prompt's document), and never so many that the prompt's `fixed` part (a chat template and
    instruction) does not fit. At 64 positions the default 64 new tokens left a prompt nothing: a chat prompt
    was refused, a GPT-2 prompt cut to one token."""
    if prompt_tokens + requested <= limit:
        return requested
    floor = min(requested, max(1, limit // 4))
    return max(1, min(max(limit - prompt_tokens, floor), limit - fixed))


def _warn_capped(limit: int, requested: int, capped: int, *, cut: bool) -> None:
    fit = "the prompt, cut, fits beside them" if cut else "the prompt fits beside them"
    log.warning(
        f"the model takes {limit} positions for the prompt and its answer together: generating at most "
        f"{capped} new tokens, not max_new_tokens {requested}, so that {fit}; give --max-new-tokens "
        f"{capped} or less to choose the split yourself"
    )


def char_lstm_refusal(options: GenerateOptions) -> str | None:
    """Why char_lstm's own decoding loop cannot decode as `options` ask; None when it can. It has no beam
    search, which t5, gpt2 and chat models use for beams and for several greedy sequences (their n best
    beams): at temperature 0 its n sequences were n copies of its one greedy output."""
    if options.num_beams > 1:  # its own decoding loop would ignore them
        return f"char_lstm has no beam search: num_beams must be 1 (got {options.num_beams})"
    n = options.num_return_sequences
    if options.temperature == 0 and n > 1:
        return (
            f"char_lstm has no beam search: at temperature 0 (greedy) it has one output, and "
            f"num_return_sequences {n} would be {n} copies of it; give a temperature above 0 to sample {n}, "
            "or num_return_sequences 1"
        )
    return None


@torch.no_grad()
def _generate_char_lstm(model: Any, tokenizer: Any, prompt: str, options: GenerateOptions) -> list[list[int]]:
    device = model.device
    ids = _encode_prompt(tokenizer, prompt, options, keep_end=True) or [tokenizer.bos_token_id]
    n = options.num_return_sequences
    generator = torch.Generator(device="cpu").manual_seed(options.seed)
    out = model(torch.tensor([ids] * n, device=device))
    state, logits = out.past_key_values, out.logits[:, -1]
    generated: list[list[int]] = [[] for _ in range(n)]
    done = torch.zeros(n, dtype=torch.bool)
    for _ in range(options.max_new_tokens):
        if options.temperature == 0:
            next_ids = logits.argmax(dim=-1).cpu()
        else:
            filtered = filter_logits(logits.float() / options.temperature, options.top_k, options.top_p)
            next_ids = torch.multinomial(torch.softmax(filtered, -1).cpu(), 1, generator=generator).squeeze(1)
        for row, token in enumerate(next_ids.tolist()):
            if not done[row]:
                generated[row].append(token)
        if options.stop_on_eos:
            done |= next_ids == tokenizer.eos_token_id
        if bool(done.all()):
            break
        out = model(next_ids.unsqueeze(1).to(device), past_key_values=state)
        state, logits = out.past_key_values, out.logits[:, -1]
    return generated


@torch.no_grad()
def _generate_causal_hf(
    model: Any, tokenizer: Any, prompt: str, options: GenerateOptions, **extra: Any
) -> list[list[int]]:
    """One prompt through a transformers causal LM; rows exclude the prompt."""
    ids = _encode_prompt(tokenizer, prompt, options, keep_end=True) or [tokenizer.bos_token_id]
    limit = context_limit(model)
    max_new = options.max_new_tokens
    if limit is not None:
        max_new = answer_room(limit, len(ids), max_new)
        if max_new < options.max_new_tokens:
            _warn_capped(limit, options.max_new_tokens, max_new, cut=len(ids) > limit - max_new)
        ids = ids[-(limit - max_new) :]
    input_ids = torch.tensor([ids], device=model.device)
    output = model.generate(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        **_hf_kwargs(options, tokenizer, max_new),
        **extra,
    )
    return [row[input_ids.size(1) :].tolist() for row in output]


def pad_right(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of token rows of different lengths as (input_ids, attention_mask), padded on the right with
    `pad_id` (encoder inputs: a seq2seq encoder reads its source from the first position)."""
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    return input_ids, mask


@torch.no_grad()
def _generate_seq2seq_batch(
    model: Any, tokenizer: Any, prompts: list[str], options: GenerateOptions, **extra: Any
) -> list[list[list[int]]]:
    """Several seq2seq prompts in one `generate` call: per prompt, its num_return_sequences rows."""
    # the eos counts in max_input_tokens, as training's max_source_len counts it (`Seq2SeqTask`): a run
    # generates with max_input_tokens = max_source_len, and its model read one token more here than it
    # was trained and evaluated on
    keep = options.max_input_tokens - 1
    rows = [
        [*_encode_prompt(tokenizer, p, options, keep_end=False)[:keep], tokenizer.eos_token_id]
        for p in prompts
    ]
    input_ids, mask = pad_right(rows, tokenizer.pad_token_id)
    output = model.generate(
        input_ids=input_ids.to(model.device),
        attention_mask=mask.to(model.device),
        **_hf_kwargs(options, tokenizer),
        **{"cache": lazy_seq2seq_cache(), **extra},
    )
    n = options.num_return_sequences
    return [[row.tolist() for row in output[i * n : (i + 1) * n]] for i in range(len(prompts))]


def lazy_seq2seq_cache() -> Any:
    """A seq2seq model's KV cache that grows a layer at a time. The one transformers builds from the config
    has `num_hidden_layers` layers, which T5 maps to its *encoder* depth: a T5 with more decoder than encoder
    layers (`num_layers: 1` beside size tiny's 2 decoder layers) failed its first generation with
    "IndexError: list index out of range", in the middle of training when the run generated summaries."""
    from transformers import DynamicCache, EncoderDecoderCache

    return EncoderDecoderCache(DynamicCache(), DynamicCache())


@torch.no_grad()
def _generate_chat_batch(
    model: Any, tokenizer: Any, documents: list[str], options: GenerateOptions, **extra: Any
) -> list[list[list[int]]]:
    """Chat prompts (documents in the chat template) decoded together, left-padded so every row's answer
    starts at the same position; per prompt, its num_return_sequences rows (answers only)."""
    instruction = instruction_of(model)
    limit = context_limit(model)
    max_new, budget = options.max_new_tokens, None
    if limit is not None:
        # a model with learned positions (GPT-2's n_positions) takes prompt + answer within them: an
        # IndexError in its forward otherwise; the document gives way first, then the answer's length
        def length(document: str) -> int:
            return len(chat_prompt_ids(tokenizer, document, instruction))

        longest = max(length(truncate_text(tokenizer, d, options.max_input_tokens)) for d in documents)
        max_new = answer_room(limit, longest, options.max_new_tokens, fixed=length(""))
        budget = limit - max_new
        if max_new < options.max_new_tokens:
            _warn_capped(limit, options.max_new_tokens, max_new, cut=longest > budget)
    rows = [
        chat_prompt_ids(
            tokenizer,
            truncate_text(tokenizer, doc, options.max_input_tokens)
            if budget is None
            else fitting_document(tokenizer, doc, instruction, budget, options.max_input_tokens),
            instruction,
        )
        for doc in documents
    ]
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, width - len(row) :] = torch.tensor(row)
        mask[i, width - len(row) :] = 1
    output = model.generate(
        input_ids=input_ids.to(model.device),
        attention_mask=mask.to(model.device),
        use_cache=True,  # a model trained with gradient checkpointing has it off in its config
        **_hf_kwargs(options, tokenizer, max_new, ends=end_token_ids(model, tokenizer)),
        **extra,
    )
    n = options.num_return_sequences
    return [[row[width:].tolist() for row in output[i * n : (i + 1) * n]] for i in range(len(documents))]


def end_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The tokens that end a chat model's answer: the tokenizer's eos and those its generation config lists.

    Gemma's and Llama 3's tokenizers end a text with eos and a chat turn with another token, which only their
    generation config names: stopping at eos alone, an answer ran on past its turn (the next turns' text in
    the output) to `max_new_tokens`."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    listed = configured if isinstance(configured, list) else [configured]
    ids = [tokenizer.eos_token_id, *listed]
    return [int(i) for i in dict.fromkeys(ids) if isinstance(i, int)]


def _hf_kwargs(
    options: GenerateOptions,
    tokenizer: Any,
    max_new_tokens: int | None = None,
    *,
    ends: list[int] | None = None,
) -> dict[str, Any]:
    """transformers `generate` arguments for these options (greedy with several sequences = beam search);
    `ends`: the tokens that end an output (default: the tokenizer's eos)."""
    sample = options.temperature > 0
    kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens or options.max_new_tokens,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": (ends or tokenizer.eos_token_id) if options.stop_on_eos else None,
        "do_sample": sample,
        "num_return_sequences": options.num_return_sequences,
    }
    if sample:
        kwargs.update(temperature=options.temperature, top_k=options.top_k or None, top_p=options.top_p)
    else:
        kwargs.update(num_beams=max(options.num_beams, options.num_return_sequences))
        kwargs.update(temperature=None, top_k=None, top_p=None)
    return kwargs


class _EventStop:
    """A transformers stopping criterion: stop every row once the event is set."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        stop = self.event.is_set()
        return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)


@dataclass(frozen=True)
class GeneratedText:
    """One output and how its decoding ended."""

    text: str
    steps: int
    """Tokens decoded (the end-of-sequence token included when it ended there)."""
    eos_terminated: bool
    """Whether it ended on the model's end-of-sequence token (else at `max_new_tokens`, or a stop string)."""
    stopped: bool = False
    """Whether a stop string cut it."""


def _output(
    tokenizer: Any, ids: list[int], options: GenerateOptions, *, strip: bool, ends: list[int]
) -> GeneratedText:
    """The text of one generated row and how it ended. HF pads finished rows after their eos (char_lstm keeps
    the eos it sampled): the text stops at the first of `ends` when `stop_on_eos`."""
    cut = next((i for i, token in enumerate(ids) if token in ends), None) if options.stop_on_eos else None
    if cut is not None:
        kept, steps, ended = ids[:cut], cut + 1, True
    else:
        kept, steps, ended = ids, len(ids), False
    text, stopped = apply_stop(str(tokenizer.decode(kept, skip_special_tokens=True)), options.stop)
    return GeneratedText(text.strip() if strip else text, steps, ended and not stopped, stopped)


def generate_detailed(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    options: GenerateOptions | None = None,
    *,
    streamer: Any | None = None,
    stop_event: threading.Event | None = None,
) -> list[list[GeneratedText]]:
    """For each prompt, `num_return_sequences` outputs with how each ended (see the module docstring).

    LM outputs exclude the prompt. Greedy decoding (temperature 0) with several sequences uses beam search for
    t5 / gpt2 so the outputs differ. A `streamer` needs one prompt and one sequence; setting `stop_event`
    ends decoding after the current token (a client that went away).
    """
    options = options or GenerateOptions()
    if streamer is not None and (len(prompts) != 1 or options.num_return_sequences != 1):
        raise InvalidInputError("streaming generation takes one prompt and one sequence at a time")
    model = unwrap_model(model)
    name = model_name_of(model)
    was_training = model.training
    model.eval()
    results: list[list[GeneratedText]] = []
    devices = [model.device] if model.device.type == "cuda" else []
    extra: dict[str, Any] = {"streamer": streamer} if streamer is not None else {}
    if stop_event is not None:
        from transformers import StoppingCriteriaList

        extra["stopping_criteria"] = StoppingCriteriaList([_EventStop(stop_event)])
    try:
        with torch.random.fork_rng(devices=devices):
            task = model_task(name)
            first_is_start = task == "seq2seq"  # a seq2seq row starts with the decoder start token
            eos = tokenizer.eos_token_id
            ends = end_token_ids(model, tokenizer) if task == "chat" else ([] if eos is None else [eos])
            if task in ("seq2seq", "chat"):
                # Greedy decoding is batched (fast evaluation); sampling goes one prompt at a time so that a
                # prompt's samples depend only on it and the seed, not on which prompts share its batch.
                size = options.batch_size if options.temperature == 0 else 1
                decode_batch = _generate_seq2seq_batch if task == "seq2seq" else _generate_chat_batch
                batches = []
                for start in range(0, len(prompts), size):
                    torch.manual_seed(options.seed)
                    batch = prompts[start : start + size]
                    batches.extend(decode_batch(model, tokenizer, batch, options, **extra))
            else:
                batches = []
                for prompt in prompts:
                    torch.manual_seed(options.seed)
                    if name == "char_lstm":
                        if streamer is not None:
                            raise InvalidInputError("char_lstm models do not stream")
                        if (refusal := char_lstm_refusal(options)) is not None:
                            raise InvalidInputError(refusal)
                        batches.append(_generate_char_lstm(model, tokenizer, prompt, options))
                    else:
                        batches.append(_generate_causal_hf(model, tokenizer, prompt, options, **extra))
            for rows in batches:
                results.append(
                    [
                        _output(
                            tokenizer,
                            row[1:] if first_is_start else row,
                            options,
                            strip=task == "chat",
                            ends=ends,
                        )
                        for row in rows
                    ]
                )
    finally:
        model.train(was_training)
    return results


def generate(
    model: Any, tokenizer: Any, prompts: list[str], options: GenerateOptions | None = None
) -> list[list[str]]:
    """For each prompt, `num_return_sequences` generated continuations (LMs) or summaries (seq2seq).

    LM outputs exclude the prompt. Outputs end at eos or at the first stop string. Greedy decoding
    (temperature 0) with several sequences uses beam search for t5 / gpt2 so the outputs differ.
    """
    return [[out.text for out in outs] for outs in generate_detailed(model, tokenizer, prompts, options)]
