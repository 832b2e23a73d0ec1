"""Highlight scorers by name: the hand-set `heuristic` (in `highlights.py`) and learned linear scorers shipped
as small versioned JSON files beside this module, so using one needs no training.

A scorer file holds, per mode (`document`, `forum`, `forum_votes`, `query`; see `features.scorer_mode`), a
linear model over the features it names, any subset of `features.FEATURES` (so an older file keeps working
when features are added; a listwise logistic regression, `scorer_training.fit_linear`): the
standardisation (mean, scale), the weights and the bias, plus its version, the feature list it was trained
on, the sha256 of its training data and how it was trained. A mode missing from a file is ranked by the
heuristic.

`DEFAULT_SCORERS` is what `HighlightOptions(scorer="auto")` uses per mode: the learned scorer chosen on train
splits, and only where it beat the heuristic on dev data with the paired-bootstrap interval above zero
(docs/digest.md has the figures).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tldrlab.digest.features import FEATURES, ScorerMode
from tldrlab.digest.reranker import RerankerSpec
from tldrlab.errors import ConfigError, InvalidInputError

ScorerName = Literal["auto", "heuristic", "learned_v1", "learned_v2"]

SCORER_FILES: dict[str, str] = {"learned_v1": "highlight_v1.json", "learned_v2": "highlight_v2.json"}
"""Learned scorer name -> its file inside this package."""

DEFAULT_SCORERS: dict[ScorerMode, str] = {
    "document": "learned_v2",
    "forum": "learned_v2",
    "forum_votes": "learned_v2",
    "query": "learned_v2",
}
"""Per mode, the scorer `auto` picks: the scorer chosen on train (per mode, learned_v2: its features and
penalty won train cross-validation, and its forum models are learned_v1's) wherever it beat the heuristic on
the dev/val split with the paired-bootstrap interval above zero, which it did in every mode."""

SCORER_FORMAT = "tldrlab-highlight-scorer"


@dataclass(frozen=True)
class LinearModel:
    """One mode's linear model, a score per sentence (a softmax logit within the thread):
    ((x - mean) / scale) . weights + vector . vector_weights + bias.

    `vector_weights` (optional) is a learned direction in the sentence-embedding space (what kind of sentence
    is usually right, e.g. "we propose ..." in abstracts); it applies only to vectors of its dimension."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float
    vector_weights: np.ndarray | None = None

    def relevance(self, features: np.ndarray, vectors: np.ndarray | None = None) -> np.ndarray:
        out = ((features - self.mean) / self.scale) @ self.weights + self.bias
        if (
            self.vector_weights is not None
            and vectors is not None
            and vectors.shape[1:] == self.vector_weights.shape
        ):
            out = out + np.asarray(vectors, dtype=np.float64) @ self.vector_weights
        return np.asarray(out, dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mean": [round(float(x), 8) for x in self.mean],
            "scale": [round(float(x), 8) for x in self.scale],
            "weights": [round(float(x), 8) for x in self.weights],
            "bias": round(float(self.bias), 8),
        }
        if self.vector_weights is not None:
            out["vector_weights"] = [round(float(x), 6) for x in self.vector_weights]
        return out


@dataclass(frozen=True)
class LinearScorer:
    """A learned scorer: one linear model per mode over the named features (a subset of `FEATURES`)."""

    name: str
    version: int
    features: tuple[str, ...]
    models: dict[str, LinearModel]
    info: dict[str, Any] = field(default_factory=dict)
    """How it was trained: data hashes, case counts, regularisation, train-split figures."""
    reranker: RerankerSpec | None = None
    """A fine-tuned MiniLM that re-ranks the top of this scorer's ranking in its modes (`reranker.py`)."""
    folder: Path | None = None
    """Where the file was read from: a relative re-ranker adapter path is relative to it."""
    columns: np.ndarray = field(init=False, repr=False, compare=False)
    """Where each of `features` sits among the columns of `sentence_features` (`FEATURES` order)."""

    def __post_init__(self) -> None:
        unknown = [f for f in self.features if f not in FEATURES]
        if unknown:
            raise InvalidInputError(
                f"highlight scorer {self.name!r} uses features this version does not compute: {unknown}"
            )
        object.__setattr__(self, "columns", np.array([FEATURES.index(f) for f in self.features], dtype=int))

    def relevance(
        self, features: np.ndarray, mode: ScorerMode, vectors: np.ndarray | None = None
    ) -> np.ndarray | None:
        """Relevance per sentence from `features` in `FEATURES` column order (`sentence_features`), or None
        when this scorer has no model for `mode`."""
        model = self.models.get(mode)
        return None if model is None else model.relevance(features[:, self.columns], vectors)

    def reranker_for(self, mode: ScorerMode) -> tuple[RerankerSpec, Path] | None:
        """(spec, adapter directory) of the re-ranker for `mode`, or None."""
        if self.reranker is None or mode not in self.reranker.modes:
            return None
        adapter = Path(self.reranker.adapter)
        if not adapter.is_absolute():
            adapter = (self.folder or Path.cwd()) / adapter
        return self.reranker, adapter

    def to_dict(self) -> dict[str, Any]:
        out = {
            "format": SCORER_FORMAT,
            "name": self.name,
            "version": self.version,
            "features": list(self.features),
            "modes": {mode: model.to_dict() for mode, model in self.models.items()},
            "info": self.info,
        }
        if self.reranker is not None:
            out["reranker"] = self.reranker.to_dict()
        return out


def scorer_from_dict(data: dict[str, Any], folder: Path | None = None) -> LinearScorer:
    if data.get("format") != SCORER_FORMAT:
        raise InvalidInputError(f"not a highlight scorer file (format {data.get('format')!r})")
    features = tuple(data["features"])
    models = {
        mode: LinearModel(
            np.asarray(m["mean"], dtype=np.float64),
            np.asarray(m["scale"], dtype=np.float64),
            np.asarray(m["weights"], dtype=np.float64),
            float(m["bias"]),
            np.asarray(m["vector_weights"], dtype=np.float64) if m.get("vector_weights") else None,
        )
        for mode, m in data["modes"].items()
    }
    reranker = RerankerSpec.from_dict(data["reranker"]) if data.get("reranker") else None
    return LinearScorer(
        str(data["name"]),
        int(data["version"]),
        features,
        models,
        dict(data.get("info", {})),
        reranker,
        folder,
    )


def load_scorer_file(path: Path | str) -> LinearScorer:
    try:
        return scorer_from_dict(json.loads(Path(path).read_text(encoding="utf-8")), Path(path).parent)
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidInputError(f"cannot read highlight scorer {path}: {exc}") from exc


@functools.cache
def load_scorer(name: str) -> LinearScorer:
    """A packaged learned scorer by name (read once per process)."""
    file_name = SCORER_FILES.get(name)
    if file_name is None:
        known = ", ".join(["auto", "heuristic", *SCORER_FILES])
        raise ConfigError(f"unknown highlight scorer {name!r}; known: {known}")
    package = resources.files(__package__)
    text = package.joinpath(file_name).read_text(encoding="utf-8")
    return scorer_from_dict(json.loads(text), Path(str(package)))


def resolve_scorer(name: str, mode: ScorerMode) -> LinearScorer | None:
    """The learned scorer ranking `mode` under option `name`, or None for the heuristic."""
    chosen = DEFAULT_SCORERS[mode] if name == "auto" else name
    if chosen == "heuristic":
        return None
    scorer = load_scorer(chosen)
    return scorer if mode in scorer.models else None
