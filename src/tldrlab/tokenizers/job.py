"""`tokenizer_job(run)`: train a tokenizer from the run's config into `<run_dir>/tokenizer`.

The run config is `{"method", "corpus": [paths], "vocab_size", ...TokenizerConfig fields}`; the service's
workers and `tldrlab tokenizer train` both end up here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tldrlab.errors import ConfigError
from tldrlab.runs import Run

TOKENIZER_SUBDIR = "tokenizer"


def tokenizer_job(run: Run) -> dict[str, Any]:
    from tldrlab.tokenizers.train import train_tokenizer

    config = dict(run.config)
    corpus = config.pop("corpus", None) or config.pop("corpus_paths", None)
    if not corpus:
        raise ConfigError("a tokenizer run needs `corpus`: a list of corpus file paths")
    if isinstance(corpus, str):
        corpus = [corpus]
    method = config.pop("method", "bpe")
    vocab_size = int(config.pop("vocab_size", 8000))
    out_dir = Path(config.pop("out_dir", None) or run.dir / TOKENIZER_SUBDIR)
    run.log(f"training {method} tokenizer (vocab {vocab_size}) on {len(corpus)} file(s)")
    run.heartbeat(progress=0.0, message=f"training {method} tokenizer")
    manifest = train_tokenizer(method, corpus, vocab_size, out_dir, **config)
    stats = manifest["stats"]
    run.set_summary(
        vocab_size=manifest["actual_vocab_size"],
        coverage=stats["coverage"],
        unk_rate=stats["unk_rate"],
        tokens_per_word=stats["tokens_per_word"],
        tokens_per_char=stats["tokens_per_char"],
        train_s=manifest["timings_s"]["train"],
    )
    run.log_metrics(0, **{k: v for k, v in stats.items() if isinstance(v, int | float)})
    if out_dir.resolve().is_relative_to(run.dir.resolve()):
        run.add_artifact(out_dir, kind="tokenizer")
    run.heartbeat(progress=1.0, message="tokenizer trained")
    run.log("tokenizer trained", **stats)
    return manifest
