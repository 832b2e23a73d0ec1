"""Labelled highlight cases from the three kinds of data with sentence-level truth, to train and measure.

- `scitldr_cases`: SciTLDR JSON lines (`source` sentences, `source_labels`, `title`): one case per paper, the
  abstract as one post titled with the paper title; the truth is the sentence(s) `source_labels` marks.
- `qmsum_cases`: QMSum JSON lines: one case per specific query, every speaker turn one unit of one post; the
  truth is the turns inside the query's `relevant_text_span`.
- `forum_cases`: forum threads (a Stack Exchange dump) with an accepted answer and 2+ answers: the truth is
  the accepted answer's sentences; the accepted flag is hidden from the thread the ranker sees. Threads are
  split deterministically by a hash of their id (`forum_split`): the split never depends on order or limits.

`case_relevance` scores a case's sentences the way a digest would. `embed_cases` fills the vectors, reusing a
per-sentence vector cache on disk when given one (embedding is by far the slowest step on a CPU, and the
benchmark and the scorer training embed the same sentences).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from tldrlab.data.readers import read_threads
from tldrlab.data.sentences import split_sentences
from tldrlab.data.threads import Post, Thread
from tldrlab.digest.highlights import HighlightOptions, sentence_relevance
from tldrlab.digest.scorers import LinearScorer
from tldrlab.embed.base import Embedder
from tldrlab.runs.atomic import atomic_write_bytes
from tldrlab.store.base import SentenceRecord

ForumSplit = Literal["train", "dev"]


@dataclass
class HighlightCase:
    """One ranking problem: the sentences of a thread, which of them are right, and their vectors."""

    id: str
    thread: Thread
    records: list[SentenceRecord]
    labels: np.ndarray
    """Bool per record: part of the truth."""
    query: str | None = None
    vectors: np.ndarray | None = None
    title_vector: np.ndarray | None = None
    query_vector: np.ndarray | None = None
    group: str = ""
    """The independent unit for bootstrap intervals and splits (paper, thread, query)."""
    extra: dict[str, object] = field(default_factory=dict)


def scitldr_cases(path: Path, limit: int | None = None) -> list[HighlightCase]:
    cases = []
    with path.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    rows = [r for r in rows if len(r["source"]) >= 2 and any(r["source_labels"])][:limit]
    for row in rows:
        texts = list(row["source"])
        text = " ".join(texts)
        records, at = [], 0
        for i, sentence in enumerate(texts):  # keep the given sentence split: the labels index it
            start = text.index(sentence, at)
            records.append(
                SentenceRecord(row["paper_id"], "abstract", 1, i, start, start + len(sentence), sentence)
            )
            at = start + len(sentence)
        thread = Thread(
            id=row["paper_id"], title=row.get("title") or "", posts=[Post(id="abstract", number=1, text=text)]
        )
        labels = np.array([bool(x) for x in row["source_labels"]])
        targets = row.get("target") or []
        cases.append(
            HighlightCase(
                row["paper_id"], thread, records, labels, group=row["paper_id"], extra={"targets": targets}
            )
        )
    return cases


def qmsum_cases(path: Path, limit: int | None = None, every: int = 1) -> list[HighlightCase]:
    """Meetings' specific queries (every `every`-th meeting, at most `limit` meetings, so a subset still
    mixes the file's domains, which come in blocks); the cases of one meeting share their records list."""
    cases = []
    with path.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()][::every][:limit]
    for m, row in enumerate(rows):
        meeting = str(row.get("meeting_id") or f"meeting{m}")
        turns = [str(t.get("content") or "") for t in row["meeting_transcripts"]]
        thread = Thread(id=meeting, posts=[Post(id="m", number=1, text="\n\n".join(turns))])
        records = [SentenceRecord(meeting, "m", 1, i, 0, len(t), t) for i, t in enumerate(turns)]
        for q, query in enumerate(row.get("specific_query_list") or []):
            relevant = np.zeros(len(turns), dtype=bool)
            for start, end in query.get("relevant_text_span") or []:
                relevant[int(start) : int(end) + 1] = True
            if not relevant.any():
                continue
            cases.append(
                HighlightCase(
                    f"{meeting}:q{q}",
                    thread,
                    records,
                    relevant,
                    query=str(query["query"]),
                    group=f"{meeting}:q{q}",
                )
            )
    return cases


def forum_split(thread_id: str, dev_share: float = 0.5) -> ForumSplit:
    """`dev` for a deterministic `dev_share` of thread ids (by sha256), `train` for the rest."""
    bucket = int(hashlib.sha256(thread_id.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "dev" if bucket < dev_share else "train"


def thread_records(thread: Thread) -> list[SentenceRecord]:
    return [
        SentenceRecord(
            thread.id, post.id, post.number, s.index, s.start, s.end, s.text, post.author, post.url
        )
        for post in thread.posts
        for s in split_sentences(post.text)
    ]


def forum_cases(
    path: Path,
    split: ForumSplit | None = None,
    limit: int | None = None,
    *,
    min_sentences: int = 4,
) -> list[HighlightCase]:
    """Threads with an accepted answer and 2+ answers (of `split` when given), accepted flag hidden."""
    cases = []
    for thread in read_threads(path):
        accepted = next((p.id for p in thread.posts if p.accepted), None)
        if accepted is None or sum(p.kind == "answer" for p in thread.posts) < 2:
            continue
        if split is not None and forum_split(thread.id) != split:
            continue
        hidden = thread.model_copy(
            update={"posts": [p.model_copy(update={"accepted": False}) for p in thread.posts]}
        )
        records = thread_records(hidden)
        if len(records) < min_sentences:
            continue
        labels = np.array([r.post_id == accepted for r in records])
        cases.append(
            HighlightCase(thread.id, hidden, records, labels, group=thread.id, extra={"accepted": accepted})
        )
        if limit is not None and len(cases) >= limit:
            break
    return cases


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def cached_encode(
    embedder: Embedder, texts: Sequence[str], cache_dir: Path | None = None, *, shard_size: int = 2000
) -> np.ndarray:
    """`embedder.encode(texts)`, with vectors kept per text under `cache_dir/<embedder>/` between calls.

    Missing vectors are computed in shards of `shard_size` texts, each written atomically as soon as it is
    done, so an interrupted run loses at most one shard.
    """
    if cache_dir is None:
        return embedder.encode(list(texts), batch_size=64)
    folder = cache_dir / str(getattr(embedder, "name", "embedder")).replace("/", "_")
    folder.mkdir(parents=True, exist_ok=True)
    known: dict[str, np.ndarray] = {}
    for shard in sorted(folder.glob("*.npz")):
        with np.load(shard) as data:
            known.update(zip(data["keys"].tolist(), data["vectors"], strict=True))
    keys = [text_key(t) for t in texts]
    missing = list(dict.fromkeys(k for k in keys if k not in known))
    by_key = dict(zip(keys, texts, strict=True))
    for at in range(0, len(missing), shard_size):
        chunk = missing[at : at + shard_size]
        vectors = embedder.encode([by_key[k] for k in chunk], batch_size=64)
        known.update(zip(chunk, vectors, strict=True))
        import io

        buffer = io.BytesIO()
        np.savez(buffer, keys=np.array(chunk), vectors=vectors.astype(np.float32))
        atomic_write_bytes(folder / f"{chunk[0][:16]}-{len(chunk)}.npz", buffer.getvalue())
    dim = next(iter(known.values())).shape[0] if known else 0
    return np.stack([known[k] for k in keys]) if keys else np.zeros((0, dim), np.float32)


def embed_cases(cases: Sequence[HighlightCase], embedder: Embedder, cache_dir: Path | None = None) -> None:
    """Fill each case's sentence, title and query vectors (in place), one encode call for all of them."""
    texts: list[str] = []
    starts: dict[int, int] = {}  # cases sharing one records list (a meeting's queries) share its vectors
    for case in cases:
        if id(case.records) not in starts:
            starts[id(case.records)] = len(texts)
            texts.extend(r.text for r in case.records)
        texts.extend(t for t in (case.thread.title, case.query) if t)
    vectors = cached_encode(embedder, texts, cache_dir)
    at = 0
    for case in cases:
        start = starts[id(case.records)]
        case.vectors = vectors[start : start + len(case.records)]
        if start == at:
            at += len(case.records)
        if case.thread.title:
            case.title_vector = vectors[at]
            at += 1
        if case.query:
            case.query_vector = vectors[at]
            at += 1


def case_relevance(
    case: HighlightCase, options: HighlightOptions, scorer: LinearScorer | None = None
) -> np.ndarray:
    """`sentence_relevance` of a case's sentences with its own vectors, title and query (`embed_cases` first);
    `scorer` overrides the one `options` names (an unshipped scorer file, or one without its re-ranker)."""
    if case.vectors is None:
        raise ValueError(f"case {case.id} has no vectors: run embed_cases first")
    return sentence_relevance(
        case.records,
        case.vectors,
        options,
        thread=case.thread,
        title_vector=case.title_vector,
        query_vector=case.query_vector,
        scorer=scorer,
    )
