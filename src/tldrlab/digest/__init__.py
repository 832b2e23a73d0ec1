"""Digest: ingest threads, pick provenance-linked highlights, stream cited TL;DRs.

- `ingest`: threads -> sentences with offsets -> vectors -> store (only changed posts re-embedded).
- `highlights`: relevance by a named scorer (`scorers/`: the heuristic, or the packaged learned_v1 /
  learned_v2 over `features`), candidates from `candidates` (no boilerplate, no quoted text), MMR across
  posts.
- `candidates`: which sentences may be highlights, and which highlights may be TL;DR bullets.
- `highlight_cases`, `scorer_training`: labelled cases (SciTLDR, QMSum, Stack Exchange) and the
  `highlight_scorer_train` run function.
- `fold`: fit long threads into a model's context (first posts, best-ranked, latest).
- `summarizers/`: registry SUMMARIZERS (extractive, local, openai, two_stage).
- `cache`: digests cached per thread content hash, summarizer and parameters.
- `pipeline`: `digest_events` (tokens then the final digest) used by the API, the CLI and the benches.
- `baselines`: Lead, LexRank, TextRank for the highlight benchmarks.
"""
