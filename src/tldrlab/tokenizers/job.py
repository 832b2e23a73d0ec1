"""`tokenizer_job(run)`: train a tokenizer from the run's config into `<run_dir>/tokenizer`.

The run config is a `TokenizerJobConfig`: `{"method", "corpus": [paths], "vocab_size", ...TokenizerConfig
fields, "out_dir"?}`; the service's workers and `tldrlab tokenizer train` both end up here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import ConfigDict, Field, ValidationError, field_validator

from tldrlab.errors import ConfigError
from tldrlab.runs import Run
from tldrlab.runs.paths import InputPath, OutputPath
from tldrlab.tokenizers.config import TokenizerConfig

TOKENIZER_SUBDIR = "tokenizer"


class TokenizerJobConfig(TokenizerConfig):
    """A tokenizer run: what to train (TokenizerConfig) on which files, and where to put it."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    corpus: list[Annotated[str, InputPath()]] = Field(min_length=1, max_length=1000)
    """Corpus files (plain text, one or more)."""

    out_dir: Annotated[str | None, OutputPath()] = None
    """Where the tokenizer is written; None: `<run_dir>/tokenizer`."""

    @field_validator("corpus", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


def parse_tokenizer_job(raw: dict[str, Any]) -> TokenizerJobConfig:
    config = dict(raw)
    if "corpus" not in config and "corpus_paths" in config:  # the older name
        config["corpus"] = config.pop("corpus_paths")
    if not config.get("corpus"):
        raise ConfigError("a tokenizer run needs `corpus`: a list of corpus file paths")
    try:
        return TokenizerJobConfig.model_validate(config)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid tokenizer config: {problems}") from exc


def tokenizer_job(run: Run) -> dict[str, Any]:
    from tldrlab.tokenizers.train import train_tokenizer

    job = parse_tokenizer_job(run.config)
    config = job.model_dump(exclude={"corpus", "out_dir", "method", "vocab_size"})
    corpus, method, vocab_size = job.corpus, job.method, job.vocab_size
    out_dir = Path(job.out_dir or run.dir / TOKENIZER_SUBDIR)
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
