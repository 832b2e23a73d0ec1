"""`generate`: seeded sampling or greedy decoding for t5, gpt2 and char_lstm with one set of options.

t5 and gpt2 use transformers' `generate`; char_lstm has its own loop that carries the LSTM state forward.
The seed is applied to a forked RNG so generation never disturbs the caller's random state.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from tldrlab.errors import InvalidInputError
from tldrlab.models.registry import model_name_of, model_task


class GenerateOptions(BaseModel):
    """How to decode."""

    model_config = ConfigDict(extra="forbid")

    max_new_tokens: int = Field(default=64, ge=1, le=4096)
    """Most tokens to generate per sequence."""

    temperature: float = Field(default=1.0, ge=0.0)
    """Sampling temperature; 0 means greedy decoding."""

    top_k: int = Field(default=0, ge=0)
    """Sample only among the k most likely tokens (0: no limit)."""

    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    """Nucleus sampling: the smallest set of tokens whose probability reaches p (1.0: no limit)."""

    stop: list[str] = Field(default_factory=list)
    """Cut each output at the first occurrence of any of these strings (the stop string is dropped)."""

    seed: int = 0
    """Seed of the sampling RNG: the same seed gives the same outputs."""

    num_return_sequences: int = Field(default=1, ge=1, le=64)
    """Outputs per prompt."""

    num_beams: int = Field(default=1, ge=1)
    """Beam search width for t5 / gpt2 (greedy only)."""

    max_input_tokens: int = Field(default=512, ge=1)
    """Prompts are truncated (keeping their end for LMs, their start for seq2seq) to this many tokens."""


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
    ids: list[int] = tokenizer.encode(prompt, add_special_tokens=False)
    if len(ids) > options.max_input_tokens:
        ids = ids[-options.max_input_tokens :] if keep_end else ids[: options.max_input_tokens]
    return ids


def _lm_context_limit(model: Any) -> int | None:
    return getattr(getattr(model, "config", None), "n_positions", None)


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
        done |= next_ids == tokenizer.eos_token_id
        if bool(done.all()):
            break
        out = model(next_ids.unsqueeze(1).to(device), past_key_values=state)
        state, logits = out.past_key_values, out.logits[:, -1]
    return generated


@torch.no_grad()
def _generate_hf(model: Any, tokenizer: Any, prompt: str, options: GenerateOptions) -> list[list[int]]:
    seq2seq = model_task(model_name_of(model)) == "seq2seq"
    ids = _encode_prompt(tokenizer, prompt, options, keep_end=not seq2seq)
    if seq2seq:
        ids = [*ids, tokenizer.eos_token_id]
    elif not ids:
        ids = [tokenizer.bos_token_id]
    limit = None if seq2seq else _lm_context_limit(model)
    max_new = options.max_new_tokens
    if limit is not None:
        ids = ids[-max(1, limit - 1) :]
        max_new = min(max_new, limit - len(ids))
        if max_new < 1:
            raise InvalidInputError(f"the prompt fills the model's {limit}-token context")
    input_ids = torch.tensor([ids], device=model.device)
    sample = options.temperature > 0
    kwargs: dict[str, Any] = {
        "max_new_tokens": max_new,
        "do_sample": sample,
        "num_return_sequences": options.num_return_sequences,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if sample:
        kwargs.update(temperature=options.temperature, top_k=options.top_k or None, top_p=options.top_p)
    else:
        kwargs.update(num_beams=max(options.num_beams, options.num_return_sequences))
        kwargs.update(temperature=None, top_k=None, top_p=None)
    output = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kwargs)
    start = 0 if seq2seq else input_ids.size(1)
    return [row[start:].tolist() for row in output]


def _decode(tokenizer: Any, ids: list[int]) -> str:
    # Stop at the first eos (HF pads finished rows with pad; char_lstm keeps the eos it sampled).
    if tokenizer.eos_token_id in ids:
        ids = ids[: ids.index(tokenizer.eos_token_id)]
    return str(tokenizer.decode(ids, skip_special_tokens=True))


def generate(
    model: Any, tokenizer: Any, prompts: list[str], options: GenerateOptions | None = None
) -> list[list[str]]:
    """For each prompt, `num_return_sequences` generated continuations (LMs) or summaries (seq2seq).

    LM outputs exclude the prompt. Outputs end at eos or at the first stop string. Greedy decoding
    (temperature 0) with several sequences uses beam search for t5 / gpt2 so the outputs differ.
    """
    options = options or GenerateOptions()
    name = model_name_of(model)
    was_training = model.training
    model.eval()
    results: list[list[str]] = []
    devices = [model.device] if model.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            for prompt in prompts:
                torch.manual_seed(options.seed)
                if name == "char_lstm":
                    rows = _generate_char_lstm(model, tokenizer, prompt, options)
                else:
                    rows = _generate_hf(model, tokenizer, prompt, options)
                results.append([apply_stop(_decode(tokenizer, row), options.stop)[0] for row in rows])
    finally:
        model.train(was_training)
    return results
