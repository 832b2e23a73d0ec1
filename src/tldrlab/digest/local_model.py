"""The digest's local language model: which one, loaded once per process, seq2seq or causal chat LM.

`load_local_model(ref, quantize)` takes any model reference (models/resolve.py: the bundled `smollm2`, an
installed model name, a run id, a Hugging Face model directory, a `.gguf` file) and loads a causal chat LM
(prompted with its chat template) or a seq2seq summarizer. `default_model_ref()` is what the default
two-stage digest uses: the `digest_model` setting (default `smollm2`), or None when that is `none` or names
the bundled model while it is not installed.

Loading is the slow part (seconds: a GGUF is de-quantized on load; `tldrlab models import` converts it once),
so loaded models are cached per (reference, quantization). `quantize="int8"` is the faster CPU path:
dynamic int8 quantization of the Linear layers of the decoder blocks (the output projection stays fp32;
docs/digest.md has the measurements).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from tldrlab.config import get_settings
from tldrlab.errors import ConfigError, InvalidInputError
from tldrlab.models.causal_lm import load_causal_lm, load_tokenizer
from tldrlab.models.resolve import BUNDLED_NAME, ResolvedModel, bundled_gguf, resolve_model_ref, store_dir

NO_MODEL = frozenset({"none", "off", "false", "0", ""})
QUANTIZATIONS = ("none", "int8")

ModelKind = Literal["seq2seq", "causal"]


@dataclass(frozen=True)
class LocalModel:
    """A loaded model, its tokenizer, and how to prompt it."""

    model: Any
    tokenizer: Any
    kind: ModelKind
    """`seq2seq` (encoder-decoder summarizer) or `causal` (a chat LM, prompted with its chat template)."""
    source: str
    """The model file or directory loaded."""


def default_model_ref() -> str | None:
    """The model of the default (two-stage) digest: the `digest_model` setting; None when there is none."""
    ref = get_settings().digest_model.strip()
    if ref.lower() in NO_MODEL:
        return None
    if ref == BUNDLED_NAME and bundled_gguf() is None and not (store_dir() / BUNDLED_NAME).is_dir():
        return None
    return ref


def model_identity(ref: str) -> str:
    """What a reference resolves to (the model file or directory): the summary cache key's part."""
    return str(resolve_model_ref(ref).path)


def load_local_model(ref: str, quantize: str = "none") -> LocalModel:
    """Load (once per process) the model a reference names; `quantize="int8"` for the faster CPU path."""
    return _load(ref, quantize)  # one cache key however the arguments are passed


@lru_cache(maxsize=2)
def _load(ref: str, quantize: str) -> LocalModel:
    if quantize not in QUANTIZATIONS:
        raise ConfigError(f"quantize must be one of {', '.join(QUANTIZATIONS)}, got {quantize!r}")
    resolved = resolve_model_ref(ref)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    kind: ModelKind = "causal"
    if resolved.kind == "directory" and is_encoder_decoder(resolved):
        model, tokenizer = load_seq2seq(resolved)
        kind = "seq2seq"
    else:
        model, tokenizer = load_causal_lm(resolved), load_tokenizer(resolved)
        if not getattr(tokenizer, "chat_template", None):
            raise InvalidInputError(
                f"{resolved.path} is a causal LM without a chat template: the digest prompts it as a chat"
            )
    model.eval()
    if quantize == "int8":
        model = quantize_int8(model)
    return LocalModel(model=model, tokenizer=tokenizer, kind=kind, source=str(resolved.path))


def is_encoder_decoder(resolved: ResolvedModel) -> bool:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(resolved.path))
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidInputError(f"{resolved.path} is not a model transformers can load: {exc}") from exc
    return bool(getattr(config, "is_encoder_decoder", False))


def load_seq2seq(resolved: ResolvedModel) -> tuple[Any, Any]:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(resolved.path))
        model = AutoModelForSeq2SeqLM.from_pretrained(str(resolved.path))
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{resolved.path} is not a seq2seq model directory: {exc}") from exc
    return model, tokenizer


def quantize_int8(model: Any) -> Any:
    """Dynamic int8 quantization of the Linear layers inside the transformer blocks (weights int8, activations
    quantized per batch at run time); the output projection (`lm_head`) stays fp32."""
    import warnings

    import torch

    head = model.get_output_embeddings()
    names = {
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not head
    }
    with (
        warnings.catch_warnings()
    ):  # torch.ao.quantization is deprecated in favour of torchao (not installed)
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, names, dtype=torch.qint8)
