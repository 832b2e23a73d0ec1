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
    text_only(tokenizer)                       # for good: a tokenizer given only user text (an embedder's)

A chat template renders to a string with the messages inside it: `render_chat` marks each special-token
string of the messages' content between two noncharacters before rendering, and `marked_ids` encodes the
marked strings as text and the rest (the template's own turn markers) as usual. Text without special-token
strings encodes exactly as before.

`split_special_tokens` only stops the added-token match in front of the model. A model whose vocabulary
holds a special token's string as a piece it reaches from text (a SentencePiece unigram model keeps <pad>,
<unk>, <s> and </s> as pieces: tldrlab's sentencepiece tokenizers) still made that text the control token, so
here such a string is also cut after its first character before the model sees it (`_cut_reachable`): the
model reads "<" and "/s>", as the SentencePiece library, which never makes a control piece of text, does.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

T = TypeVar("T")

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
        if backend is None:  # a slow (Python) tokenizer: no model to reach a special piece past the switch
            return tokenizer(texts, split_special_tokens=True, **kwargs)
        was = backend.encode_special_tokens
        try:
            backend.encode_special_tokens = True
            with _cut_reachable(backend):
                return tokenizer(texts, split_special_tokens=True, **kwargs)
        finally:  # transformers leaves the backend's switch on: put back for direct users
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
            with _cut_reachable(backend):
                return backend.encode_batch(texts, add_special_tokens=False)
        finally:
            backend.encode_special_tokens = was


def text_only(tokenizer: T) -> T:
    """`tokenizer` made to encode every text as text from now on, while still adding its own special tokens
    around it where asked (BERT's [CLS] ... [SEP]): for a tokenizer that only ever encodes text the code did
    not write and that nothing else shares, such as an embedder's or the re-ranker's, whose every call
    (sentence-transformers' own included) then reads a post's "[SEP]" as characters. A transformers tokenizer
    or a `tokenizers.Tokenizer`; returned. Text without special-token strings encodes as before."""
    backend: Any = tokenizer if hasattr(tokenizer, "encode_special_tokens") else None
    if backend is None:
        backend = getattr(tokenizer, "backend_tokenizer", None)
    with SWITCH:
        if hasattr(tokenizer, "split_special_tokens"):
            # transformers sets the backend's switch from this on every call that does not say otherwise
            tokenizer.split_special_tokens = True  # type: ignore[attr-defined]
        if backend is not None:
            backend.encode_special_tokens = True
            cut = _cutter(backend)
            if cut is not None:  # kept: nothing reads this tokenizer's special strings as control tokens
                backend.pre_tokenizer = cut if backend.pre_tokenizer is None else _sequence(cut, backend)
                _CUTTERS[backend] = (backend.get_vocab_size(with_added_tokens=True), None)  # none reached now
    return tokenizer


def _special_strings(tokenizer: Any) -> list[str]:
    """The strings a tokenizer encodes as special tokens, longest first (a token before those inside it)."""
    added = getattr(tokenizer, "added_tokens_decoder", {}).values()
    strings = {str(t.content) for t in added if getattr(t, "special", False)}
    strings |= {str(t) for t in getattr(tokenizer, "all_special_tokens", [])}
    return sorted((s for s in strings if s), key=len, reverse=True)


def _backend_special_strings(backend: Tokenizer) -> list[str]:
    """`_special_strings` of a `tokenizers.Tokenizer`: its added tokens marked special."""
    added = backend.get_added_tokens_decoder().values()
    return sorted({str(t.content) for t in added if t.special and t.content}, key=len, reverse=True)


def _reachable(backend: Tokenizer, strings: Iterable[str]) -> list[str]:
    """The special-token strings `backend`'s model itself makes into their token when they are encoded as
    text (the backend's switch on): a SentencePiece unigram model keeps <s> and </s> as pieces of its
    vocabulary; WordPiece (BERT splits "[SEP]" at its brackets first) and byte-level BPE reach none. A string
    of one character cannot be cut, and is left as it is."""
    found = []
    for string in strings:
        token = backend.token_to_id(string)
        ids = backend.encode(string, add_special_tokens=False).ids if len(string) > 1 else []
        if token is not None and token in ids:
            found.append(string)
    return found


def _cut(strings: list[str]) -> Any:
    """A pre-tokenizer isolating the first character of each occurrence of `strings`, so that the model,
    which never segments across two pre-tokens, cannot make the piece; None when there is nothing to cut.
    A text without those strings is one piece as before, its encoding unchanged."""
    if not strings:
        return None
    from tokenizers import Regex, pre_tokenizers

    # Python's escape only escapes regex syntax (never "<" or ">", which Oniguruma's GNU mode would read)
    pattern = "|".join(f"{re.escape(s[0])}(?={re.escape(s[1:])})" for s in strings)
    return pre_tokenizers.Split(Regex(pattern), "isolated")


def _sequence(cut: Any, backend: Tokenizer) -> Any:
    from tokenizers import pre_tokenizers

    return pre_tokenizers.Sequence([cut, backend.pre_tokenizer])


_CUTTERS: weakref.WeakKeyDictionary[Any, tuple[int, Any]] = weakref.WeakKeyDictionary()
"""Backend tokenizer -> (its vocabulary size with added tokens then, its `_cut` of the special-token strings
its model reaches, or None): found once per tokenizer, as finding them encodes each special token (a
Llama 3 tokenizer has 256), and again when tokens were added."""


def _cutter(backend: Tokenizer) -> Any:
    """The `_cut` of the special-token strings `backend`'s model reaches (under SWITCH, the switch on)."""
    size = backend.get_vocab_size(with_added_tokens=True)
    known = _CUTTERS.get(backend)
    if known is None or known[0] != size:
        known = (size, _cut(_reachable(backend, _backend_special_strings(backend))))
        _CUTTERS[backend] = known
    return known[1]


@contextmanager
def _cut_reachable(backend: Tokenizer) -> Iterator[None]:
    """While inside (under SWITCH, the backend's switch on): the special-token strings `backend`'s model
    reaches are cut (`_cut`) before the model sees them. The backend's pre-tokenizer is put back after."""
    cut = _cutter(backend)
    if cut is None:
        yield
        return
    was = backend.pre_tokenizer
    backend.pre_tokenizer = cut if was is None else _sequence(cut, backend)
    try:
        yield
    finally:
        backend.pre_tokenizer = was


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
