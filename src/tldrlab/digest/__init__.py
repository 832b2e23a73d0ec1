"""Digest: ingest threads, pick provenance-linked highlights, stream cited TL;DRs.

- `ingest`: threads -> sentences with offsets -> vectors -> store (only changed posts re-embedded).
- `highlights`: query-free centrality + signals, or query-aware hybrid (vector + BM25); MMR across posts.
- `fold`: fit long threads into a model's context (first posts, best-ranked, latest).
- `summarizers/`: registry SUMMARIZERS (extractive, local, openai, two_stage).
- `cache`: digests cached per thread content hash, summarizer and parameters.
- `pipeline`: `digest_events` (tokens then the final digest) used by the API, the CLI and the benches.
- `baselines`: Lead, LexRank, TextRank for the highlight benchmarks.
"""
