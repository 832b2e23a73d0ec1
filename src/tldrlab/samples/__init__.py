"""Small attributed samples shipped with tldrlab, for demos and smoke tests (attribution in README.md).

Use: `read_threads(sample_path("beer_thread"))`, `read_records(sample_path("debian_pairs"))`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from tldrlab.errors import NotFoundError

SAMPLES: dict[str, tuple[str, str]] = {
    "beer_thread": (
        "beer_thread.json",
        "one beer.stackexchange.com thread (question + 4 answers, one accepted), native thread JSON",
    ),
    "beer_threads": (
        "beer_threads.json",
        "three beer.stackexchange.com threads (a list), native thread JSON",
    ),
    "debian_pairs": (
        "debian_pairs.jsonl",
        "six Debian package descriptions with their one-line synopses, pairs JSON lines",
    ),
}
"""Sample name -> (file inside this package, what it holds)."""


def sample_path(name: str) -> Path:
    """The file of a bundled sample (see SAMPLES for the names)."""
    if name not in SAMPLES:
        raise NotFoundError(f"unknown sample {name!r}; available: {', '.join(SAMPLES)}")
    path = Path(str(resources.files(__name__).joinpath(SAMPLES[name][0])))
    if not path.is_file():  # pragma: no cover - a broken install
        raise NotFoundError(f"sample {name!r} is missing from the installed package ({path})")
    return path


def list_samples() -> dict[str, str]:
    """Sample name -> description."""
    return {name: description for name, (_, description) in SAMPLES.items()}
