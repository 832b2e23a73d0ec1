"""The chat prompt a causal LM gets for a digest: instructions, one worked example, then the thread.

The user turn carries the thread's title, optionally the thread itself folded to `thread_chars` (first posts,
posts holding the best highlights, the latest post; see digest/fold.py), and the key sentences numbered
[1]..[n]. The worked example (a short made-up thread and its answer, as a previous user/assistant exchange)
shows the exact `- text [k]` format: small chat models copy a demonstrated format far more reliably than
they follow a described one.
"""

from __future__ import annotations

from typing import Any

from tldrlab.digest.fold import fold_thread, prompt_title
from tldrlab.digest.summarizers.base import SummaryContext
from tldrlab.digest.summarizers.extractive import shorten
from tldrlab.tokenizers.plain import chat_ids

SYSTEM_PROMPTS = {
    "last": (
        "You write the TL;DR of a forum thread as short bullets. Each bullet starts with '- ', says one "
        "point in your own words, and ends with the numbers of the key sentences it is based on, like [2] or "
        "[1][3]. Use only facts from the key sentences. Do not repeat a point."
    ),
    "first": (
        "You write the TL;DR of a forum thread as short bullets. Each bullet starts with '- ', then the "
        "numbers of the key sentences it is based on, like [2] or [1][3], then says their point in a few "
        "words of your own. Use only facts from the key sentences. Do not repeat a point."
    ),
}
EXAMPLES: dict[str, tuple[str, dict[str, str]]] = {
    # v1: three key sentences, cited in order (the first answer cites two)
    "v1": (
        """Title: Can I age an IPA?
Key sentences:
[1] Hops fade quickly, so an IPA tastes best within a few weeks of bottling.
[2] I left a case in my cellar for a year and it tasted flat and sweet.
[3] Strong stouts and barleywines are the beers that improve with age.
Write at most 3 bullets.""",
        {
            "last": (
                "- IPAs are best fresh: the hop flavour fades within weeks [1][2]\n"
                "- Age strong stouts or barleywines instead [3]"
            ),
            "first": (
                "- [1][2] IPAs are best fresh: the hop flavour fades within weeks\n"
                "- [3] Age strong stouts or barleywines instead"
            ),
        },
    ),
    # v2: four key sentences, one skipped, cited out of order, one citation each (small models otherwise
    # learn from the example to count [1], [2], [3]... whatever the bullets say)
    "v2": (
        """Title: Can I age an IPA?
Key sentences:
[1] I left a case in my cellar for a year and it tasted flat and sweet.
[2] Thanks for all the answers!
[3] Hops fade quickly, so an IPA tastes best within a few weeks of bottling.
[4] Strong stouts and barleywines are the beers that improve with age.
Write at most 3 bullets.""",
        {
            "last": (
                "- IPAs are best fresh: the hop flavour fades within weeks [3]\n"
                "- A year-old IPA tastes flat and sweet [1]\n"
                "- Age strong stouts or barleywines instead [4]"
            ),
            "first": (
                "- [3] IPAs are best fresh: the hop flavour fades within weeks\n"
                "- [1] A year-old IPA tastes flat and sweet\n"
                "- [4] Age strong stouts or barleywines instead"
            ),
        },
    ),
}
"""Worked examples (a made-up thread and its answer in each citation order), shown as a previous exchange."""
SENTENCE_CHARS = 300
"""Key sentences longer than this are shortened in the prompt (prompt length is most of the CPU cost)."""


def numbered_sentences(context: SummaryContext) -> str:
    return "\n".join(
        f"[{i}] {shorten(h.text, SENTENCE_CHARS)}" for i, h in enumerate(context.highlights, start=1)
    )


def chat_messages(
    context: SummaryContext, *, thread_chars: int = 0, example: str = "v2", order: str = "first"
) -> list[dict[str, str]]:
    """System, (example user, example assistant,) user: the messages for `apply_chat_template`; `order` says
    whether citations end (`last`) or open (`first`) each bullet; `example` names the worked example
    (`none`: no example)."""
    title = f"Title: {prompt_title(context.thread)}" if context.thread.title else ""
    parts = [title] if title else []
    if thread_chars > 0:
        folded, _ = fold_thread(context.thread, context.highlights, thread_chars)
        parts.append("Thread:\n" + folded.removeprefix(f"{title}\n"))
    parts.append("Key sentences:\n" + numbered_sentences(context))
    parts.append(f"Write at most {context.max_bullets} bullets.")
    messages = [{"role": "system", "content": SYSTEM_PROMPTS[order]}]
    if example in EXAMPLES:
        user, answers = EXAMPLES[example]
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answers[order]}]
    messages.append({"role": "user", "content": "\n".join(parts)})
    return messages


def render_chat(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The prompt text, ending where the assistant's answer starts (to show: the model gets `chat_inputs`)."""
    text: str = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return text


def chat_inputs(tokenizer: Any, messages: list[dict[str, str]]) -> dict[str, Any]:
    """The prompt as `generate`'s inputs (a batch of one). The thread's text is user text: a post holding
    "<|im_end|>" must not close the user turn and open a forged assistant turn, so only the template's own
    turn markers are control tokens (tokenizers/plain.py)."""
    import torch

    input_ids = torch.tensor([chat_ids(tokenizer, messages, add_generation_prompt=True)], dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
