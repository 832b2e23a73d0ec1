"""What the Hugging Face model families (t5, gpt2) share: named sizes with overrides, and offline loading."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from tldrlab.errors import InvalidInputError, NotFoundError
from tldrlab.models.architecture import model_architecture
from tldrlab.models.resolve import ResolvedModel, resolve_model_ref
from tldrlab.tokenizers.load import load_tokenizer


def resolve_dims(sizes: Mapping[str, Mapping[str, int]], config: Any) -> dict[str, int]:
    """The named size's dimensions (`config.size`), overridden by the values the config sets."""
    dims = dict(sizes[config.size])
    for key in dims:
        value = getattr(config, key)
        if value is not None:
            dims[key] = value
    return dims


def is_pretrained(config: Any) -> bool:
    """Whether a t5 / gpt2 config loads a checkpoint (`from_pretrained`) rather than building a new model."""
    return bool(config.from_pretrained)


def pretrained_tokenizer(config: Any) -> Any:
    """The tokenizer saved with the checkpoint a t5 / gpt2 config loads (`from_pretrained`): its token ids are
    the ones the checkpoint's embeddings were trained on, which a tokenizer trained anew would not share."""
    directory = resolve_model_ref(str(config.from_pretrained)).directory
    try:
        return load_tokenizer(directory)
    except NotFoundError:
        raise InvalidInputError(
            f"{directory} (model_settings.from_pretrained) holds no tokenizer to go with its weights: give "
            "the one it was trained with (--tokenizer DIR)"
        ) from None


def check_pretrained_family(config: Any, model_type: str) -> None:
    """A t5 / gpt2 config's `from_pretrained` holds a `model_type` model where it names one here (a directory,
    a run, an installed name); InvalidInputError otherwise. Run before a run is created (`ModelSpec.check`:
    the command line and the API's submit), so a char_lstm run given to t5 is refused there, not left behind
    as a failed run; a name found nowhere here goes to transformers when the run loads it, as it did."""
    if not config.from_pretrained:
        return
    with contextlib.suppress(NotFoundError):
        _check_family(resolve_model_ref(str(config.from_pretrained)), model_type)


def _check_family(resolved: ResolvedModel, expected: str) -> None:
    """InvalidInputError when a directory's config.json names another model type than `expected` (a
    char_lstm run given to t5's `from_pretrained`): transformers builds such a model with fresh weights, or
    fails inside its first step."""
    found = model_architecture(resolved) if resolved.kind == "directory" else None
    if found is not None and found != expected:
        raise InvalidInputError(
            f"{resolved.path} holds a {found} model, not a {expected} model: from_pretrained loads a "
            f"{expected} checkpoint (a {expected} run's model or a transformers {expected} directory)"
        )


def load_pretrained(model_class: Any, path: str, tokenizer: Any) -> Any:
    """`model_class.from_pretrained(path)`, growing the embeddings when the tokenizer has more tokens.

    `path` is any model reference (`resolve_model_ref`: a directory, `runs/<run>/model`, a run id, an
    installed name) holding a model of `model_class`'s type; anything else goes to transformers as given (a
    model already in the Hugging Face cache).
    """
    args: tuple[str, dict[str, str]] = (path, {})
    with contextlib.suppress(NotFoundError):
        resolved = resolve_model_ref(path)
        _check_family(resolved, model_class.config_class.model_type)
        args = resolved.from_pretrained_args()
    model = model_class.from_pretrained(args[0], **args[1])
    if tokenizer is not None and len(tokenizer) > model.config.vocab_size:
        model.resize_token_embeddings(len(tokenizer))
    return model
