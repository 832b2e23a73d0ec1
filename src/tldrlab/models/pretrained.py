"""What the Hugging Face model families (t5, gpt2) share: named sizes with overrides, and offline loading."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from tldrlab.errors import NotFoundError
from tldrlab.models.resolve import resolve_model_ref


def resolve_dims(sizes: Mapping[str, Mapping[str, int]], config: Any) -> dict[str, int]:
    """The named size's dimensions (`config.size`), overridden by the values the config sets."""
    dims = dict(sizes[config.size])
    for key in dims:
        value = getattr(config, key)
        if value is not None:
            dims[key] = value
    return dims


def load_pretrained(model_class: Any, path: str, tokenizer: Any) -> Any:
    """`model_class.from_pretrained(path)`, growing the embeddings when the tokenizer has more tokens.

    `path` is any model reference (`resolve_model_ref`: a directory, `runs/<run>/model`, a run id, an
    installed name); anything else goes to transformers as given (a model already in the Hugging Face cache).
    """
    args: tuple[str, dict[str, str]] = (path, {})
    with contextlib.suppress(NotFoundError):
        args = resolve_model_ref(path).from_pretrained_args()
    model = model_class.from_pretrained(args[0], **args[1])
    if tokenizer is not None and len(tokenizer) > model.config.vocab_size:
        model.resize_token_embeddings(len(tokenizer))
    return model
