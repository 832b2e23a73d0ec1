"""What a tokenizer is trained from (`TokenizerConfig`), the config of the `tokenizer` run kind
(`TokenizerJobConfig`), the special tokens every tokenizer shares, and where a tokenizer directory is
(`resolve_tokenizer_dir`: file names only, so the checks a run's config gets before it exists use it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator

from tldrlab.choices import OneOf
from tldrlab.configmodel import ConfigModel
from tldrlab.errors import AmbiguousRunIdError, InvalidInputError, NotFoundError
from tldrlab.runs.paths import InputPath, OutputPath, Seed
from tldrlab.runs.registry import open_registry

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
SPECIAL_TOKENS: dict[str, str] = {"pad_token": PAD, "unk_token": UNK, "bos_token": BOS, "eos_token": EOS}
"""transformers attribute -> token. Every method puts them first: pad=0, unk=1, bos=2, eos=3."""

TOKENIZER_FILE = "tokenizer.json"
SPM_FILE = "tokenizer.model"
MANIFEST_FILE = "tokenizer_manifest.json"

BYTE_ALPHABET = 256
"""Byte values: byte-level BPE starts from all of them; SentencePiece's byte fallback adds a piece for
each."""

MIN_VOCAB_SIZES: dict[str, int] = {
    "bpe": BYTE_ALPHABET + len(SPECIAL_TOKENS),
    "sentencepiece": len(SPECIAL_TOKENS) + BYTE_ALPHABET + 1,
    "char": len(SPECIAL_TOKENS) + 1,
}
"""Every method of `tldrlab.tokenizers.train.TOKENIZERS` and the smallest vocabulary it can train. Known here,
without the `tokenizers` library, so that a config asking for too few tokens is refused when it is given
(422 at `POST /runs`) instead of failing once its run has started. For sentencepiece this is only a floor:
it needs a piece per distinct character of the corpus besides the specials and the 256 byte pieces, which
only the corpus can tell (its run refuses a smaller vocabulary saying how many)."""

MAX_VOCAB_SIZE = 1 << 20
"""The largest vocabulary any method is asked for (1,048,576; the largest real vocabularies are about a
quarter of it). Without a bound, the Rust BPE trainer sizes its tables by `vocab_size` up front: 10^11
aborted the process on a failed multi-terabyte allocation (no error, the run left `running`), and
SentencePiece cannot parse a size past 32 bits."""


TokenizerMethod = Annotated[str, OneOf("tokenizer method", MIN_VOCAB_SIZES)]
"""A config field naming a tokenizer method (checked, and listed in --help and the JSON schema)."""


def resolve_tokenizer_dir(path_or_run: Path | str) -> Path:
    """A directory holding tokenizer.json: the path itself, its `tokenizer/` or `model/` subdirectory, or the
    directory of a run id (or unique prefix) from the registry."""
    if not str(path_or_run).strip():  # Path("") is the working directory: a blank name is not a path
        raise InvalidInputError("the tokenizer is empty: give a tokenizer directory, a model or a run id")
    path = Path(path_or_run)
    if not path.exists():
        try:
            path = Path(open_registry().find(str(path_or_run)).run_dir)
        except AmbiguousRunIdError:
            raise  # several runs match: "no such run" would hide that a longer prefix picks one
        except NotFoundError:
            raise NotFoundError(f"no tokenizer directory or run named {str(path_or_run)!r}") from None
    given = path
    if path.is_file():
        path = path.parent
    for candidate in (path, path / "tokenizer", path / "model"):
        if (candidate / TOKENIZER_FILE).is_file():
            return candidate
    if given.is_file():  # named the file the user gave, not only its directory
        raise NotFoundError(
            f"{given} is not a tokenizer: give a tokenizer directory (tldrlab tokenizer train), its "
            f"{TOKENIZER_FILE}, a model directory or a run id"
        )
    raise NotFoundError(f"no {TOKENIZER_FILE} in {path} (nor in its tokenizer/ or model/ subdirectory)")


def check_vocabulary(method: object, vocab_size: int) -> None:
    """ValueError when a known `method` cannot train a `vocab_size` vocabulary (an unknown one is its own
    field's error)."""
    if isinstance(method, str) and vocab_size < (smallest := MIN_VOCAB_SIZES.get(method, 0)):
        # sentencepiece's smallest is only a floor: the corpus's characters decide (its run says how many)
        more = (
            " (one more per distinct character of the corpus after the first)"
            if method == "sentencepiece"
            else ""
        )
        raise ValueError(f"vocab size {vocab_size} is too small for {method}: it needs {smallest}+{more}")


def fitting_vocabulary(vocab_size: int, info: ValidationInfo) -> int:
    """A `vocab_size` validator: at least the smallest vocabulary of the config's `method` (a field declared
    before it; absent from `info.data` when the method itself was refused)."""
    check_vocabulary(info.data.get("method"), vocab_size)
    return vocab_size


METHOD_OPTIONS: dict[str, tuple[str, ...]] = {
    "min_frequency": ("bpe", "char"),
    "model_type": ("sentencepiece",),
    "normalization": ("sentencepiece",),
    "character_coverage": ("sentencepiece",),
}
"""TokenizerConfig's options that only some methods use."""


class TokenizerConfig(ConfigModel):
    """What to train: method, vocabulary size and the few options each method has."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    method: TokenizerMethod = "bpe"
    """Registry name: `bpe` (byte-level BPE), `sentencepiece` (unigram or bpe) or `char`."""

    vocab_size: int = Field(default=8000, gt=0, le=MAX_VOCAB_SIZE)
    """Target vocabulary size including the 4 special tokens (for `char`: an upper bound)."""

    min_frequency: int = Field(default=2, ge=1)
    """bpe: a merge must occur at least this often; char: a character must occur this often to get an id."""

    model_type: Literal["unigram", "bpe"] = "unigram"
    """sentencepiece only: the SentencePiece model type."""

    normalization: Literal["identity", "nmt_nfkc", "nfkc"] = "identity"
    """sentencepiece only: `identity` keeps text as is (exact round-trip); `nmt_nfkc` (SentencePiece's
    default) applies NFKC and maps some whitespace, so decode(encode(x)) is the normalised x, not x."""

    character_coverage: float = Field(default=1.0, gt=0.0, le=1.0)
    """sentencepiece only: share of characters covered by the vocabulary; the rest fall back to bytes."""

    seed: Seed = 0
    """Seed of the holdout split (and of SentencePiece's sampling)."""

    holdout: float = Field(default=0.05, ge=0.0, lt=1.0)
    """Fraction of corpus lines kept aside for the stats."""

    max_train_lines: int | None = Field(default=None, gt=0)
    """Use at most this many training lines (None: all)."""

    _fitting_vocabulary = field_validator("vocab_size")(fitting_vocabulary)

    @model_validator(mode="after")
    def _options_of_its_method(self) -> TokenizerConfig:
        """An option the method does not have is refused, not ignored: `--method bpe --normalization nfkc`
        trained a bpe tokenizer without normalising and recorded `normalization: nfkc` in its manifest."""
        for name, methods in METHOD_OPTIONS.items():
            if self.method not in methods and getattr(self, name) != type(self).model_fields[name].default:
                raise ValueError(
                    f"{name} is an option of {' and '.join(methods)}, not of {self.method}: leave it out"
                )
        return self


class TokenizerJobConfig(TokenizerConfig):
    """Kind `tokenizer`: what to train (TokenizerConfig) on which files, and where to put it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    corpus: list[Annotated[str, InputPath()]] = Field(min_length=1, max_length=1000)
    """Corpus files: plain text or any format `tldrlab data` reads (one path or a list)."""

    out_dir: Annotated[str | None, OutputPath()] = None
    """Where the tokenizer is written; None: `<run_dir>/tokenizer`."""

    overwrite: bool = False
    """Replace the tokenizer `out_dir` already holds (tokenizer.json, tokenizer.model,
    tokenizer_manifest.json); without it such an `out_dir` is refused before the run starts."""

    @field_validator("corpus", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value
