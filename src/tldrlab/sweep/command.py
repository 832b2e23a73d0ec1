"""Command-line trials: W&B's command macros, and the tiny protocol a program uses to report metrics.

Command (W&B's default is `${env} ${interpreter} ${program} ${args}`):
    ${env}                  /usr/bin/env
    ${interpreter}          this Python (sys.executable)
    ${program}              the sweep's `program`
    ${args}                 --name=value for every parameter
    ${args_no_hyphens}      name=value
    ${args_no_boolean_flags} --name=value, but booleans as a bare --name flag (true) or nothing (false)
    ${args_json}            the parameters as one JSON argument
    ${args_json_file}       path of a JSON file holding the parameters

Protocol (environment of the program):
    TLDRLAB_SWEEP_STUDY, TLDRLAB_SWEEP_TRIAL   study name and trial number
    TLDRLAB_RUN_DIR                            the trial's run directory (write anything there)
    TLDRLAB_SWEEP_METRICS                      a file the program may append JSON lines to
The program reports by printing JSON objects, one per line, on stdout (or appending them to
$TLDRLAB_SWEEP_METRICS), e.g. `{"step": 100, "eval_loss": 1.23}`. Every line that holds the sweep's metric
is one evaluation: it is reported to the pruner at iteration 1, 2, 3, ... and the last one is the trial's
value. Other lines go to the run's log. Exit 0 on success. A pruned trial gets SIGTERM (then SIGKILL after
KILL_AFTER_S) and is recorded as PRUNED.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from tldrlab.errors import InvalidInputError
from tldrlab.runs.run import Run
from tldrlab.sweep.spec import SweepSpec

DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]
METRICS_FILE = "sweep_metrics.jsonl"
KILL_AFTER_S = 5.0
STDERR_TAIL = 2000
CANCEL_CHECK_EVERY_S = 1.0
"""Seconds between looks at the trial run's cancel request while its program runs."""


def _arg(value: Any) -> str:
    return (
        value
        if isinstance(value, str)
        else json.dumps(value)
        if isinstance(value, list | dict)
        else str(value)
    )


def build_command(spec: SweepSpec, params: dict[str, Any], run_dir: Path) -> list[str]:
    """The argv of a trial with every macro expanded."""
    template = spec.command or DEFAULT_COMMAND
    argv: list[str] = []
    for part in template:
        if part == "${args}":
            argv += [f"--{k}={_arg(v)}" for k, v in params.items()]
        elif part == "${args_no_hyphens}":
            argv += [f"{k}={_arg(v)}" for k, v in params.items()]
        elif part == "${args_no_boolean_flags}":
            for k, v in params.items():
                if v is True:
                    argv.append(f"--{k}")
                elif v is not False:
                    argv.append(f"--{k}={_arg(v)}")
        elif part == "${args_json}":
            argv.append(json.dumps(params))
        elif part == "${args_json_file}":
            path = run_dir / "params.json"
            path.write_text(json.dumps(params, indent=2), encoding="utf-8")
            argv.append(str(path))
        else:
            expanded = (
                part.replace("${env}", "/usr/bin/env")
                .replace("${interpreter}", sys.executable)
                .replace("${program}", spec.program or "")
            )
            if "${" in expanded:
                raise InvalidInputError(
                    f"command: unknown macro in {part!r}; see docs/sweeps.md for the list"
                )
            if expanded:
                argv.append(expanded)
    if not argv:
        raise InvalidInputError("command: expands to nothing")
    return argv


def _step(record: dict[str, Any], default: int) -> int:
    step = record.get("step", default)
    return int(step) if isinstance(step, int | float) and not isinstance(step, bool) else default


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the program's process group, SIGKILL it if it lingers."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=KILL_AFTER_S)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class _Lines:
    """New JSON lines appended to the metrics file since the last read."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def read(self) -> list[str]:
        if not self.path.exists():
            return []
        with self.path.open("r", encoding="utf-8") as fh:
            fh.seek(self.offset)
            data = fh.read()
        complete = data[: data.rfind("\n") + 1]
        self.offset += len(complete.encode("utf-8"))
        return complete.splitlines()


def run_command(argv: list[str], run: Run, reporter: Any, *, study_name: str, trial_number: int) -> None:
    """Run a trial program to its end, feeding its metric lines to `reporter` (may raise TrialPruned)."""
    metrics_file = run.dir / METRICS_FILE
    env = {
        **os.environ,
        "TLDRLAB_SWEEP_STUDY": study_name,
        "TLDRLAB_SWEEP_TRIAL": str(trial_number),
        "TLDRLAB_RUN_DIR": str(run.dir),
        "TLDRLAB_SWEEP_METRICS": str(metrics_file),
        "PYTHONUNBUFFERED": "1",
    }
    run.log("starting the trial program", level=logging.DEBUG, argv=argv)
    stderr_path = run.dir / "stderr.log"
    try:
        with stderr_path.open("w", encoding="utf-8") as stderr:
            proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env, start_new_session=True
            )
    except OSError as exc:
        raise InvalidInputError(f"cannot start the trial program {argv[0]!r}: {exc}") from exc
    lines: queue.Queue[str | None] = queue.Queue()
    assert proc.stdout is not None
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    file_lines = _Lines(metrics_file)
    stdout_done = False
    started = time.monotonic()

    def handle(line: str) -> None:
        text = line.strip()
        record = None
        if text.startswith("{"):
            try:
                record = json.loads(text)
            except ValueError:
                record = None
        if not isinstance(record, dict):
            if text:
                run.log(f"program: {text}", level=logging.DEBUG)
            return
        values = {k: v for k, v in record.items() if k not in ("step", "time")}
        if reporter.metric in record:
            iteration = reporter.iterations + 1
            run.log_metrics(_step(record, iteration), **values)
            reporter.report(float(record[reporter.metric]), iteration)
        else:
            run.log_metrics(_step(record, reporter.iterations), **values)

    cancel_checked = started
    try:
        while True:
            # a cancelled trial (its sweep cancelled through the API) stops its program: the handler below
            # kills it; one registry read a second at most
            if time.monotonic() - cancel_checked >= CANCEL_CHECK_EVERY_S:
                cancel_checked = time.monotonic()
                run.check_cancelled()
            for line in file_lines.read():
                handle(line)
            if stdout_done:
                if proc.poll() is not None:
                    for line in file_lines.read():
                        handle(line)
                    break
                time.sleep(0.1)
                continue
            try:
                item = lines.get(timeout=0.2)
            except queue.Empty:
                run.heartbeat(message=None)
                continue
            if item is None:
                stdout_done = True
            else:
                handle(item)
    except BaseException:
        _stop(proc)
        raise
    code = proc.wait()
    run.log(
        "trial program ended",
        level=logging.DEBUG,
        exit_code=code,
        seconds=round(time.monotonic() - started, 2),
    )
    if code != 0:
        tail = stderr_path.read_text(encoding="utf-8", errors="replace")[-STDERR_TAIL:].strip()
        raise InvalidInputError(f"the trial program exited with code {code}" + (f": {tail}" if tail else ""))
