"""Which model types the installed transformers builds as causal LMs, read from its source without importing
it: `causal_lm_model_types()` and `config_model_types()`.

Importing anything of transformers imports torch (its package `__init__`), 2-3 s and hundreds of MB; the
model-type check of a submit (`causal_lm.check_causal_lm_model`, in the API's process too) needs only two of
its tables, the keys of `MODEL_FOR_CAUSAL_LM_MAPPING_NAMES` (modeling_auto.py) and of `CONFIG_MAPPING_NAMES`
(configuration_auto.py, generated into auto_mappings.py in newer releases). Both are literal tables, built by
a few plain statements (`NAME = OrderedDict([...])`, `NAME.update({...})`, `NAME = OrderedDict(**{...},
**NAME)`): those are evaluated here from the files' syntax trees, located through the package's import spec
(which imports nothing). A statement on a table that is not one of those leaves the table unknown (None): the
caller then asks transformers itself, as before, rather than check against a table that may be wrong.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path

CAUSAL_LM_TABLE = "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES"
CONFIG_TABLE = "CONFIG_MAPPING_NAMES"

_SOURCES = ("auto_mappings.py", "configuration_auto.py", "modeling_auto.py")
"""The files under transformers/models/auto/ that build the tables, in the order they import each other."""


class _NotLiteral(Exception):
    """A statement on a table that is not one of the plain forms read here."""


def causal_lm_model_types() -> frozenset[str] | None:
    """The `model_type`s transformers' AutoModelForCausalLM builds, or None when its source does not say."""
    return _tables().get(CAUSAL_LM_TABLE)


def config_model_types() -> frozenset[str] | None:
    """The `model_type`s transformers has a config class of, or None when its source does not say."""
    return _tables().get(CONFIG_TABLE)


@functools.cache
def _tables() -> dict[str, frozenset[str] | None]:
    """Each table's keys (None: not found, or built by a statement not read here); read once a process."""
    directory = _auto_directory()
    tables: dict[str, dict[str, object]] = {}
    unreadable: set[str] = set()
    for name in _SOURCES:
        path = directory / name if directory is not None else None
        if path is None or not path.is_file():
            continue
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (OSError, SyntaxError, ValueError):
            return {}
        for statement in tree.body:
            for table in (CAUSAL_LM_TABLE, CONFIG_TABLE):
                if table in unreadable or not _mentions(statement, table):
                    continue
                try:
                    _apply(statement, table, tables)
                except _NotLiteral:
                    unreadable.add(table)
    return {
        table: None if table in unreadable or table not in tables else frozenset(tables[table])
        for table in (CAUSAL_LM_TABLE, CONFIG_TABLE)
    }


def _auto_directory() -> Path | None:
    """transformers/models/auto/ of the installed transformers, or None (not installed)."""
    try:
        spec = importlib.util.find_spec("transformers")  # a top-level name: found, not imported
    except (ImportError, ValueError):
        return None
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(location) / "models" / "auto"
        if candidate.is_dir():
            return candidate
    return None


_READS = frozenset({"keys", "values", "items", "get", "copy", "__contains__", "__getitem__"})
"""Methods of a table that leave it as it is."""


def _mentions(statement: ast.stmt, table: str) -> bool:
    return any(isinstance(node, ast.Name) and node.id == table for node in ast.walk(statement))


def _apply(statement: ast.stmt, table: str, tables: dict[str, dict[str, object]]) -> None:
    """Evaluate one top-level statement that names `table` into `tables`: an assignment of a literal table,
    an `update` with a literal; a statement that only reads it changes nothing. _NotLiteral for any other
    change of it (an item set or deleted, another method, a loop or condition that changes it)."""
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.ImportFrom):
        return  # a function reading the table at call time changes nothing at import; an import is read there
    if isinstance(statement, ast.Assign) and [_name(t) for t in statement.targets] == [table]:
        tables[table] = _table_value(statement.value, tables)
        return
    if (
        isinstance(statement, ast.Expr)
        and isinstance(call := statement.value, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "update"
        and _name(call.func.value) == table
        and table in tables
        and not call.keywords
    ):
        for argument in call.args:
            tables[table].update(_pairs(argument))
        return
    for node in ast.walk(statement):
        changed = (
            (isinstance(node, ast.Name) and node.id == table and not isinstance(node.ctx, ast.Load))
            or (
                isinstance(node, ast.Subscript)
                and _name(node.value) == table
                and not isinstance(node.ctx, ast.Load)
            )
            or (isinstance(node, ast.Attribute) and _name(node.value) == table and node.attr not in _READS)
        )
        if changed:
            raise _NotLiteral


def _table_value(node: ast.expr, tables: dict[str, dict[str, object]]) -> dict[str, object]:
    """`OrderedDict([...])`, `OrderedDict(**{...}, **TABLE)` or a literal dict, evaluated."""
    if not isinstance(node, ast.Call):
        return _pairs(node)
    if _name(node.func) not in ("OrderedDict", "dict"):
        raise _NotLiteral
    value: dict[str, object] = {}
    for argument in node.args:
        value.update(_pairs(argument))
    for keyword in node.keywords:
        if keyword.arg is not None:
            raise _NotLiteral
        known = _name(keyword.value)
        if known is not None:
            if known not in tables:
                raise _NotLiteral
            value.update(tables[known])
        else:
            value.update(_pairs(keyword.value))
    return value


def _pairs(node: ast.expr) -> dict[str, object]:
    """A literal dict, or a literal list of (key, value) pairs, as a dict."""
    try:
        literal = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise _NotLiteral from None
    try:
        return dict(literal)
    except (TypeError, ValueError):
        raise _NotLiteral from None


def _name(node: ast.expr) -> str | None:
    return node.id if isinstance(node, ast.Name) else None


__all__ = ["causal_lm_model_types", "config_model_types"]
