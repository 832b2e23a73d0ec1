"""Runs: every long piece of work is a run with a typed config in and a run directory out.

- `db`: one tiny SQL layer over SQLite and PostgreSQL (placeholders, migrations).
- `registry`: the table of runs (status, heartbeat, progress, message, metrics) behind `tldrlab runs`.
- `run`: creating runs and executing them (`start_run`, `execute_run`), manifest, metrics and artifacts.
- `atomic`: temp-file + fsync + rename writes, tolerant JSON-lines reads, sha256.
"""

from tldrlab.runs.registry import RunRecord, RunRegistry, RunStatus, open_registry
from tldrlab.runs.run import Run, create_run, execute_run, start_run

__all__ = [
    "Run",
    "RunRecord",
    "RunRegistry",
    "RunStatus",
    "create_run",
    "execute_run",
    "open_registry",
    "start_run",
]
