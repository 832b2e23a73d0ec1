"""`load_tokenizer`: any tldrlab tokenizer directory, run, or saved model as a transformers tokenizer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tldrlab.errors import InvalidInputError
from tldrlab.report import Report, key_value_table
from tldrlab.tokenizers.config import MANIFEST_FILE, SPECIAL_TOKENS, TOKENIZER_FILE, resolve_tokenizer_dir
from tldrlab.tokenizers.plain import plain_ids


def read_tokenizer_manifest(path_or_run: Path | str) -> dict[str, Any]:
    directory = resolve_tokenizer_dir(path_or_run)
    manifest = directory / MANIFEST_FILE
    if not manifest.is_file():
        return {}
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # ValueError: torn JSON or bytes that are not UTF-8
        raise InvalidInputError(f"cannot read the tokenizer manifest {manifest}: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInputError(f"the tokenizer manifest {manifest} is not a JSON object")
    return data


def load_tokenizer(path_or_run: Path | str) -> Any:
    """A `transformers.PreTrainedTokenizerFast` with pad / unk / bos / eos set.

    Directories written by `save_pretrained` (tokenizer_config.json) load with their saved settings; bare
    tokenizer directories from `train_tokenizer` wrap their tokenizer.json.
    """
    from transformers import PreTrainedTokenizerFast

    directory = resolve_tokenizer_dir(path_or_run)
    try:
        if (directory / "tokenizer_config.json").is_file():
            # Our own directories always hold tokenizer.json; going through the fast class directly avoids
            # AutoTokenizer reading config.json (which for char_lstm is not a transformers config).
            tokenizer = PreTrainedTokenizerFast.from_pretrained(str(directory))
        else:
            tokenizer = PreTrainedTokenizerFast(
                tokenizer_file=str(directory / TOKENIZER_FILE), model_max_length=1 << 30, **SPECIAL_TOKENS
            )
    except Exception as exc:  # the tokenizers library raises a bare Exception for a torn tokenizer.json
        raise InvalidInputError(f"cannot load the tokenizer in {directory}: {exc}") from exc
    for attr, token in SPECIAL_TOKENS.items():
        if getattr(tokenizer, attr, None) is None and token in tokenizer.get_vocab():
            setattr(tokenizer, attr, token)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token  # GPT-2 style tokenizers have no pad token
    return tokenizer


def manifest_report(manifest: dict[str, Any], title: str) -> Report:
    """A tokenizer manifest as it reads: method, vocabulary size, stats and the corpus files."""
    rows: dict[str, object] = {
        "method": str(manifest.get("method")),
        "vocab size": f"{manifest.get('actual_vocab_size')} (asked {manifest.get('vocab_size')})",
    }
    # the stats' `lines` stood beside the corpus's own count with nothing saying which lines they are
    if manifest.get("stats_split") == "holdout":
        rows["measured on"] = f"holdout: {manifest.get('holdout_lines')} lines kept out of training"
    elif manifest.get("stats_split"):
        rows["measured on"] = "the training lines"
    # a hand-edited manifest (stats not an object, a corpus entry without its lines) was a TypeError or
    # KeyError traceback: what is there is shown, "?" for what is not
    stats = manifest.get("stats")
    rows.update(stats if isinstance(stats, dict) else {})
    table = key_value_table(rows, title, key="field")
    corpus = manifest.get("corpus")
    for entry in corpus if isinstance(corpus, list) else []:
        entry = entry if isinstance(entry, dict) else {"path": entry}
        lines, sha256 = entry.get("lines", "?"), str(entry.get("sha256", "?"))[:12]
        table.rows.append(["corpus", f"{entry.get('path', '?')} ({lines} lines, sha256 {sha256})"])
    return Report([table])


def tokenizer_report(directory: Path, manifest: dict[str, Any], tokenizer: Any, tokens: Any = None) -> Report:
    """A tokenizer as it reads: its manifest (its size when it has none), then how a text tokenized
    (`tokens`: `tokenize_text`'s answer)."""
    if manifest:
        report = manifest_report(manifest, title=str(directory))
    else:
        report = Report([f"{directory}: {len(tokenizer)} tokens (no tldrlab manifest)"])
    if tokens is not None:
        # repr shows spaces and quotes; token_text's byte escapes are shown once, not doubled
        shown = " | ".join(repr(t).replace("\\\\x", "\\x") for t in tokens["tokens"])
        report.blocks += [f"{len(tokens['ids'])} tokens: {shown}", f"ids: {tokens['ids']}"]
    return report


def tokenize_text(tokenizer: Any, text: str) -> dict[str, list[Any]]:
    """How `text` tokenizes, as training and evaluation read a document (a special-token string in it is
    text): the token ids and each token's text (`token_text`)."""
    ids = plain_ids(tokenizer, text)
    return {"ids": ids, "tokens": [token_text(tokenizer, i) for i in ids]}


def token_text(tokenizer: Any, token_id: int) -> str:
    """A token as text. A byte-level BPE token holding part of a character decodes on its own to U+FFFD, which
    hides what it is (every piece of an emoji or of Arabic read '\ufffd'): such a token is shown as its bytes,
    `\xf0\x9f`, the complete characters in it as themselves."""
    text: str = tokenizer.decode([token_id])
    if "\ufffd" not in text:
        return text
    # lazy: transformers is loaded with the tokenizer already; this is GPT-2's byte <-> character table
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_of = {char: byte for byte, char in bytes_to_unicode().items()}
    piece = tokenizer.convert_ids_to_tokens(token_id)
    if not all(char in byte_of for char in piece):  # not a byte-level token (a sentencepiece <0xF0> is clear)
        return str(piece) if isinstance(piece, str) else text
    return bytes(byte_of[char] for char in piece).decode("utf-8", errors="backslashreplace")
