"""Where a prepared ELM data set keeps its parts on disk (`elm prepare` writes them, the trainings and
evaluations read them): names and path checks only, standard library only, so the command line can check an
output path against a layout without importing the preparation (which loads the embedder and numpy)."""

from __future__ import annotations

from pathlib import Path

from tldrlab.errors import InvalidInputError

SPLITS = ("train", "val", "test")
SYNTHESIS_DIR = "synthesis"
EMBEDDINGS_DIR = "embeddings"
MANIFEST = "elm_data.json"


def synthesis_path(data_dir: Path, split: str) -> Path:
    return data_dir / SYNTHESIS_DIR / f"{split}_synthesis.jsonl"


def embeddings_path(data_dir: Path, split: str) -> Path:
    return data_dir / EMBEDDINGS_DIR / f"{split}_embeddings.safetensors"


def has_layout(path: Path) -> bool:
    return (path / SYNTHESIS_DIR).is_dir() and (path / EMBEDDINGS_DIR).is_dir()


def holds_layout(path: Path) -> bool:
    """Whether `path` holds any part of a prepared layout (its manifest, or files under synthesis/ or
    embeddings/), which a new `prepare` into it would replace."""
    parts = (path / SYNTHESIS_DIR, path / EMBEDDINGS_DIR)
    return (path / MANIFEST).is_file() or any(p.is_dir() and any(p.iterdir()) for p in parts)


def refuse_layout_file(name: str, path: Path) -> None:
    """An output file `name` is never written over a part of a prepared layout (its manifest, a file under
    its synthesis/ or embeddings/): `elm generate --output DATA/synthesis/test_synthesis.jsonl` replaced the
    split with its predictions, and every later read of the data failed. InvalidInputError before anything
    is written."""
    resolved = path.resolve()
    if resolved.name == MANIFEST:
        layout = resolved.parent
    elif resolved.parent.name in (SYNTHESIS_DIR, EMBEDDINGS_DIR):
        layout = resolved.parent.parent
    else:
        return
    if holds_layout(layout):
        raise InvalidInputError(
            f"{name}: {path} is a file of the prepared ELM data in {layout}: write it somewhere else (it was "
            "left as it was)"
        )
