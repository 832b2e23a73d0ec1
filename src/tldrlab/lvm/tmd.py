"""TMD codes: a domain, a task and a modifier label for every concept, by zero-shot classification.

Each facet has a fixed set of labels, each label a few plain-language descriptions. The descriptions are
embedded once with the concepts' own embedder; a label's prototype is the unit mean of its description
vectors, and a concept gets, per facet, the label whose prototype is nearest to its vector (cosine). No
training data and no model beyond the embedder: what the embedder puts near "a battle, a war or an army"
is `military`. Two structural rules come first, because an embedder places short or numeric text poorly:
a concept without sentence-final punctuation and of at most 8 words is a `heading` (its task), and its
modifier is `none`.

- domain (16): what the concept is about;
- task (8): what the sentence does (defines, narrates, describes, explains, counts, compares, reports an
  opinion, or is a heading);
- modifier (6): how it is said (past, present, future, uncertain, negative or contrastive, or none of these).

`tmd_code` writes the three as `domain/task/modifier`; `tmd_features` gives the 30-d one-hot vector an LVM
can read beside each context concept (`LVMConfig.tmd_inputs`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from tldrlab.embed.base import Embedder

DOMAINS: dict[str, tuple[str, ...]] = {
    "science": ("physics, chemistry and the natural sciences", "a scientific theory, experiment or element"),
    "technology": ("computers, software, engineering and machines", "a technical device, system or standard"),
    "mathematics": ("mathematics, numbers, equations and statistics", "a mathematical concept or proof"),
    "medicine": ("medicine, health, disease and the human body", "a medical condition, symptom or treatment"),
    "biology": ("animals, plants and living organisms", "a species, its anatomy, habitat and behaviour"),
    "earth": ("geography, places, rivers, mountains and climate", "a country, region or city and its land"),
    "history": ("history, ancient civilisations and historical periods", "an empire, dynasty or era"),
    "politics": ("politics, government, elections and political parties", "a state, its leaders and policy"),
    "law": ("law, courts, trials and legal procedure", "a statute, a judge, a lawsuit or a crime"),
    "economy": ("economy, business, trade, money and industry", "a company, a market or economic output"),
    "military": ("war, battles, armies and military operations", "soldiers, weapons and a campaign"),
    "arts": ("music, film, painting and the performing arts", "a song, an album, a film or an artist"),
    "literature": ("literature, books, poetry and language", "a novel, an author, a word or a grammar"),
    "religion": ("religion, philosophy, belief and ethics", "a god, a church, a philosopher or a doctrine"),
    "sports": ("sports, games, teams and competitions", "a player, a match, a season or a championship"),
    "society": ("people, biography, society and culture", "someone's life, family, education and career"),
}
TASKS: dict[str, tuple[str, ...]] = {
    "definition": ("a definition: X is a kind of Y", "this term refers to; it is defined as"),
    "event": (
        "an event that happened at a particular time",
        "then something happened; in that year it began",
    ),
    "description": (
        "a description of properties, features or appearance",
        "it has, it consists of, it looks",
    ),
    "explanation": ("an explanation of a cause, reason or mechanism", "because of this; this works by; so"),
    "quantity": (
        "numbers, statistics, measurements and amounts",
        "a population, a size, a percentage, a count",
    ),
    "comparison": ("a comparison between two things", "unlike, similar to, larger than, in contrast with"),
    "opinion": (
        "an opinion, criticism, praise or a quotation",
        "critics said; he argued; it was described as",
    ),
    "heading": ("a short section heading or title", "a title"),
}
MODIFIERS: dict[str, tuple[str, ...]] = {
    "past": ("it happened long ago, in the past", "was, had been, formerly, historically"),
    "present": ("it is true now, currently and today", "is, are, currently, nowadays, still"),
    "future": ("it will happen, is planned or expected", "will, is going to, plans to, is expected to"),
    "uncertain": ("it is uncertain, disputed or possible", "may, might, possibly, it is believed, perhaps"),
    "negative": ("a negation or a contrast", "not, never, however, but, despite, although"),
    "none": ("a plain statement", "a fact"),
}
FACETS: dict[str, dict[str, tuple[str, ...]]] = {"domain": DOMAINS, "task": TASKS, "modifier": MODIFIERS}
"""facet -> label -> descriptions."""
TMD_DIM = sum(len(labels) for labels in FACETS.values())
"""Width of the one-hot TMD features (16 + 8 + 6)."""

# with the full-width and other scripts' sentence ends (。！？…, Arabic ؟, Devanagari ।): every Japanese or
# Chinese sentence, one "word" to str.split, was a heading otherwise
_SENTENCE_END = re.compile(r"[.!?:;\"')\]。．！？；：」』）…؟।]\s*$")


@dataclass(frozen=True)
class TMD:
    """One concept's labels."""

    domain: str
    task: str
    modifier: str

    @property
    def code(self) -> str:
        return f"{self.domain}/{self.task}/{self.modifier}"


def is_heading(text: str) -> bool:
    """A short line without sentence-final punctuation (a section title such as "Early life")."""
    stripped = text.strip()
    return bool(stripped) and len(stripped.split()) <= 8 and not _SENTENCE_END.search(stripped)


class TMDClassifier:
    """Zero-shot TMD labelling in one embedder's vector space (see the module docstring)."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder_name = embedder.name
        self.prototypes: dict[str, np.ndarray] = {}
        for facet, labels in FACETS.items():
            texts = [d for descriptions in labels.values() for d in descriptions]
            vectors = _unit(np.asarray(embedder.encode(texts), dtype=np.float32))
            rows, start = [], 0
            for descriptions in labels.values():
                rows.append(vectors[start : start + len(descriptions)].mean(0))
                start += len(descriptions)
            self.prototypes[facet] = _unit(np.stack(rows))

    def classify(self, vectors: np.ndarray, texts: list[str] | None = None) -> list[TMD]:
        """Labels of concept vectors (n, d) in the embedder's space; `texts` enables the heading rule."""
        vectors = _unit(np.atleast_2d(np.asarray(vectors, dtype=np.float32)))
        picks = {
            facet: [list(FACETS[facet])[i] for i in (vectors @ proto.T).argmax(1)]
            for facet, proto in self.prototypes.items()
        }
        labels = []
        for i in range(len(vectors)):
            task, modifier = picks["task"][i], picks["modifier"][i]
            if texts is not None:
                heading = is_heading(texts[i])
                if heading:
                    task, modifier = "heading", "none"
                elif task == "heading":  # a full sentence is never a heading: its next-best task
                    scores = vectors[i] @ self.prototypes["task"].T
                    scores[list(TASKS).index("heading")] = -np.inf
                    task = list(TASKS)[int(scores.argmax())]
            labels.append(TMD(picks["domain"][i], task, modifier))
        return labels


def tmd_features(labels: list[TMD | None]) -> np.ndarray:
    """One-hot (n, TMD_DIM) float32: domain, then task, then modifier; all zero for a concept without TMD."""
    out = np.zeros((len(labels), TMD_DIM), dtype=np.float32)
    offsets = {"domain": 0, "task": len(DOMAINS), "modifier": len(DOMAINS) + len(TASKS)}
    index = {facet: {name: i for i, name in enumerate(labels_)} for facet, labels_ in FACETS.items()}
    for row, label in enumerate(labels):
        if label is None:
            continue
        for facet in FACETS:
            value = getattr(label, facet)
            if value in index[facet]:
                out[row, offsets[facet] + index[facet][value]] = 1.0
    return out


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)
