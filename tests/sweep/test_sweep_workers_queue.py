"""A sweep's trials on the job queue, on both queues (embedded SQLite, Redis + RQ): a trial's retry waits out
the queue's backoff."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_runner import write_sweep

from tldrlab.config import get_settings
from tldrlab.kinds import KINDS
from tldrlab.runs import RunStatus, create_run, open_registry
from tldrlab.service.queue import open_queue
from tldrlab.service.worker import WorkerConfig, build_worker
from tldrlab.sweep.config import SweepConfig

QUEUES = ["sqlite", "rq"]
DRAIN = WorkerConfig(burst=True, heartbeat_s=0.2, poll_s=0.05, stale_after_s=1.0)
ATTEMPT_TIMES = "attempt_times.txt"
"""Where `flaky_trial_job` records when each attempt of a trial run began (and when its first one failed)."""


def _use_queue(kind: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    if kind == "rq":
        monkeypatch.setenv("TLDRLAB_QUEUE_URL", request.getfixturevalue("redis_url"))
        get_settings.cache_clear()


def _sweep(tmp_path: Path, steps: int) -> Path:
    parameters = {"x": {"min": 0.0, "max": 1.0}, "steps": {"value": steps}}
    return write_sweep(tmp_path / "s.yaml", parameters=parameters)


def flaky_trial_job(run: Any, config: Any) -> Any:
    """A sweep trial (kind `trial`) whose first attempt fails like a database hiccup (transient: retried),
    recording when each attempt began, and when the first one failed."""
    from tldrlab.errors import ServiceUnavailableError
    from tldrlab.sweep.trials import trial_job

    times = Path(run.dir) / ATTEMPT_TIMES
    with times.open("a") as out:
        out.write(f"{time.time()}\n")
    if run.record.attempts == 1:
        with times.open("a") as out:
            out.write(f"{time.time()}\n")
        raise ServiceUnavailableError("the study's database did not answer")
    return trial_job(run, config)


@pytest.mark.parametrize("queue_kind", QUEUES)
def test_a_trial_that_failed_transiently_is_retried_after_the_queues_backoff(
    queue_kind: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A trial executed by the sweep's own worker was handed to it again a fifth of a second after a
    transient failure, whatever the backoff the queue applies to any other run's retry."""
    _use_queue(queue_kind, monkeypatch, request)
    flaky = dataclasses.replace(KINDS["trial"], execute=f"{__name__}:flaky_trial_job")
    monkeypatch.setitem(KINDS, "trial", flaky)
    backoff_s = 1.5
    sweep = _sweep(tmp_path, steps=2)
    config = SweepConfig(sweep=yaml.safe_load(sweep.read_text()), source=str(sweep), trials=1, workers=1)
    sweep_run = create_run("sweep", config, study="toy")
    open_queue().enqueue(sweep_run.id)

    build_worker(config=DRAIN.model_copy(update={"backoff_base_s": backoff_s})).run()

    registry = open_registry()
    assert registry.get(sweep_run.id).status is RunStatus.COMPLETED, registry.get(sweep_run.id).message
    (trial,) = registry.list(kind="trial", limit=None)
    assert trial.status is RunStatus.COMPLETED and trial.attempts == 2, trial.message
    first_began, first_failed, second_began = (
        float(line) for line in (Path(trial.run_dir) / ATTEMPT_TIMES).read_text().split()
    )
    assert first_began <= first_failed
    assert second_began - first_failed >= backoff_s, f"retried after {second_began - first_failed:.2f}s"
