"""Sentence embedders by registry: texts in, unit-normalised float32 vectors out.

- `minilm` (default): all-MiniLM-L6-v2 through sentence-transformers / PyTorch, offline.
- `minilm-onnx`: the same model exported to ONNX, attention projections int8, run by ONNX Runtime (faster on
  CPU, cosine >= 0.99 to `minilm`); `minilm-onnx-int8`: every MatMul int8 (fastest, cosine drifts lower).
- any other name: a sentence-transformers model directory (offline) or hub id, organisation/name (needs the
  hub, or an earlier download); a bare name (`all-MiniLM-L6-v2`) only where the Hugging Face cache holds
  it (`cached_hub_model`), else it is refused at once.

`get_embedder(name)` caches one instance per name, so the service and workers load each model once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from tldrlab.config import expand_user, get_settings
from tldrlab.embed.base import Embedder
from tldrlab.errors import ConfigError

EmbedderBuilder = Callable[[], Embedder]


def _minilm() -> Embedder:
    # lazy: that submodule needs this package initialised (a cycle at the top)
    from tldrlab.embed.sentence_transformer import build_minilm

    return build_minilm()


def _minilm_onnx() -> Embedder:
    # lazy: that submodule needs this package initialised (a cycle at the top)
    from tldrlab.embed.onnx import build_minilm_onnx

    return build_minilm_onnx()


def _minilm_onnx_int8() -> Embedder:
    # lazy: that submodule needs this package initialised (a cycle at the top)
    from tldrlab.embed.onnx import build_minilm_onnx_int8

    return build_minilm_onnx_int8()


EMBEDDERS: dict[str, EmbedderBuilder] = {
    "minilm": _minilm,
    "minilm-onnx": _minilm_onnx,
    "minilm-onnx-int8": _minilm_onnx_int8,
}
"""Registered embedder name -> builder. Names not listed are treated as sentence-transformers paths/names."""

VECTOR_SPACES: dict[str, str] = {
    "minilm": "all-MiniLM-L6-v2",
    "minilm-onnx": "all-MiniLM-L6-v2",
    "minilm-onnx-int8": "all-MiniLM-L6-v2",
}
"""Embedders whose vectors are interchangeable (same model, different runtime) share a vector space name."""

_cache: dict[str, Embedder] = {}
_lock = threading.Lock()


def vector_space(name: str) -> str:
    """The space an embedder's vectors live in; stores refuse mixing vectors from different spaces."""
    return VECTOR_SPACES.get(name, name)


def get_embedder(name: str | None = None) -> Embedder:
    """The embedder called `name` (default: settings.embedder, normally `minilm`), built once per process."""
    if name is None:
        name = get_settings().embedder
    name = name.strip()
    if not name:
        raise ConfigError("the embedder name is empty: use 'minilm', 'minilm-onnx' or a model path")
    with _lock:
        if name not in _cache:
            builder = EMBEDDERS.get(name)
            if builder is not None:
                _cache[name] = builder()
            else:
                # lazy: that submodule needs this package initialised (a cycle at the top)
                from tldrlab.embed.sentence_transformer import SentenceTransformerEmbedder

                _cache[name] = SentenceTransformerEmbedder(name, name)
        return _cache[name]


HUB_ORGANIZATION = "sentence-transformers"
"""Where sentence-transformers looks a bare model name up on the hub (`all-MiniLM-L6-v2` is
`sentence-transformers/all-MiniLM-L6-v2`), and so where the Hugging Face cache keeps what it downloaded."""

MODEL_FILES = ("modules.json", "config.json")
"""A file every sentence-transformers model holds (`modules.json`), or a plain transformers one
(`config.json`, which sentence-transformers loads with mean pooling): how a cached snapshot is recognised."""


def cached_hub_model(name: str) -> Path | None:
    """The snapshot directory of hub model `name` in the local Hugging Face cache (HF_HUB_CACHE, or HF_HOME's
    `hub`), or None; never downloads, nor imports torch. A bare name is looked for where sentence-transformers
    fetches it from, `sentence-transformers/<name>`, then as a hub model of its own name (`gpt2`).

    huggingface_hub's own lookup (`try_to_load_from_cache`: the `main` ref's snapshot) finds it, so the
    cache's layout and the environment variables that move it are huggingface_hub's to know."""
    from huggingface_hub import try_to_load_from_cache

    for repo_id in [name] if "/" in name else [f"{HUB_ORGANIZATION}/{name}", name]:
        for filename in MODEL_FILES:
            try:
                found = try_to_load_from_cache(repo_id, filename)
            except ValueError:  # HFValidationError: no valid repo id (spaces, `..`), so nothing cached
                return None
            if isinstance(found, str):
                return Path(found).parent
    return None


DEFAULT_EMBEDDER_SETTING = "the embedder setting (TLDRLAB_EMBEDDER)"
"""How a refusal names the default embedder, used where a config names none."""


def check_embedder_name(name: str | None, option: str = "--embedder") -> None:
    """Refuse, without loading anything, an embedder `name` that `get_embedder` could never build: neither
    registered, nor an existing local model directory, nor a hub id (organisation/name), nor a bare name
    the Hugging Face cache holds (`cached_hub_model`: `all-MiniLM-L6-v2` downloaded before). Kinds `ingest`,
    `lvm_ingest`, `elm_prepare`, `elm_compare_lm`, `highlight_scorer_train` and `highlight_reranker_train`
    call it before a run exists: `ingest --embedder nosuch` was refused only by the run's first embedding,
    and the run stayed behind failed. None is the `embedder` setting, resolved as `get_embedder` resolves
    it and checked as such (`TLDRLAB_EMBEDDER=nosuch` failed the run too)."""
    if name is None:
        name, option = get_settings().embedder, DEFAULT_EMBEDDER_SETTING
    name = name.strip()
    known = ", ".join(EMBEDDERS)
    if not name:
        raise ConfigError(f"{option} is empty: give one of {known}, or a model directory")
    if name in EMBEDDERS or expand_user(name).exists():
        return
    if name.count("/") == 1 and not name.startswith((".", "/", "~")):
        return  # a hub id: whether it can be fetched (or was downloaded before) is the embedder's to say
    if "/" not in name and cached_hub_model(name) is not None:
        return  # downloaded before: loaded from the cache, offline
    raise ConfigError(
        f"{option}: {name!r} is neither a known embedder ({known}) nor a model directory here, nor in the "
        f"Hugging Face cache (as {HUB_ORGANIZATION}/{name}); give one of those, or a hub id "
        "(organisation/name)"
    )


def clear_embedder_cache() -> None:
    """Forget cached instances (tests; freeing memory)."""
    with _lock:
        _cache.clear()


__all__ = [
    "EMBEDDERS",
    "VECTOR_SPACES",
    "Embedder",
    "cached_hub_model",
    "check_embedder_name",
    "clear_embedder_cache",
    "get_embedder",
    "vector_space",
]
