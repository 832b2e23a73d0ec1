"""`tokenizer_job(run, config)`: what a run of kind `tokenizer` executes (see tldrlab.kinds).

It trains a tokenizer from the run's TokenizerJobConfig into `<run_dir>/tokenizer` (or `out_dir`); the
service's workers and `tldrlab tokenizer train` both end up here.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from tldrlab.errors import ConflictError, InvalidInputError, NotFoundError, refused_at
from tldrlab.report import Report
from tldrlab.runs import Run
from tldrlab.tokenizers.config import (
    MANIFEST_FILE,
    SPM_FILE,
    TOKENIZER_FILE,
    TokenizerConfig,
    TokenizerJobConfig,
)
from tldrlab.tokenizers.corpus import check_distinct, corpus_format
from tldrlab.tokenizers.load import manifest_report
from tldrlab.tokenizers.train import train_tokenizer

TOKENIZER_SUBDIR = "tokenizer"


def tokenizer_job(run: Run, config: TokenizerJobConfig) -> dict[str, Any]:
    method, vocab_size, corpus = config.method, config.vocab_size, config.corpus
    options = _options(config)
    out_dir = Path(config.out_dir) if config.out_dir else run.dir / TOKENIZER_SUBDIR
    run.log(f"training {method} tokenizer (vocab {vocab_size}) on {len(corpus)} file(s)")
    run.heartbeat(progress=0.0, message=f"training {method} tokenizer")
    manifest = train_tokenizer(method, corpus, vocab_size, out_dir, **options)
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


def tokenizer_report(run_id: str, manifest: dict[str, Any]) -> Report:
    return manifest_report(manifest, title=f"run {run_id}")


def check_tokenizer(config: TokenizerJobConfig) -> None:
    """Kind `tokenizer`'s check before a run is created (command line and API alike): the corpus files are
    here, and files with text, not directories; `--out` is not a file. (That the vocabulary fits the method
    is the config's own validation.)"""
    # a file's refusal at its place in the list (`corpus.1`), as confinement and validation place theirs
    for i, path in enumerate(config.corpus):
        if not Path(path).exists():
            raise NotFoundError(f"corpus file not found: {path}").placed(("corpus", i))
    with refused_at("corpus"):  # a file named twice: the list's
        check_distinct(config.corpus)
    for i, path in enumerate(config.corpus):
        if Path(path).is_dir():  # refused inside the run before, which stayed a failed run
            refusal = InvalidInputError(f"corpus path {path} is a directory; pass the files inside it")
            raise refusal.placed(("corpus", i))
    for i, path in enumerate(config.corpus):  # its format (from its head): a file of none failed in the run
        with refused_at(("corpus", i)):
            corpus_format(Path(path))
    if all(Path(path).stat().st_size == 0 for path in config.corpus):  # as load_corpus says it, in the run
        raise InvalidInputError(f"the corpus has no text: {', '.join(config.corpus)}").placed("corpus")
    if config.out_dir and Path(config.out_dir).is_file():  # mkdir failed on it inside the run before
        raise InvalidInputError(f"--out {config.out_dir} is a file; give a directory").placed("out_dir")


def _options(config: TokenizerJobConfig) -> dict[str, Any]:
    """The job's tokenizer options beside its method and vocabulary size (min_frequency, holdout, ...)."""
    return config.model_dump(include=set(TokenizerConfig.model_fields) - {"method", "vocab_size"})


def check_tokenizer_corpus(config: TokenizerJobConfig) -> None:
    """Kind `tokenizer`'s command-line check before its run is created: a char tokenizer its corpus cannot
    give (no character `min_frequency` times: a vocabulary of the special tokens only) was refused once the
    run trained it, which stayed a failed run. Counting characters is cheap, so it is trained here as the
    run trains it, into a directory thrown away. (The API's worker meets it in the run: reading the whole
    corpus is too slow for a submit. A sentencepiece vocabulary the corpus cannot fill is left to the run:
    checking it would cost its whole training twice.)"""
    if config.method != "char":
        return
    with tempfile.TemporaryDirectory(prefix="tldrlab-tokenizer-check-") as directory:
        train_tokenizer("char", config.corpus, config.vocab_size, Path(directory), **_options(config))


def check_tokenizer_out(config: TokenizerJobConfig) -> TokenizerJobConfig:
    """Kind `tokenizer`'s prepare step, before its run exists (command line and API alike): an `out_dir` that
    already holds a tokenizer is refused (409) unless `overwrite` asks to replace it. Training into it
    replaced the tokenizer silently, and the models trained with it no longer match their tokenizer. A worker
    executing the same run again (a retry) does not come through here. (Over the API `out_dir` lies inside
    the new run's own directory, so only the command line meets an existing one.)"""
    if config.out_dir is None or config.overwrite:
        return config
    out = Path(config.out_dir)
    if held := [name for name in (TOKENIZER_FILE, SPM_FILE, MANIFEST_FILE) if (out / name).is_file()]:
        raise ConflictError(
            f"{out} already holds a tokenizer ({', '.join(held)}): give another --out, or --overwrite to "
            "replace it"
        )
    return config
