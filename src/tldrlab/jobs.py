"""Run kinds: what a queued run of each kind executes, shared by the CLI, the API and the workers.

RUN_KINDS maps a kind to `"module:function"`, imported only when a run of that kind executes (so the API
process never imports torch). Each function takes the `Run` handle, reads `run.config` and reports through
it; `execute(run_id)` wraps it in `tldrlab.runs.execute_run`, which records how the run ended.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from enum import StrEnum

from tldrlab.config import Settings
from tldrlab.errors import DependencyMissingError, InvalidInputError, RunCancelledError, TldrlabError
from tldrlab.runs import Run, RunRegistry, execute_run
from tldrlab.runs.atomic import atomic_write_text

RunFunction = Callable[[Run], object]

RUN_KINDS: dict[str, str] = {
    "train": "tldrlab.train.jobs:train_job",
    "tokenizer": "tldrlab.tokenizers.job:tokenizer_job",
    "evaluate": "tldrlab.service.inference_jobs:evaluate_job",
    "generate": "tldrlab.service.inference_jobs:generate_job",
    "score": "tldrlab.service.inference_jobs:score_job",
    "lvm_ingest": "tldrlab.lvm.ingest:lvm_ingest_job",
    "lvm_train": "tldrlab.lvm.training:lvm_train_job",
    "elm_train": "tldrlab.elm.train:elm_train_job",
    # A real tiny training (seconds on a CPU) that checks a worker deployment end to end.
    "smoke": "tldrlab.service.smoke:smoke_job",
}


class FailureClass(StrEnum):
    """How a failed run is treated by a worker."""

    USER_INPUT = "user_input"  # the request is wrong: retrying cannot help
    TRANSIENT = "transient"  # a backing service hiccup: retry with backoff, a bounded number of times
    FATAL = "fatal"  # a bug or a broken environment: do not retry
    CANCELLED = "cancelled"


def classify_failure(exc: BaseException) -> FailureClass:
    if isinstance(exc, RunCancelledError | KeyboardInterrupt):
        return FailureClass.CANCELLED
    if isinstance(exc, InvalidInputError):
        return FailureClass.USER_INPUT
    if isinstance(exc, TldrlabError) and exc.retryable:
        return FailureClass.TRANSIENT
    if isinstance(exc, ConnectionError | TimeoutError):
        return FailureClass.TRANSIENT
    return FailureClass.FATAL


def resolve_kind(kind: str) -> RunFunction:
    """The function running runs of `kind` (imported now)."""
    target = RUN_KINDS.get(kind)
    if target is None:
        raise InvalidInputError(f"unknown run kind {kind!r}; known kinds: {', '.join(sorted(RUN_KINDS))}")
    module_name, _, function_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise DependencyMissingError(
            f"run kind {kind!r} is not available here ({exc.name} is missing)"
        ) from exc
    function: RunFunction = getattr(module, function_name)
    return function


def execute(
    run_id: str,
    *,
    settings: Settings | None = None,
    registry: RunRegistry | None = None,
    worker: str | None = None,
) -> None:
    """Execute a registered run in this process; exceptions propagate after the run recorded them."""
    from tldrlab.runs import open_registry

    registry = registry or open_registry(settings)
    record = registry.get(run_id)
    with execute_run(record, settings=settings, registry=registry, worker=worker) as run:
        function = resolve_kind(record.kind)
        result = function(run)
        if result is not None:  # what the API returns for generate / score / evaluate requests
            path = run.artifacts_dir / "result.json"
            atomic_write_text(path, json.dumps(result, default=str, indent=2))
            run.add_artifact(path, kind="result")
