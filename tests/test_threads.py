"""Thread choice: from the CPUs the process may use (affinity, cgroup quota), shared, fitted to idle CPUs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import tldrlab.threads as threads_module
from cliutil import run_captured
from tldrlab.config import get_settings
from tldrlab.errors import ConfigError
from tldrlab.runs import open_registry, start_run
from tldrlab.threads import (
    SHARE_ENV,
    START_METHOD_ENV,
    THREAD_ENV_VARS,
    IdleCpuWatch,
    ThreadPlan,
    affinity_cpus,
    available_cpus,
    cgroup_cpu_limit,
    child_env,
    configure_threads,
    fit_threads_to_idle_cpus,
    idle_cpus,
    plan_for_share,
    plan_threads,
    worker_process_context,
)

BUSY_LOOP = (
    "import time\nend = time.time() + {seconds}\nprint('busy', flush=True)\nwhile time.time() < end: pass\n"
)


def start_busy_loops(count: int) -> list[subprocess.Popen[str]]:
    """`count` processes that each keep a CPU busy for up to 3 s; returns once every one is looping."""
    busy = [
        subprocess.Popen(
            [sys.executable, "-c", BUSY_LOOP.format(seconds=3)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(count)
    ]
    for proc in busy:
        assert proc.stdout is not None and proc.stdout.readline() == "busy\n"
    return busy


@pytest.fixture(autouse=True)
def restore_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test here may change the process's thread choice: put it back (environment, torch, state)."""
    saved_env = {
        name: os.environ.get(name) for name in (*THREAD_ENV_VARS, SHARE_ENV, "TLDRLAB_THREADS_EXPORTED")
    }
    saved_torch = torch.get_num_threads()
    saved_state = (threads_module._configured, threads_module._current)
    yield
    for name, value in saved_env.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    torch.set_num_threads(saved_torch)
    threads_module._configured, threads_module._current = saved_state
    get_settings.cache_clear()


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_smallest_on_the_path_wins(tmp_path: Path) -> None:
    proc = tmp_path / "proc_cgroup"
    write(proc, "0::/machine/job\n")
    root = tmp_path / "cg"
    write(root / "machine" / "job" / "cpu.max", "max 100000\n")
    assert cgroup_cpu_limit(root, proc) is None  # unlimited
    write(root / "machine" / "cpu.max", "150000 100000\n")  # a parent's quota applies to its children
    assert cgroup_cpu_limit(root, proc) == 1.5
    write(root / "machine" / "job" / "cpu.max", "50000 100000\n")
    assert cgroup_cpu_limit(root, proc) == 0.5


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    proc = tmp_path / "proc_cgroup"
    write(proc, "4:memory:/x\n3:cpu,cpuacct:/docker/abc\n")
    root = tmp_path / "cg"
    write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", "-1\n")
    write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(root, proc) is None  # -1: no quota
    write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", "300000\n")
    assert cgroup_cpu_limit(root, proc) == 3.0
    assert cgroup_cpu_limit(root, tmp_path / "missing") is None


def test_available_cpus_come_from_affinity_not_the_host_count() -> None:
    assert 1 <= available_cpus() <= len(affinity_cpus())
    # pinned to one CPU, a child process sees one CPU whatever the host has
    cpu = min(affinity_cpus())
    code = "from tldrlab.threads import available_cpus; print(available_cpus())"
    out = subprocess.run(
        ["taskset", "-c", str(cpu), sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(threads_module.__file__).parents[1])},
    )
    assert out.stdout.strip() == "1"


def test_sources_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("TLDRLAB_THREADS_EXPORTED", raising=False)
    assert plan_threads(2) == ThreadPlan(2, "--threads", available_cpus())
    monkeypatch.setenv("TLDRLAB_THREADS", "5")
    get_settings.cache_clear()
    assert plan_threads().threads == 5 and plan_threads().source == "TLDRLAB_THREADS"
    monkeypatch.delenv("TLDRLAB_THREADS")
    get_settings.cache_clear()
    assert plan_threads() == ThreadPlan(3, "OMP_NUM_THREADS", available_cpus())
    monkeypatch.delenv("OMP_NUM_THREADS")
    auto = plan_threads()
    assert auto.source == "auto" and auto.threads == available_cpus()
    assert plan_threads(share=available_cpus() * 4).threads == 1  # never below one thread
    with pytest.raises(ConfigError, match="at least 1"):
        plan_threads(0)
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")
    with pytest.raises(ConfigError, match="OMP_NUM_THREADS must be a positive integer"):
        plan_threads()


def test_applying_sets_the_libraries_threads_and_our_own_export_is_not_taken_for_the_users(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    plan = configure_threads(1)
    assert torch.get_num_threads() == 1
    assert all(os.environ[name] == "1" for name in THREAD_ENV_VARS)
    assert plan.source == "--threads"
    # a later automatic choice in this process ignores the OMP_NUM_THREADS tldrlab exported itself
    assert plan_threads().source == "auto"
    # children of an automatic choice choose again for their share; an explicit count is passed on
    configure_threads()
    env = child_env(2)
    assert env[SHARE_ENV] == "2" and "OMP_NUM_THREADS" not in env
    configure_threads(1)
    assert child_env(2)["TLDRLAB_THREADS"] == "1"


def test_a_parallel_share_divides_automatic_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    configure_threads()
    plan = plan_for_share(available_cpus())
    assert plan.threads == 1 and plan.share == available_cpus() and plan.idle_cpus is not None
    configure_threads(3)
    assert plan_for_share(2).threads == 3  # explicit counts hold per process


def test_worker_processes_are_spawned_unless_the_suite_asks_for_a_forkserver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(START_METHOD_ENV, raising=False)
    assert worker_process_context().get_start_method() == "spawn"
    monkeypatch.setenv(START_METHOD_ENV, "forkserver")
    assert worker_process_context().get_start_method() == "forkserver"
    monkeypatch.setenv(START_METHOD_ENV, "fork")  # would share the parent's state: never
    with pytest.raises(ConfigError, match="'spawn' or 'forkserver'"):
        worker_process_context()


def test_busy_cpus_are_not_counted_as_idle() -> None:
    n = len(affinity_cpus())
    busy = start_busy_loops(n + 1)
    try:
        idle = idle_cpus(0.3)
        plan = fit_threads_to_idle_cpus(ThreadPlan(n, "auto", n))
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    assert idle is not None and idle < 0.75
    assert plan.threads == 1 and plan.idle_cpus is not None and plan.idle_cpus < 0.75
    explicit = ThreadPlan(n, "--threads", n)
    assert fit_threads_to_idle_cpus(explicit) is explicit  # an explicit choice is never second-guessed


def test_a_running_choice_follows_other_work_arriving(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    n = len(affinity_cpus())
    configure_threads()
    threads_module.apply_threads(threads_module.ThreadPlan(n, "auto", n))  # as if started on a quiet machine
    watch = IdleCpuWatch(every_s=0.4)
    assert watch.poll() is None  # not due yet
    busy = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP.format(seconds=3)]) for _ in range(n + 1)]
    try:
        time.sleep(0.6)
        refitted = watch.poll()
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    if n > 1:
        assert refitted is not None and refitted.threads == 1 and torch.get_num_threads() == 1
    configure_threads(n)  # explicit: never changed
    watch = IdleCpuWatch(every_s=0.0)
    assert watch.poll() is None and torch.get_num_threads() == n


def test_the_run_manifest_records_the_choice(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("to be or not to be\n" * 50)
    code, _, err = run_captured(
        ["--threads", "1", "tokenizer", "train", "--method", "char", "--vocab-size", "40", str(corpus)],
        capsys,
    )
    assert code == 0, err
    (record,) = open_registry().list(kind="tokenizer")
    manifest = json.loads((Path(record.run_dir) / "manifest.json").read_text())
    assert manifest["threads"]["threads"] == 1 and manifest["threads"]["source"] == "--threads"
    assert manifest["threads"]["available_cpus"] == available_cpus()

    with start_run("ingest", {}) as run:  # in-process runs record the choice in effect too
        pass
    manifest = json.loads((run.dir / "manifest.json").read_text())
    assert manifest["threads"]["threads"] == torch.get_num_threads()


def test_bad_threads_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_captured(["--threads", "0", "runs", "list"], capsys)
    assert code == 2 and "--threads" in err


def test_a_thread_count_beyond_the_maximum_is_a_one_line_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--threads 99999999999999999999` was taken: torch.set_num_threads overflowed on it (a ValueError
    traceback once a run started), and a smaller huge count had OpenMP start that many threads."""
    for count in (str(2**64), "1025"):
        code, _, err = run_captured(["--threads", count, "runs", "list"], capsys)
        assert code == 2 and err.count("\n") == 1, err
        assert f"--threads must be at most 1024, got {count}" in err
    monkeypatch.setenv("TLDRLAB_THREADS", "5000")
    get_settings.cache_clear()
    code, _, err = run_captured(["runs", "list"], capsys)
    assert code == 2 and "TLDRLAB_THREADS must be at most 1024, got 5000" in err
    code, _, err = run_captured(["--threads", "1024", "runs", "list"], capsys)
    assert code == 0, err
