"""Sweeps: Weights & Biases sweep YAML run on Optuna, embedded (SQLite) or distributed (PostgreSQL).

- `spec`: the sweep file, parsed and validated (`load_sweep`).
- `mapping`: W&B methods / distributions / early_terminate -> Optuna samplers, suggestions, pruners.
- `storage`: SQLite / PostgreSQL study storage, heartbeats, dead-worker reconciliation.
- `trials`: one trial = one run (tldrlab.train, tldrlab.experiment or a command line).
- `command`: command-line trials (W&B macros, the JSON-lines metric protocol).
- `runner`: the study, the worker loop and worker processes (`run_sweep`).
- `report`: status table, best trial, CSV/JSON/PNG export.
"""

from pathlib import Path


def examples_dir() -> Path:
    """The example sweep files shipped in the package."""
    return Path(__file__).resolve().parent / "examples"
