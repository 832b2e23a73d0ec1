"""The layers contract in pyproject.toml (checked by `lint-imports` in `make lint`) names the areas that are
split across layers module by module; import-linter leaves a module it is not told about unchecked, so a new
module must be placed in a layer. This test fails until it is."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _layer_modules() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    layers = next(c for c in config["contracts"] if c["type"] == "layers")["layers"]
    return [name.strip() for layer in layers for name in re.split(r"[:|]", layer) if name.strip()]


def _package_modules() -> list[str]:
    src = ROOT / "src"
    names = []
    for path in sorted((src / "tldrlab").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def test_every_module_sits_in_a_layer() -> None:
    named = _layer_modules()
    unplaced = [
        module
        for module in _package_modules()
        # in a layer itself, or inside one; a package split across layers (its modules are named) counts too
        if not any(module == n or module.startswith(n + ".") or n.startswith(module + ".") for n in named)
    ]
    assert unplaced == [], f"add to a layer of [tool.importlinter] in pyproject.toml: {unplaced}"


def test_named_modules_exist() -> None:
    modules = set(_package_modules())
    missing = [n for n in _layer_modules() if n not in modules]
    assert missing == [], f"the layers contract names modules that do not exist: {missing}"


def test_test_modules_import_their_helpers_as_pytest_puts_them_on_the_path() -> None:
    """`from tests.tinylm import ...` works with `python -m pytest` from the repository root (the working
    directory is on sys.path) but not with `.venv/bin/pytest`, which `make test` runs: 4 test files failed to
    import from a clean clone. Helpers next to conftest.py are imported by their own name."""
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in sorted((ROOT / "tests").rglob("*.py"))
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if re.match(r"(from|import) tests[.\s]", line)  # module level (a subprocess script may set its path)
    ]
    assert not offenders, offenders
