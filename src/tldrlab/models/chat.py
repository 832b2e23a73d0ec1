"""How a causal chat LM is asked for a summary: one prompt format for fine-tuning, generation, evaluation,
scoring and the digest.

    prompt = chat_prompt(tokenizer, document, instruction)      # text ending where the answer starts
    ids = chat_prompt_ids(tokenizer, document, instruction)     # its ids (never tokenizer.encode(prompt))
    prompt_ids, completion_ids = chat_pair_ids(tokenizer, document, summary, instruction)

With a chat template (the tokenizer's `chat_template`, e.g. SmolLM2's ChatML), the request is one user turn
"<instruction>\n\n<document>" and the summary is the assistant's turn, ending with the end-of-turn token (the
tokenizer's eos). Without a template (tiny test tokenizers, plain LMs) the prompt is
"<instruction>\n\n<document>\nSummary:" and the completion " <summary>" + eos. Either way the completion ends
with eos so a fine-tuned model learns to stop, and generation stops there.

Documents and summaries are user text: a special-token string in them ("<|im_end|>" in a post) is encoded as
text (tokenizers/plain.py), so only the template's own turn markers and the appended eos are control tokens.
"""

from __future__ import annotations

from typing import Any

from tldrlab.errors import InvalidInputError
from tldrlab.tokenizers.plain import chat_ids, marked_ids, plain_ids, render_chat, unmark

DEFAULT_INSTRUCTION = "Summarize the following text in one short sentence."
"""The request put before the document (the fine-tuned model keeps the one it was trained with)."""

PLAIN_ANSWER_CUE = "\nSummary:"
"""Without a chat template: what ends the prompt, right before the summary."""


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def user_message(document: str, instruction: str) -> str:
    return f"{instruction}\n\n{document}" if instruction else document


def chat_prompt(tokenizer: Any, document: str, instruction: str = DEFAULT_INSTRUCTION) -> str:
    """The prompt text (special tokens included as text) after which the model writes the summary. To show;
    the model gets `chat_prompt_ids` (encoding this text would make a special-token string in the document a
    control token)."""
    if has_chat_template(tokenizer):
        return unmark(_chat_marked(tokenizer, user_message(document, instruction)))
    return user_message(document, instruction) + PLAIN_ANSWER_CUE


def chat_prompt_ids(tokenizer: Any, document: str, instruction: str = DEFAULT_INSTRUCTION) -> list[int]:
    """The ids of `chat_prompt`: control tokens only where the template puts them, the document as text."""
    content = user_message(document, instruction)
    if has_chat_template(tokenizer):
        return chat_ids(tokenizer, [{"role": "user", "content": content}], add_generation_prompt=True)
    return plain_ids(tokenizer, content + PLAIN_ANSWER_CUE)


def _chat_marked(tokenizer: Any, content: str, summary: str | None = None) -> str:
    """The chat template's text of the request (and the answer), user text marked (tokenizers/plain.py)."""
    messages = [{"role": "user", "content": content}]
    if summary is None:
        return render_chat(tokenizer, messages, add_generation_prompt=True)
    return render_chat(tokenizer, [*messages, {"role": "assistant", "content": summary}])


def _completion_marked(tokenizer: Any, content: str, summary: str) -> str | None:
    """The assistant turn as the template renders it after the prompt, marked (None when the template does
    not render the conversation as prompt + answer)."""
    prompt, full = _chat_marked(tokenizer, content), _chat_marked(tokenizer, content, summary)
    if not full.startswith(prompt):
        return None
    # Whatever the template puts after the end-of-turn token (a newline) is not part of the answer.
    return full[len(prompt) :].rstrip()


def context_limit(model: Any) -> int | None:
    """How many positions a model with learned absolute position embeddings takes (GPT-2's `n_positions`):
    a longer input is an IndexError inside its forward. None for rotary models (Llama, Qwen2), which only
    degrade past their training length."""
    limit = getattr(getattr(model, "config", None), "n_positions", None)
    return limit if isinstance(limit, int) else None


def fitting_document(
    tokenizer: Any, document: str, instruction: str, budget: int, max_source_tokens: int | None = None
) -> str:
    """`document`, cut to `max_source_tokens` tokens, then further until its chat prompt (template and
    instruction kept whole) is at most `budget` tokens; InvalidInputError when even an empty one is not."""
    if max_source_tokens is not None:
        document = truncate_text(tokenizer, document, max_source_tokens)
    for attempt in range(4):  # the text around a cut can re-tokenize differently: cut a little more
        over = len(chat_prompt_ids(tokenizer, document, instruction)) - budget
        if over <= 0:
            return document
        kept = len(plain_ids(tokenizer, document)) - over - attempt
        if kept <= 0 and not document:
            break
        document = truncate_text(tokenizer, document, max(0, kept)) if kept > 0 else ""
    raise InvalidInputError(
        f"the model's context leaves {budget} tokens for the prompt, fewer than its chat template and "
        "instruction take: lower max_new_tokens / max_target_len, or use a model with a longer context"
    )


def chat_pair_ids(
    tokenizer: Any,
    document: str,
    summary: str,
    instruction: str = DEFAULT_INSTRUCTION,
    *,
    max_source_tokens: int | None = None,
    max_target_tokens: int | None = None,
    max_total_tokens: int | None = None,
) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids) of one example; the completion ends with eos.

    The document is cut to `max_source_tokens` tokens before it is put in the prompt (the template's own
    tokens are kept whole), and the summary to `max_target_tokens` tokens including the final eos. With
    `max_total_tokens` (the model's `context_limit`), the document is cut further so that prompt and
    completion fit.
    """
    if max_total_tokens is not None:
        for _ in range(3):
            pair = chat_pair_ids(
                tokenizer, document, summary, instruction,
                max_source_tokens=max_source_tokens, max_target_tokens=max_target_tokens,
            )  # fmt: skip
            over = len(pair[0]) + len(pair[1]) - max_total_tokens
            if over <= 0:
                return pair
            budget = len(pair[0]) - over
            document = fitting_document(tokenizer, document, instruction, budget, max_source_tokens)
        raise InvalidInputError(f"a chat example does not fit in the model's {max_total_tokens} positions")
    if max_source_tokens is not None:
        document = truncate_text(tokenizer, document, max_source_tokens)
    prompt_ids = chat_prompt_ids(tokenizer, document, instruction)
    eos = tokenizer.eos_token_id
    answer = None
    if has_chat_template(tokenizer):
        answer = _completion_marked(tokenizer, user_message(document, instruction), summary)
    completion_ids = (
        marked_ids(tokenizer, answer) if answer is not None else plain_ids(tokenizer, " " + summary.strip())
    )
    if eos is not None and (not completion_ids or completion_ids[-1] != eos):
        completion_ids.append(eos)
    if max_target_tokens is not None and len(completion_ids) > max_target_tokens:
        completion_ids = [*completion_ids[: max_target_tokens - 1], completion_ids[-1]]
    return prompt_ids, completion_ids


def collate_chat_pairs(pairs: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, Any]:
    """Right-padded prompt + completion rows: `labels` are the completion tokens only (-100 on the prompt and
    the padding), `attention_mask` 0 on the padding. The model shifts labels itself."""
    import torch

    width = max(len(p) + len(c) for p, c in pairs)
    input_ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(pairs), width), dtype=torch.long)
    labels = torch.full((len(pairs), width), -100, dtype=torch.long)
    for row, (prompt, completion) in enumerate(pairs):
        n_prompt, n_total = len(prompt), len(prompt) + len(completion)
        input_ids[row, :n_total] = torch.tensor([*prompt, *completion])
        attention[row, :n_total] = 1
        labels[row, n_prompt:n_total] = torch.tensor(completion)
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def truncate_text(tokenizer: Any, text: str, max_tokens: int) -> str:
    """`text` cut to its first `max_tokens` tokens (unchanged when it is shorter)."""
    ids = plain_ids(tokenizer, text)
    if len(ids) <= max_tokens:
        return text
    # a cut inside a character's bytes (byte-level BPE) decodes to U+FFFD, which encodes to more tokens than
    # the cut kept: drop it, so the cut text is never longer than `max_tokens`
    return str(tokenizer.decode(ids[:max_tokens], skip_special_tokens=False)).rstrip("\ufffd")


def instruction_of(model: Any) -> str:
    """The instruction a model was fine-tuned with (kept in its config), else the default. An empty one is
    kept: the model is asked with the document alone."""
    config = getattr(model, "config", None)
    value = getattr(config, "tldrlab_instruction", None)
    return value if isinstance(value, str) else DEFAULT_INSTRUCTION
