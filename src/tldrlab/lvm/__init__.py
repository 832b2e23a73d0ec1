"""LVM concept models: articles -> concept vectors -> models that predict the next concept.

- `chunking`: articles into concepts (sentences, or semantic chunks of adjacent similar sentences).
- `store`: concepts with provenance and vectors in SQLite (default) or PostgreSQL + pgvector.
- `ingest`: read, chunk, embed, store, as a run with per-stage timings (`pipeline_metrics.json`).
- `index`: FAISS inner-product index (exact, or IVF-Flat at scale) saved with its vectors and ids.
- `sequences`: article-bounded (context -> next) examples split by article, saved as NPZ with masks.
- `models`: LVM_MODELS registry (lstm, gru, transformer, mamba), vectors in and out.
- `losses`: LVM_LOSSES registry (mse, cosine, infonce, corpus) and weighted `+` combinations.
- `training`: the LVM TrainTask for the Trainer core loop and the `lvm_train` run kind.
- `baselines`: BASELINES registry (copy_last, mean, ridge, mean_ridge, decay, decay_top1).
- `evaluation`: MSE, cosine, retrieval top-1/top-5 (with and without the context) for models and baselines.
- `decode`: nearest-concept decoding (stored text with provenance) and the optional vec2text hook.
"""
