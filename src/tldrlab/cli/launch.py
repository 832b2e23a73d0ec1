"""`launch(kind, config, resume=...)`: the generated commands' way into `tldrlab.launch.launch_run`.

`tldrlab.launch` owns the launch path shared with the API (validation, the kind's prepare step such as split
recording, the resume policy, SIGTERM -> checkpoint and preempt, distributed followers); before a run exists,
this adds the checks only a command line wants (the kind's `must_exist` inputs and its `check`), so a typo
does not leave a failed run behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tldrlab.errors import NotFoundError
from tldrlab.kinds import get_kind
from tldrlab.launch import is_follower, launch_run
from tldrlab.targets import load_target


def check(kind: str, config: Any) -> None:
    """The kind's command-line checks, before anything else happens (not on distributed followers)."""
    if is_follower():
        return
    spec = get_kind(kind)
    for name in spec.must_exist:
        if (path := getattr(config, name)) and not Path(path).exists():
            raise NotFoundError(f"{name} not found (no such file or directory): {path}")
    if spec.check:
        load_target(spec.check)(config)


def launch(kind: str, config: BaseModel | dict[str, Any], *, resume: str | None = None) -> tuple[str, Any]:
    """Run `config` as a new run of `kind`, or continue run `resume` with `config` holding the changes it
    may make (its kind's resume fields); returns (run id, the kind's result)."""
    if not resume:
        check(kind, config)
    launched = launch_run(kind, config, resume=resume)
    return launched.record.id, launched.result
