"""Tokenizer training: tldrlab's `train_tokenizer` vs calling the library directly, in one process.

    .venv/bin/python bench/tokenizer.py [--corpus FILE ...] [--vocab-size 8000] [--repeats 3] [--method bpe]

For `bpe` the baseline is Hugging Face `tokenizers` (the same byte-level BPE model, pre-tokenizer and trainer
settings, trained from the corpus files by the library's own reader); for `sentencepiece` it is
`SentencePieceTrainer.train(input=...)` with the same options. tldrlab does more (seeded holdout split,
holdout stats, manifest with sha256), and that is included in its time: the ratio is what a user pays.

Prints the median wall time of each, their ratio (target <= 1.1x) by medians and by fastest runs, and the
peak resident memory growth of each call (sampled every 2 ms from /proc/self/statm, so Rust / C++
allocations count too).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from headline import add_quick, headline, need_data

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare" / "input.txt"
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE


def measure(fn: Callable[[], object]) -> tuple[float, int]:
    """(seconds, peak RSS growth in bytes) of one call."""
    base = rss_bytes()
    peak = base
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_bytes())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return seconds, max(peak, rss_bytes()) - base


def direct_bpe(corpus: list[Path], vocab_size: int, out: Path) -> None:
    from tldrlab.tokenizers.bpe import new_tokenizer, new_trainer
    from tldrlab.tokenizers.config import TokenizerConfig

    tokenizer = new_tokenizer()
    tokenizer.train([str(p) for p in corpus], trainer=new_trainer(TokenizerConfig(vocab_size=vocab_size)))
    tokenizer.save(str(out / "tokenizer.json"))


def direct_sentencepiece(corpus: list[Path], vocab_size: int, out: Path) -> None:
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        input=",".join(str(p) for p in corpus),
        model_prefix=str(out / "direct"),
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        normalization_rule_name="identity",
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        byte_fallback=True,
        pad_id=0,
        unk_id=1,
        bos_id=2,
        eos_id=3,
        input_sentence_size=0,
        max_sentence_length=1 << 16,
        minloglevel=2,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, nargs="+", default=[DEFAULT_CORPUS])
    parser.add_argument("--vocab-size", type=int, default=8000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--method", choices=["bpe", "sentencepiece"], default="bpe")
    add_quick(parser, repeats=1, vocab_size=2000)
    args = parser.parse_args()
    need_data(*args.corpus)

    from tldrlab.tokenizers import train_tokenizer

    direct = direct_bpe if args.method == "bpe" else direct_sentencepiece
    size = sum(p.stat().st_size for p in args.corpus)
    print(
        f"method {args.method}, vocab {args.vocab_size}, corpus {size / 1e6:.2f} MB, repeats {args.repeats}"
    )
    times: dict[str, list[float]] = {"library": [], "tldrlab": []}
    memory: dict[str, list[int]] = {"library": [], "tldrlab": []}
    with tempfile.TemporaryDirectory() as tmp:
        runs = {
            "library": lambda out: direct(args.corpus, args.vocab_size, out),
            "tldrlab": lambda out: train_tokenizer(args.method, args.corpus, args.vocab_size, out),
        }
        # One untimed warm-up of each (imports, page cache), then alternate so drift hits both alike.
        for name, fn in runs.items():
            out = Path(tmp) / f"warm-{name}"
            out.mkdir()
            fn(out)
        for i in range(args.repeats):
            for name, fn in runs.items():
                out = Path(tmp) / f"{name}-{i}"
                out.mkdir()
                seconds, grown = measure(lambda fn=fn, out=out: fn(out))
                times[name].append(seconds)
                memory[name].append(grown)
    lib, ours = statistics.median(times["library"]), statistics.median(times["tldrlab"])
    for name in ("library", "tldrlab"):
        print(
            f"{name:8s} median {statistics.median(times[name]):.3f} s "
            f"(runs {', '.join(f'{t:.3f}' for t in times[name])}); "
            f"peak RSS growth {max(memory[name]) / 2**20:.1f} MiB"
        )
    print(f"time ratio tldrlab / library (medians): {ours / lib:.3f}x (target <= 1.1x)")
    headline(f"tokenizer training time tldrlab / library ({args.method})", ours / lib, "<= 1.1")
    # On a shared machine the fastest run of each is the least disturbed estimate of its cost.
    print(
        f"time ratio tldrlab / library (fastest runs): {min(times['tldrlab']) / min(times['library']):.3f}x"
    )
    lib_mem, our_mem = max(memory["library"]), max(memory["tldrlab"])
    if lib_mem > 0:
        print(f"peak memory ratio tldrlab / library: {our_mem / lib_mem:.2f}x")


if __name__ == "__main__":
    main()
