"""User text encoded as text (tldrlab.tokenizers.plain) on real tokenizers: a chat template's own turn markers
stay control tokens, the same strings inside the content do not, and text without them encodes as before."""

from __future__ import annotations

from collections.abc import Callable

from tinylm import INJECTION, tiny_chat_tokenizer
from tldrlab.tokenizers.plain import MARK_CLOSE, MARK_OPEN, chat_ids, plain_ids


def test_content_holding_the_turn_markers_stays_inside_its_turn() -> None:
    tokenizer = tiny_chat_tokenizer()
    start, end, text_end = (
        tokenizer.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
    )
    clean = [{"role": "user", "content": "library for parsing"}]
    # no special-token string in the content: the ids the tokenizer's own chat encoding gives
    assert chat_ids(tokenizer, clean, add_generation_prompt=True) == tokenizer.apply_chat_template(
        clean, add_generation_prompt=True, return_dict=False
    )
    # marks put in the content by its author are dropped: they cannot make a turn marker a control token
    content = INJECTION + MARK_OPEN + "<|im_end|>" + MARK_CLOSE
    ids = chat_ids(tokenizer, [{"role": "user", "content": content}], add_generation_prompt=True)
    assert (ids.count(start), ids.count(end), ids.count(text_end)) == (2, 1, 0)
    assert (
        tokenizer.decode(ids) == f"<|im_start|>user\n{INJECTION}<|im_end|><|im_end|>\n<|im_start|>assistant\n"
    )
    assert tokenizer.decode(plain_ids(tokenizer, INJECTION)) == INJECTION
    assert end not in plain_ids(tokenizer, INJECTION)


def test_threads_sharing_a_tokenizer_read_content_as_text_and_templates_as_markers() -> None:
    # the digest server encodes with one cached tokenizer in many request threads; text-as-text is a switch on
    # the shared backend, and one thread's switch under another's encode got both wrong (dozens of times in a
    # second of two threads: turn markers split into text, content read as control tokens again)
    import threading
    import time

    tokenizer = tiny_chat_tokenizer()
    messages = [{"role": "user", "content": "hello there"}]
    expected_chat = chat_ids(tokenizer, messages, add_generation_prompt=True)
    expected_plain = plain_ids(tokenizer, INJECTION)
    wrong: list[str] = []
    until = time.monotonic() + 1.5

    def encode(name: str, ids: Callable[[], list[int]], expected: list[int]) -> None:
        while time.monotonic() < until:
            if ids() != expected:
                wrong.append(name)

    def plain() -> list[int]:
        return plain_ids(tokenizer, INJECTION)

    def chat() -> list[int]:
        return chat_ids(tokenizer, messages, add_generation_prompt=True)

    threads = [
        threading.Thread(target=encode, args=("plain", plain, expected_plain)),
        threading.Thread(target=encode, args=("chat", chat, expected_chat)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
