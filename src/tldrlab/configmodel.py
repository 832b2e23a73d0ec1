"""`ConfigModel`: the base of tldrlab's typed configs, whose field docstrings are their descriptions.

Every config class documents each field with a string literal under it; that docstring is the field's
description, so the `--help` text, the OpenAPI schema and docs/config.md (`make docs`). pydantic's
`use_attribute_docstrings=True` reads them the same way, but on Python < 3.13 it finds each class's source by
walking the interpreter's frames through `inspect` and re-reading the class block: ~2 ms a class, ~0.12 CPU-s
of the ~0.6 s every `tldrlab` command spent importing its ~70 config classes. Here each source file is parsed
once and the docstrings of all its classes are read from that one tree.

The schema of a config class is built when it is first used (`defer_build`), not when its module is imported:
a command builds only the classes it validates. The docstrings are set on the fields before that, when the
class is created, so the schema a class builds carries them as it would with pydantic's option.
"""

from __future__ import annotations

import ast
import functools
import inspect
import linecache
import sys
from typing import Any

from pydantic import BaseModel, ConfigDict


class ConfigModel(BaseModel):
    """A typed config: every field's docstring is its description (`field_docstrings`); the schema is built
    on first use. Subclasses add their own settings (`extra="forbid"`, `allow_inf_nan=False`, ...) in
    their `model_config`, which pydantic merges with this one."""

    model_config = ConfigDict(defer_build=True)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        docs = field_docstrings(cls)
        for name, info in cls.__pydantic_fields__.items():
            if info.description is None and name in docs:
                info.description = docs[name]


def field_docstrings(cls: type) -> dict[str, str]:
    """{field: docstring} of the annotated assignments in `cls`'s own body that a string literal follows
    (cleaned as `inspect.cleandoc` does, as pydantic's `use_attribute_docstrings` reads them); empty when
    its source cannot be found (a class made by `create_model`, or in an interactive session)."""
    frame = _defining_frame(cls)
    if frame is None:
        return {}
    lines = linecache.getlines(frame.f_code.co_filename, frame.f_globals)
    if not lines:
        return {}
    candidates = _class_docstrings("".join(lines)).get(cls.__name__, [])
    # the class statement being executed is the last of that name starting at or above the frame's line
    before = [docs for line, docs in candidates if line <= frame.f_lineno]
    return dict(before[-1]) if before else {}


def _defining_frame(cls: type) -> Any:
    """The frame executing `cls`'s class statement: the innermost one running in `cls`'s module."""
    module = sys.modules.get(cls.__module__)
    frame = inspect.currentframe()
    while frame is not None:
        if module is not None and frame.f_globals is module.__dict__:
            return frame
        frame = frame.f_back
    return None


@functools.lru_cache(maxsize=64)
def _class_docstrings(source: str) -> dict[str, list[tuple[int, dict[str, str]]]]:
    """{class name: [(first line, {field: docstring}), ...] in source order} for every class in `source`
    (parsed once per source text; a decorated class's first line is its first decorator's)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    found: dict[str, list[tuple[int, dict[str, str]]]] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        docs: dict[str, str] = {}
        previous: ast.stmt | None = None
        for statement in node.body:
            if (
                isinstance(statement, ast.Expr)
                and isinstance(statement.value, ast.Constant)
                and isinstance(statement.value.value, str)
                and isinstance(previous, ast.AnnAssign)
                and isinstance(previous.target, ast.Name)
            ):
                docs[previous.target.id] = inspect.cleandoc(statement.value.value)
            previous = statement
        first = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
        found.setdefault(node.name, []).append((first, docs))
    for classes in found.values():
        classes.sort(key=lambda item: item[0])
    return found


__all__ = ["ConfigModel", "field_docstrings"]
