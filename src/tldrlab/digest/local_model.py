"""The digest's local language model: which one, loaded once per process, seq2seq or causal chat LM.

`load_local_model(ref, precision)` takes any model reference (models/resolve.py: the bundled `smollm2`, an
installed model name, a run id, a Hugging Face model directory, a `.gguf` file) and loads a causal chat LM
(prompted with its chat template) or a seq2seq summarizer. `default_model_ref()` is what the default
two-stage digest uses: the `digest_model` setting (default `smollm2`), or None when that is `none` or names
the bundled model while it is not installed.

Loading is the slow part (seconds: a GGUF is de-quantized on load; `tldrlab models import` converts it once),
so loaded models are cached per (what the reference resolves to, its modification time, precision): an alias
promoted to another run, or a model directory written again, loads the new weights. Faster CPU paths:
`precision="bf16"` (weights in bfloat16) and `precision="int8"` (dynamic int8 quantization of the decoder
blocks' Linear layers; the output projection stays fp32); docs/digest.md has their speed and quality.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from tldrlab.choices import unknown_choice
from tldrlab.config import get_settings
from tldrlab.digest.cited_list import token_classes
from tldrlab.errors import CheckpointError, ConfigError, InvalidInputError
from tldrlab.models.causal_lm import load_causal_lm, load_tokenizer
from tldrlab.models.io import MODEL_MANIFEST, model_name_in
from tldrlab.models.registry import MODELS, model_task
from tldrlab.models.resolve import BUNDLED_NAME, ResolvedModel, bundled_gguf, resolve_model_ref, store_dir

log = logging.getLogger("tldrlab.digest")

NO_MODEL = frozenset({"none", "off", "false", "0", ""})
PRECISIONS = ("fp32", "bf16", "int8")

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


def warm_default_model() -> threading.Thread | None:
    """Load the default digest model in a background thread (servers call this at start); failures are
    logged, not raised: the digest falls back to extractive and says why."""
    ref = default_model_ref()
    if ref is None:
        return None

    def load() -> None:
        try:
            loaded = load_local_model(ref)
            if loaded.kind == "causal":  # the decoding grammar's vocabulary classes, computed once
                token_classes(loaded.tokenizer, eos_ids(loaded))
        except Exception:  # the request that needs it will report the error to its reader
            log.warning("could not preload the digest model %r", ref, exc_info=True)

    thread = threading.Thread(target=load, name="tldrlab-digest-model", daemon=True)
    thread.start()
    return thread


def eos_ids(loaded: LocalModel) -> list[int]:
    """Token ids that end the model's answer (the chat template's end-of-turn and the tokenizer's EOS)."""
    configured = getattr(loaded.model.generation_config, "eos_token_id", None)
    ids = configured if isinstance(configured, list) else [configured]
    tokenizer_eos = getattr(loaded.tokenizer, "eos_token_id", None)
    return [i for i in dict.fromkeys([*ids, tokenizer_eos]) if i is not None]


def model_identity(ref: str) -> str:
    """What a reference resolves to (the model file or directory): the summary cache key's part."""
    return str(resolve_model_ref(ref).path)


def load_local_model(ref: str, precision: str = "fp32") -> LocalModel:
    """Load (once per process) the model a reference names, in `precision` (fp32, bf16 or int8)."""
    # The cache is keyed by the resolved file, not the reference: an alias (or a model name) may point at
    # other weights tomorrow, and a stale hit would serve the old model under the new name.
    # lazy: the model store's export code imports torch, which a server without a digest model (it warms
    # the default one at start) never needs: ~2 CPU-s at every `tldrlab serve`
    from tldrlab.models.store import install_bundled

    resolved = install_bundled(resolve_model_ref(ref))  # the bundled GGUF: converted once, then fast loads
    # two references to one file (an alias and its run id, the bundled name and its path) share one load
    same_file = ResolvedModel(resolved.path, resolved.kind, source="", ref="")
    return _load(same_file, resolved.path.stat().st_mtime_ns, precision)


@lru_cache(maxsize=2)
def _load(resolved: ResolvedModel, mtime_ns: int, precision: str) -> LocalModel:
    if precision not in PRECISIONS:
        raise ConfigError(unknown_choice("precision", precision, PRECISIONS))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    kind: ModelKind = "causal"
    if resolved.kind == "directory":
        refuse_plain_lm(resolved)
    if resolved.kind == "directory" and is_encoder_decoder(resolved):
        model, tokenizer = load_seq2seq(resolved)
        kind = "seq2seq"
    else:
        model, tokenizer = load_causal_lm(resolved), load_tokenizer(resolved)
        if not getattr(tokenizer, "chat_template", None):
            raise InvalidInputError(
                f"{resolved.path} is a causal LM without a chat template: summaries prompt a causal LM as a "
                "chat (use a chat model such as smollm2, a chat fine-tune, or a seq2seq model)"
            )
    model.eval()
    if precision == "int8":
        model = quantize_int8(model)
    elif precision == "bf16":
        model = model.to(torch_bfloat16())
    return LocalModel(model=model, tokenizer=tokenizer, kind=kind, source=str(resolved.path))


def refuse_plain_lm(resolved: ResolvedModel) -> None:
    """InvalidInputError, before loading anything, for a model directory tldrlab trained as a plain language
    model (gpt2, char_lstm: no chat template, no encoder). A char_lstm is no transformers model at all, so
    loading it answered transformers' advice to upgrade itself. (A directory transformers wrote, without
    tldrlab's manifest, is left to the checks below: its tokenizer may have a chat template.)"""
    if not (resolved.path / MODEL_MANIFEST).is_file():
        return
    try:
        family = model_name_in(resolved.path)
    except (InvalidInputError, CheckpointError, KeyError, TypeError, ValueError, OSError):
        return  # a manifest that does not read: loading reports it
    if family in MODELS and model_task(family) == "causal_lm":
        raise InvalidInputError(
            f"{resolved.path} is a {family} language model without a chat template: summaries prompt a "
            "causal LM as a chat (use a chat model such as smollm2, a chat fine-tune, or a seq2seq model)"
        )


def is_encoder_decoder(resolved: ResolvedModel) -> bool:
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(resolved.path))
    except (OSError, ValueError, KeyError) as exc:
        # transformers' messages run to paragraphs of advice; the first line says what is wrong
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInputError(f"{resolved.path} is not a model transformers can load: {reason}") from exc
    return bool(getattr(config, "is_encoder_decoder", False))


def load_seq2seq(resolved: ResolvedModel) -> tuple[Any, Any]:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(resolved.path))
        model = AutoModelForSeq2SeqLM.from_pretrained(str(resolved.path))
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{resolved.path} is not a seq2seq model directory: {exc}") from exc
    return model, tokenizer


def torch_bfloat16() -> Any:
    import torch

    return torch.bfloat16


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
