"""Names chosen from a known set (a reader format, a tokenizer method, an LVM backbone, an experiment arm):
one check and one message, `unknown <kind> '<name>'; choose one of <a>, <b>, ...`.

    chunking: str = "sentence"
    _known_chunking = field_validator("chunking")(one_of("chunking", CHUNKING_METHODS))
    ReaderFormat = Annotated[str | None, AfterValidator(one_of("format", READERS))]
    raise ConfigError(unknown_choice("summarizer", name, SUMMARIZERS))      # outside a config class

Give a registry itself (a dict: its keys are the names) where the config module may import it, so that a new
entry is accepted without a second list to keep equal; the names are read at each check.
tests/test_choices.py fails on a module that words such a message itself.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import Any


def choose_one_of(names: Iterable[str]) -> str:
    """`choose one of a, b, c`: the end of every message refusing a name."""
    return f"choose one of {', '.join(names)}"


def unknown_choice(kind: str, value: object, names: Iterable[str]) -> str:
    """The message refusing `value`, which is not among `names`."""
    return f"unknown {kind} {value!r}; {choose_one_of(names)}"


def one_of(kind: str, names: Collection[str]) -> Callable[[Any], Any]:
    """A pydantic validator (`field_validator(field)(...)` or `AfterValidator(...)`) accepting a name among
    `names`, None (an optional field left unset) or a list of names; ValueError with `unknown_choice`'s
    message for the first unknown one."""

    def check(value: Any) -> Any:
        for name in [] if value is None else [value] if isinstance(value, str) else value:
            if name not in names:
                raise ValueError(unknown_choice(kind, name, names))
        return value

    check.__name__ = f"known_{kind.replace(' ', '_')}"
    return check
