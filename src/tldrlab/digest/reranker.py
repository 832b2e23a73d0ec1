"""A re-ranker for query-aware highlights: the bundled all-MiniLM-L6-v2 with a LoRA adapter (peft), fine-tuned
to score a sentence *with a little of its neighbours* against the query (cosine of the two mean-pooled
vectors, as the MiniLM makes them, so it starts from the signal the plain model has).

It re-ranks only the top `top_k` sentences of a learned linear scorer's ranking (one transformer pass per
sentence): their new score is the linear score plus `weight` times the re-ranker's score, both standardised
over those `top_k`, spread back over the same range the linear scores of those sentences had, so they stay
above the rest and MMR sees the scale it always saw. A scorer file names its re-ranker (`scorers/`): a peft
adapter directory beside the file (1.3 MB at rank 8), loaded on top of the bundled MiniLM, so using it
needs no training (`reranker_training.py` trains one). A true cross-encoder (a classification head over the
(query, sentence) pair) was tried first and did not start learning in a CPU budget (docs/digest.md).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from tldrlab.embed.sentence_transformer import minilm_path
from tldrlab.errors import InvalidInputError
from tldrlab.tokenizers.plain import text_only


@dataclass(frozen=True)
class RerankerSpec:
    """What a scorer file says about its re-ranker."""

    adapter: str
    """The adapter directory: relative to the scorer file's folder, or absolute."""
    top_k: int = 24
    """Re-rank this many of the linear scorer's best sentences."""
    weight: float = 1.0
    """Fusion: standardised linear score + weight x standardised re-ranker score."""
    max_length: int = 128
    """Tokens per encoded sentence with its context (and per query); the context after it is cut first."""
    context_words: int = 24
    """Words of the previous and the next sentence (same post) shown with each sentence."""
    modes: tuple[str, ...] = ("query",)
    """Scorer modes it applies to (it reads a query, so `query`)."""

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "modes": list(self.modes)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RerankerSpec:
        """The spec a scorer file's `reranker` entry holds (types checked, the defaults above filled in)."""
        try:
            return TypeAdapter(cls).validate_python(data)
        except ValidationError as exc:
            raise InvalidInputError(f"bad re-ranker entry in a scorer file: {exc}") from exc


def pair_text(texts: Sequence[str], groups: Sequence[str], i: int, context_words: int) -> str:
    """Sentence `i` followed by the end of the sentence before it and the start of the one after it (same
    post only): answers come in runs, and a short turn ("Yeah, exactly.") means what its neighbours say. The
    sentence itself comes first so truncation cuts the context, never the sentence's start."""
    text = texts[i]
    if context_words <= 0:
        return text
    before = texts[i - 1] if i > 0 and groups[i - 1] == groups[i] else ""
    after = texts[i + 1] if i + 1 < len(texts) and groups[i + 1] == groups[i] else ""
    before = " ".join(before.split()[-context_words:])
    after = " ".join(after.split()[:context_words])
    return f"{text} (before: {before}) (after: {after})"


SCALE = 20.0
"""Scores are cosine x SCALE (a softmax temperature of 0.05, usual for contrastive MiniLM training)."""


def lora_config(r: int = 8, alpha: int = 16, dropout: float = 0.1) -> Any:
    """The adapter's shape: LoRA on every attention and feed-forward projection of the encoder."""
    from peft import LoraConfig, TaskType

    return LoraConfig(
        task_type=TaskType.FEATURE_EXTRACTION,
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=[
            "query",
            "key",
            "value",
            "attention.output.dense",
            "intermediate.dense",
            "output.dense",
        ],
    )


def base_model() -> tuple[Any, Any]:
    """(tokenizer, BertModel) of the bundled MiniLM, offline. The tokenizer reads every text as text (queries
    and posts are user text: "[SEP]" in one is characters), in scoring and in training alike."""
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path()
    return text_only(AutoTokenizer.from_pretrained(path)), AutoModel.from_pretrained(path)


def mean_pooled(model: Any, batch: Any) -> Any:
    """Unit-length mean of the token vectors (padding excluded): how all-MiniLM-L6-v2 makes its vectors."""
    import torch

    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


@dataclass
class RerankEncoder:
    """A loaded (tokenizer, MiniLM with its LoRA adapter) pair in eval mode."""

    tokenizer: Any
    model: Any

    def encode(self, texts: Sequence[str], max_length: int, batch_size: int = 32) -> np.ndarray:
        """Unit vectors of `texts` (no gradients; batches of similar lengths)."""
        import torch

        out = np.zeros((len(texts), int(self.model.config.hidden_size)), dtype=np.float32)
        order = np.argsort([len(t) for t in texts])
        with torch.inference_mode():
            for at in range(0, len(order), batch_size):
                chunk = order[at : at + batch_size]
                batch = self.tokenizer(
                    [texts[i] for i in chunk],
                    truncation=True,
                    max_length=max_length,
                    padding=True,
                    return_tensors="pt",
                )
                out[chunk] = mean_pooled(self.model, batch).float().numpy()
        return out

    def scores(self, query: str, passages: Sequence[str], max_length: int) -> np.ndarray:
        """SCALE x cosine of the query to each passage."""
        vectors = self.encode([query, *passages], max_length)
        return np.asarray(SCALE * (vectors[1:] @ vectors[0]), dtype=np.float64)


def load_encoder(adapter_dir: Path | str) -> RerankEncoder:
    """The bundled MiniLM with the adapter in `adapter_dir` (peft format) on top, in eval mode."""
    from peft import PeftModel

    folder = Path(adapter_dir)
    if not (folder / "adapter_config.json").is_file():
        raise InvalidInputError(f"no re-ranker adapter in {folder} (adapter_config.json missing)")
    tokenizer, model = base_model()
    model = PeftModel.from_pretrained(model, str(folder))
    model.eval()
    return RerankEncoder(tokenizer, model)


@functools.cache
def cached_encoder(adapter_dir: str) -> RerankEncoder:
    """One loaded re-ranker encoder per adapter directory and process."""
    return load_encoder(adapter_dir)


def standardised(x: np.ndarray) -> np.ndarray:
    scale = float(x.std())
    return (x - x.mean()) / scale if scale > 1e-12 else np.zeros_like(x)


def fuse(linear: np.ndarray, scores: np.ndarray, weight: float) -> np.ndarray:
    """z(linear) + weight * z(scores) over the re-ranked sentences."""
    return standardised(linear) + weight * standardised(scores)


def top_candidates(relevance: np.ndarray, top_k: int, eligible: np.ndarray | None = None) -> np.ndarray:
    """Indices of the `top_k` highest relevance (among `eligible`), best first."""
    scores = relevance if eligible is None else np.where(eligible, relevance, -np.inf)
    order = np.argsort(-scores, kind="stable")[: min(top_k, int(np.isfinite(scores).sum()))]
    return np.asarray(order, dtype=int)


def respread(relevance: np.ndarray, top: np.ndarray, fused: np.ndarray) -> np.ndarray:
    """`relevance` with the `top` sentences re-ordered by `fused`, spread over the range their linear scores
    had (so they stay above the others and the scale MMR uses does not change)."""
    out = relevance.astype(np.float64).copy()
    if len(top) < 2:
        return out
    low, high = float(relevance[top].min()), float(relevance[top].max())
    span = float(fused.max() - fused.min())
    if span <= 1e-12 or high - low <= 1e-12:
        return out
    out[top] = low + (fused - fused.min()) / span * (high - low)
    return out


def rerank(
    relevance: np.ndarray,
    query: str,
    texts: Sequence[str],
    groups: Sequence[str],
    spec: RerankerSpec,
    encoder: RerankEncoder,
    eligible: np.ndarray | None = None,
) -> np.ndarray:
    """`relevance` with its top `spec.top_k` (among `eligible`) re-ordered by the fused score."""
    top = top_candidates(relevance, spec.top_k, eligible)
    if len(top) < 2:
        return np.asarray(relevance, dtype=np.float64)
    passages = [pair_text(texts, groups, int(i), spec.context_words) for i in top]
    scores = encoder.scores(query, passages, spec.max_length)
    return respread(relevance, top, fuse(relevance[top], scores, spec.weight))
