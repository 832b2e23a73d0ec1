"""User text encoded as text: a special token's string inside it is characters, never the control token.

A forum post, a document or a reference summary may hold "<|im_end|>", "<|endoftext|>" or "</s>" (a post
about tokenizers, a scraped page). Hugging Face tokenizers match special-token strings anywhere in what they
encode, so such text became the control token itself: a post could close the user turn of the digest's
prompt and forge an assistant turn, a training document carried an eos in its middle (the LM learned to stop
there), a prompt was cut short. Every place that encodes text it did not write goes through here:

    plain(tokenizer, texts, **kwargs)          # tokenizer(texts, **kwargs), special-token strings as text
    plain_ids(tokenizer, text)                 # one text's ids, no special tokens added
    plain_encodings(backend, texts)            # the same with a `tokenizers.Tokenizer` (tldrlab's own)
    chat_ids(tokenizer, messages, add_generation_prompt=True)   # the template's own tokens stay special

A chat template renders to a string with the messages inside it: `render_chat` marks each special-token
string of the messages' content between two noncharacters before rendering, and `marked_ids` encodes the
marked strings as text and the rest (the template's own turn markers) as usual. Text without special-token
strings encodes exactly as before.

Not covered: a tokenizer whose model vocabulary itself holds a special token's string as a piece reachable
from text (SentencePiece unigram models keep <s> and </s> as pieces: tldrlab's sentencepiece tokenizers, and
Hugging Face's conversions of T5-style ones) still makes that text the control token; `split_special_tokens`
only stops the added-token match in front of the model.
"""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

SWITCH = threading.RLock()
"""Held around every encode here. Text-as-text is a switch on the shared backend tokenizer
(`encode_special_tokens`, what transformers' `split_special_tokens` flips): one thread's switch left on
under another's encode of a chat template split its turn markers into text, and one thread switching it off
under another's plain encode made content control tokens again (the digest server encodes with one cached
tokenizer in many request threads; two threads at it for one second got both wrong dozens of times)."""

MARK_OPEN, MARK_CLOSE = "\ufdd0", "\ufdd1"
"""Around a special-token string of user content in a rendered chat: Unicode noncharacters, reserved for a
program's own use, so no text means anything by them (any in the content are dropped, so none is forged)."""


def plain(tokenizer: Any, texts: str | list[str], **kwargs: Any) -> Any:
    """`tokenizer(texts, **kwargs)` with every special-token string in the texts encoded as text (the
    tokenizer still adds its own special tokens where `add_special_tokens` asks, e.g. T5's final eos)."""
    backend: Any = getattr(tokenizer, "backend_tokenizer", None)  # fast tokenizers: a `tokenizers.Tokenizer`
    with SWITCH:
        was = getattr(backend, "encode_special_tokens", None)
        try:
            return tokenizer(texts, split_special_tokens=True, **kwargs)
        finally:
            if was is not None:  # transformers leaves the backend's switch on: put back for direct users
                backend.encode_special_tokens = was


def plain_ids(tokenizer: Any, text: str) -> list[int]:
    """The ids of `text` as text, with no special token added."""
    return list(plain(tokenizer, text, add_special_tokens=False)["input_ids"])


def plain_encodings(backend: Tokenizer, texts: list[str]) -> list[Encoding]:
    """`backend.encode_batch(texts)` of a `tokenizers.Tokenizer` (what tldrlab's bpe, sentencepiece and char
    tokenizers are before transformers wraps them), special-token strings as text, no special token added."""
    with SWITCH:
        was = backend.encode_special_tokens
        backend.encode_special_tokens = True  # the library's switch behind transformers' split_special_tokens
        try:
            return backend.encode_batch(texts, add_special_tokens=False)
        finally:
            backend.encode_special_tokens = was


def _special_strings(tokenizer: Any) -> list[str]:
    """The strings a tokenizer encodes as special tokens, longest first (a token before those inside it)."""
    added = getattr(tokenizer, "added_tokens_decoder", {}).values()
    strings = {str(t.content) for t in added if getattr(t, "special", False)}
    strings |= {str(t) for t in getattr(tokenizer, "all_special_tokens", [])}
    return sorted((s for s in strings if s), key=len, reverse=True)


def mark_specials(tokenizer: Any, text: str) -> str:
    """`text` with each special-token string in it between MARK_OPEN and MARK_CLOSE (and any marks it held
    dropped)."""
    text = text.replace(MARK_OPEN, "").replace(MARK_CLOSE, "")
    strings = _special_strings(tokenizer)
    if not strings:
        return text
    pattern = "|".join(map(re.escape, strings))
    return re.sub(pattern, lambda m: MARK_OPEN + m.group(0) + MARK_CLOSE, text)


def unmark(text: str) -> str:
    """A marked string as the text it stands for."""
    return text.replace(MARK_OPEN, "").replace(MARK_CLOSE, "")


def render_chat(tokenizer: Any, messages: list[dict[str, str]], **template_kwargs: Any) -> str:
    """The chat template's text for `messages`, their content's special-token strings marked: encode it with
    `marked_ids` (`unmark` gives the plain rendering)."""
    marked = [{**m, "content": mark_specials(tokenizer, m["content"])} for m in messages]
    return str(tokenizer.apply_chat_template(marked, tokenize=False, **template_kwargs))


def chat_ids(tokenizer: Any, messages: list[dict[str, str]], **template_kwargs: Any) -> list[int]:
    """The ids of `messages` in the tokenizer's chat template: special tokens only where the template writes
    them, the content as text."""
    return marked_ids(tokenizer, render_chat(tokenizer, messages, **template_kwargs))


_MARKED = re.compile(f"{MARK_OPEN}([^{MARK_OPEN}{MARK_CLOSE}]*){MARK_CLOSE}|[{MARK_OPEN}{MARK_CLOSE}]")


def marked_ids(tokenizer: Any, text: str) -> list[int]:
    """The ids of a marked string: marked pieces as text, the rest as the tokenizer encodes it (special
    tokens included). A text without marks encodes as `tokenizer.encode` does; a lone mark (a template that
    cut content inside one) is dropped."""
    with SWITCH:  # the template's own special tokens are read with the switch off
        if MARK_OPEN not in text and MARK_CLOSE not in text:
            return list(tokenizer.encode(text, add_special_tokens=False))
        # re.split with a group: [text, marked, text, marked, ..., text]; a lone mark's group is None
        pieces = _MARKED.split(text)
        ids = list(tokenizer.encode(pieces[0], add_special_tokens=False)) if pieces[0] else []
        newline = list(tokenizer.encode("\n", add_special_tokens=False))
        for i, piece in enumerate(pieces[1:], start=1):
            if piece:  # odd pieces are the marked strings
                ids += _piece_ids(tokenizer, piece, as_text=i % 2 == 1, newline=newline)
        return ids


def _piece_ids(tokenizer: Any, piece: str, *, as_text: bool, newline: list[int]) -> list[int]:
    """A piece from inside a rendered chat. Encoded after a newline, then the newline's ids removed:
    SentencePiece would otherwise begin it with the word boundary it puts at the start of a string."""

    def encode(text: str) -> list[int]:
        if as_text:
            return plain_ids(tokenizer, text)
        return list(tokenizer.encode(text, add_special_tokens=False))

    ids = encode("\n" + piece)
    return ids[len(newline) :] if ids[: len(newline)] == newline else encode(piece)
