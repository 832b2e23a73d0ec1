"""A model laid out in a Hugging Face hub cache as huggingface_hub lays out a download, so that code looking
models up in the cache (HF_HUB_CACHE pointed at it) finds it offline:

    <cache>/models--<org>--<name>/blobs/<hash>                    each file's content, once
    <cache>/models--<org>--<name>/snapshots/<commit>/<file>       a relative link to its blob
    <cache>/models--<org>--<name>/refs/main                       the commit `main` stands at

    snapshot = cache_model(tmp_path / "hub", "sentence-transformers/tiny", model_dir)
    scan_cache_dir(tmp_path / "hub")   # huggingface_hub's own scan lists it
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from tinylm import tiny_chat_tokenizer

COMMIT = "0123456789abcdef0123456789abcdef01234567"
"""The snapshot's (made-up) commit hash: 40 hex digits, as the hub's are."""


def cache_model(cache: Path, repo_id: str, model_dir: Path) -> Path:
    """Every file under `model_dir` as the snapshot of model `repo_id` at `main` in the hub cache `cache`
    (blobs named by their content's sha256, as a download's LFS files are); returns the snapshot directory."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    for source in sorted(p for p in model_dir.rglob("*") if p.is_file()):
        content = source.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(content).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(content)
        link = snapshot / source.relative_to(model_dir)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


def tiny_sentence_transformer(directory: Path, *, hidden: int = 32, seed: int = 0) -> Any:
    """A 2-layer BERT of width `hidden` (seeded) on the tiny byte-level BPE, with mean pooling, saved in
    `directory` as sentence-transformers saves a model (modules.json, its pooling's config); returns it."""
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel

    tokenizer = tiny_chat_tokenizer()
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=2 * hidden,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
    )
    plain = directory.with_name(directory.name + "-transformers")
    BertModel(config).save_pretrained(str(plain))
    tokenizer.save_pretrained(str(plain))
    model = SentenceTransformer(str(plain), device="cpu")  # a plain transformers model: mean pooling
    model.save(str(directory))
    return model
