"""How many CPU threads torch, OpenMP, MKL/BLAS, ONNX Runtime and tokenizers use: one choice per process.

torch's default (one OpenMP thread per core of the host) is catastrophic when the cores are not free: the
threads spin waiting for each other while descheduled, and a small model trains several times slower than on
one thread. So tldrlab chooses, in this order:

1. `--threads N` on the command line, else the `TLDRLAB_THREADS` setting (`N` is used as given);
2. `OMP_NUM_THREADS` from the environment, when the user set it;
3. otherwise (`auto`): the CPUs this process may actually use (its CPU affinity and its cgroup v2 / v1 CPU
   quota, never the host's count), divided by the processes that share them (`tldrlab serve --workers N`,
   `experiment --jobs N`), and, when a run starts, no more than the CPUs the rest of the machine leaves idle
   (sampled from /proc/stat over a tenth of a second): one thread at least.

`configure_threads()` runs in the CLI's root callback, before any command imports torch: it sets the
environment variables the libraries read when they load (OMP_NUM_THREADS, MKL_NUM_THREADS,
OPENBLAS_NUM_THREADS, RAYON_NUM_THREADS) and calls `torch.set_num_threads` if torch is already loaded.
`fit_threads_to_idle_cpus()` refines an automatic choice when a run starts; the run's manifest records the
choice (`threads` in manifest.json).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
import time
from dataclasses import asdict, dataclass, replace
from multiprocessing.context import ForkServerContext, SpawnContext
from pathlib import Path
from typing import Any, Literal

from tldrlab.config import get_settings
from tldrlab.errors import ConfigError

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS")
"""Read once by OpenMP, MKL, OpenBLAS and the tokenizers' Rayon pool when each library loads."""

MAX_THREADS = 1024
"""The most threads one process may ask for: torch's set_num_threads overflowed on a larger count (a
ValueError traceback when a run started) and OpenMP would start that many threads."""

SHARE_ENV = "TLDRLAB_THREAD_SHARE"
"""Set by a parent (serve, experiment --jobs) for its children: how many processes share the CPUs."""

_EXPORTED_ENV = "TLDRLAB_THREADS_EXPORTED"
"""The count tldrlab itself exported, so that its own OMP_NUM_THREADS is not mistaken for the user's."""

START_METHOD_ENV = "TLDRLAB_START_METHOD"
"""How worker processes start (`worker_process_context`); unset: spawn. Only the test suite sets it."""

ThreadSource = Literal["--threads", "TLDRLAB_THREADS", "OMP_NUM_THREADS", "auto"]


@dataclass(frozen=True)
class ThreadPlan:
    """The thread count chosen for this process, and why."""

    threads: int
    """Threads for torch intra-op work, OpenMP, BLAS, ONNX Runtime and tokenizers."""
    source: ThreadSource
    """Where the number came from."""
    available_cpus: int
    """CPUs this process may use: affinity, capped by the cgroup CPU quota."""
    share: int = 1
    """Processes sharing those CPUs (workers or parallel jobs); auto gives each available_cpus // share."""
    idle_cpus: float | None = None
    """CPUs the rest of the machine left idle when the run started (auto only; None: not sampled)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_configured: ThreadPlan | None = None
"""The plan chosen by `configure_threads` (before fitting to the idle CPUs)."""
_current: ThreadPlan | None = None
"""The plan applied last."""


def cgroup_cpu_limit(
    cgroup_root: Path = Path("/sys/fs/cgroup"), proc_cgroup: Path = Path("/proc/self/cgroup")
) -> float | None:
    """CPUs allowed by this process's cgroup CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us`), None if none.

    The quota of every ancestor cgroup applies too, so the smallest one on the path wins.
    """
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits: list[float] = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        relative = path.strip().lstrip("/")
        if controllers == "":  # cgroup v2 unified hierarchy
            for directory in _ancestors(cgroup_root, relative):
                limits += _v2_limit(directory / "cpu.max")
        elif "cpu" in controllers.split(","):
            for mount in (cgroup_root / controllers, cgroup_root / "cpu", cgroup_root / "cpu,cpuacct"):
                for directory in _ancestors(mount, relative):
                    limits += _v1_limit(directory)
    return min(limits) if limits else None


def _ancestors(root: Path, relative: str) -> list[Path]:
    """root/a/b/c, root/a/b, root/a, root: where a quota on the path may be set (only existing ones)."""
    parts = [p for p in relative.split("/") if p]
    found = [root.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]
    return [d for d in found if d.is_dir()]


def _v2_limit(path: Path) -> list[float]:
    try:
        quota, period = path.read_text().split()[:2]
    except (OSError, ValueError):
        return []
    if quota == "max":
        return []
    return [int(quota) / int(period)] if int(period) > 0 else []


def _v1_limit(directory: Path) -> list[float]:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return []
    return [quota / period] if quota > 0 and period > 0 else []


def affinity_cpus() -> set[int]:
    """The CPUs this process may run on (all of them where the OS cannot say)."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def available_cpus() -> int:
    """CPUs this process can actually use: its affinity, capped by the cgroup quota (rounded up), >= 1."""
    count = len(affinity_cpus())
    quota = cgroup_cpu_limit()
    if quota is not None:
        count = min(count, max(1, math.ceil(quota - 1e-9)))
    return max(1, count)


def _cpu_times(cpus: set[int]) -> tuple[float, float] | None:
    """(busy, total) jiffies summed over `cpus`, from /proc/stat (None where there is no /proc/stat)."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    busy = total = 0.0
    for line in lines:
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        values = [float(v) for v in rest.split()]
        idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
        total += sum(values[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
        busy += sum(values[:8]) - idle
    return (busy, total) if total > 0 else None


def idle_cpus(sample_s: float = 0.1) -> float | None:
    """CPUs (of this process's affinity) that other processes left idle over `sample_s` seconds."""
    cpus = affinity_cpus()
    before = _cpu_times(cpus)
    own_before = time.process_time()
    time.sleep(sample_s)
    after = _cpu_times(cpus)
    own = time.process_time() - own_before
    if before is None or after is None or after[1] <= before[1]:
        return None
    wall_ticks = (after[1] - before[1]) / len(cpus)  # ticks per CPU in the interval
    busy_cpus = (after[0] - before[0]) / wall_ticks
    others = max(0.0, busy_cpus - own / sample_s)
    return max(0.0, len(cpus) - others)


class IdleCpuWatch:
    """Keeps an automatic choice fitted while a run computes: `poll()` (cheap, called with each heartbeat)
    looks at the last `every_s` seconds of /proc/stat, subtracts this process's own CPU time, and re-fits
    the thread count to the CPUs the rest of the machine left idle, so a run started on a quiet machine
    drops to fewer threads when other work arrives (and takes them back when it leaves). Explicit choices
    are never changed."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self.cpus = affinity_cpus()
        self._mark = self._snapshot()

    def _snapshot(self) -> tuple[float, tuple[float, float] | None, float]:
        return time.monotonic(), _cpu_times(self.cpus), time.process_time()

    def poll(self) -> ThreadPlan | None:
        """The new plan when the thread count was changed, else None."""
        started, before, own_before = self._mark
        if time.monotonic() - started < self.every_s:
            return None
        self._mark = now = self._snapshot()
        base = _configured
        if base is None or base.source != "auto" or before is None or now[1] is None:
            return None
        ticks = (now[1][1] - before[1]) / len(self.cpus)
        if ticks <= 0:
            return None
        seconds = now[0] - started
        others = max(0.0, (now[1][0] - before[0]) / ticks - (now[2] - own_before) / seconds)
        idle = max(0.0, len(self.cpus) - others)
        threads = max(1, min(base.threads, math.floor(idle / max(1, base.share) + 0.5)))
        if _current is not None and threads == _current.threads:
            return None
        return apply_threads(replace(base, threads=threads, idle_cpus=round(idle, 2)))


def _positive_int(value: str | None, name: str) -> int | None:
    if value is None or not value.strip():
        return None
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return number


def _at_most_max(number: int, name: str) -> int:
    if number > MAX_THREADS:
        raise ConfigError(f"{name} must be at most {MAX_THREADS}, got {number}")
    return number


def plan_threads(requested: int | None = None, *, share: int | None = None) -> ThreadPlan:
    """Choose the thread count (see the module docstring); cheap: reads no load figures."""
    if requested is not None and requested < 1:
        raise ConfigError(f"--threads must be at least 1, got {requested}")
    if share is None:
        share = _positive_int(os.environ.get(SHARE_ENV), SHARE_ENV) or 1
    available = available_cpus()
    if requested is not None:
        return ThreadPlan(_at_most_max(requested, "--threads"), "--threads", available, share)
    setting = get_settings().threads
    if setting is not None:
        return ThreadPlan(_at_most_max(setting, "TLDRLAB_THREADS"), "TLDRLAB_THREADS", available, share)
    omp_env = os.environ.get("OMP_NUM_THREADS")
    ours = omp_env is not None and omp_env == os.environ.get(_EXPORTED_ENV)
    omp = None if ours else _positive_int(omp_env, "OMP_NUM_THREADS")
    if omp is not None:
        return ThreadPlan(omp, "OMP_NUM_THREADS", available, share)
    return ThreadPlan(max(1, available // max(1, share)), "auto", available, share)


def fit_threads_to_idle_cpus(plan: ThreadPlan, sample_s: float = 0.1) -> ThreadPlan:
    """An automatic plan capped by the CPUs the rest of the machine leaves idle now (other plans as given)."""
    if plan.source != "auto":
        return plan
    idle = idle_cpus(sample_s)
    if idle is None:
        return plan
    fitted = max(1, min(plan.threads, math.floor(idle / max(1, plan.share) + 0.5)))
    return replace(plan, threads=fitted, idle_cpus=round(idle, 2))


def apply_threads(plan: ThreadPlan) -> ThreadPlan:
    """Make `plan` this process's thread count: environment for libraries not loaded yet, torch if loaded."""
    global _current
    for name in THREAD_ENV_VARS:
        os.environ[name] = str(plan.threads)
    if plan.source == "OMP_NUM_THREADS":  # the user's own value, inherited as theirs by child processes
        os.environ.pop(_EXPORTED_ENV, None)
    else:
        os.environ[_EXPORTED_ENV] = str(plan.threads)
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != plan.threads:
        torch.set_num_threads(plan.threads)
    _current = plan
    return plan


def configure_threads(requested: int | None = None, *, share: int | None = None) -> ThreadPlan:
    """Choose and apply this process's thread count (the CLI calls this before any command runs)."""
    global _configured
    _configured = plan_threads(requested, share=share)
    return apply_threads(_configured)


def adopt_threads(plan: ThreadPlan | dict[str, Any]) -> ThreadPlan:
    """In a child process: take the plan its parent chose for it (`plan_for_share`) as this process's own."""
    global _configured
    _configured = plan if isinstance(plan, ThreadPlan) else ThreadPlan(**plan)
    return apply_threads(_configured)


def current_threads() -> ThreadPlan:
    """The plan in effect (configured now, automatically, when nothing configured one yet)."""
    return _current if _current is not None else configure_threads()


def threads_for_run() -> ThreadPlan:
    """At the start of a run: the configured plan, fitted to the CPUs idle right now when it is automatic."""
    if _configured is None:
        configure_threads()
    assert _configured is not None
    return apply_threads(fit_threads_to_idle_cpus(_configured))


def plan_for_share(share: int) -> ThreadPlan:
    """The plan for each of `share` processes about to run at once (parallel jobs): an automatic plan is
    divided between them and fitted to the idle CPUs; an explicit count holds for each process."""
    base = _configured if _configured is not None else plan_threads()
    if base.source != "auto":
        return replace(base, share=share)
    return fit_threads_to_idle_cpus(plan_threads(share=share))


def worker_process_context() -> SpawnContext | ForkServerContext:
    """How tldrlab starts the worker processes of one command (a parallel sweep's workers, an experiment's
    parallel seeds): spawned, each a fresh interpreter with its own torch threads and library globals that
    imports what it runs and receives its target and arguments pickled.

    With `TLDRLAB_START_METHOD=forkserver` (set only by the test suite, around the tests that start such
    workers) each worker is forked from a server process that has imported the heavy libraries once and run
    nothing else: the target and arguments still travel pickled and nothing is shared with the parent, but
    the workers do not each import torch and transformers again (6-7 CPU-s a worker on a small machine)."""
    method = os.environ.get(START_METHOD_ENV) or "spawn"
    if method == "spawn":
        return multiprocessing.get_context("spawn")
    if method == "forkserver":
        return multiprocessing.get_context("forkserver")
    raise ConfigError(f"{START_METHOD_ENV} must be 'spawn' or 'forkserver'; got {method!r}")


def child_env(share: int, env: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for `share` child processes started together: each chooses its threads for its share."""
    out = dict(os.environ if env is None else env)
    out[SHARE_ENV] = str(share)
    plan = current_threads()
    if plan.source == "auto":  # the children choose again for their share, from the same CPUs
        for name in (*THREAD_ENV_VARS, _EXPORTED_ENV):
            out.pop(name, None)
    elif plan.source == "--threads":  # an explicit count holds for every process
        out["TLDRLAB_THREADS"] = str(plan.threads)
    return out


__all__ = [
    "SHARE_ENV",
    "START_METHOD_ENV",
    "THREAD_ENV_VARS",
    "IdleCpuWatch",
    "ThreadPlan",
    "adopt_threads",
    "apply_threads",
    "available_cpus",
    "cgroup_cpu_limit",
    "child_env",
    "configure_threads",
    "current_threads",
    "fit_threads_to_idle_cpus",
    "idle_cpus",
    "plan_for_share",
    "plan_threads",
    "threads_for_run",
    "worker_process_context",
]
