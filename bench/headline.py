"""What every benchmark shares with `bench/run_all.py`: a `--quick` mode and its headline lines.

    add_quick(parser, repeats=1, sentences=300)  # --quick: these defaults (explicit flags still win)
    headline("train tokens/s tldrlab / bare", 0.97, ">= 0.95")
    need_data(SHARED_DATA / "tinyshakespeare" / "input.txt")  # a one-line exit when it is not there

A quick run measures the same thing on less work, in seconds; its figures are noisier than the full runs the
docs quote. `headline` prints `headline: NAME = VALUE (target TARGET)`, the line run_all.py collects.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

PREFIX = "headline: "
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
"""The data sets the benches measure on: `../shared/data` beside the checkout (the product never needs it)."""


def add_quick(parser: argparse.ArgumentParser, **quick_defaults: Any) -> None:
    """Add `--quick`: the given defaults replace the full run's (flags given explicitly still win)."""
    parser.add_argument("--quick", action="store_true", help=f"a seconds-long run: {quick_defaults}")
    if "--quick" in sys.argv[1:]:
        parser.set_defaults(**quick_defaults)


def scratch_png(name: str) -> Path:
    """Where a quick run writes its plot: never over the docs' images."""
    return Path(tempfile.gettempdir()) / f"tldrlab-bench-{name}.png"


def headline(name: str, value: float, target: str) -> None:
    print(f"{PREFIX}{name} = {value:.4g} (target {target})", flush=True)


def need_data(*paths: Path) -> None:
    """Exit with one line naming what is missing when a data file the bench reads is not there (a checkout
    without ../shared/data beside it), instead of a traceback from deep inside a reader."""
    missing = [path for path in paths if not path.exists()]
    if missing:
        names = ", ".join(str(path) for path in missing)
        sys.exit(
            f"{Path(sys.argv[0]).name}: missing {names}: this bench reads the data sets in ../shared/data "
            "beside the checkout (its README.md lists them)"
        )
