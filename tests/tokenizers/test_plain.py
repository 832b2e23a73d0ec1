"""User text encoded as text (tldrlab.tokenizers.plain) on real tokenizers: a chat template's own turn markers
stay control tokens, the same strings inside the content do not, and text without them encodes as before."""

from __future__ import annotations

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
