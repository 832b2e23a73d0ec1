"""`tldrlab serve` as a user starts it: a real process, real uvicorn, real sockets."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from svc_helpers import record, wait_for

from cliutil import run_captured
from netutil import free_port, start_serve, wait_for_port
from tldrlab.errors import InvalidConfigError
from tldrlab.kinds import validate_model
from tldrlab.runs import create_run, open_registry
from tldrlab.samples import sample_path
from tldrlab.service.queue import open_queue
from tldrlab.service.server import ServeConfig


def test_serve_on_a_busy_port_is_one_clear_error_before_anything_starts(tldrlab_home: Path) -> None:
    # it printed "tldrlab API on http://127.0.0.1:PORT", started its workers, and only then failed with
    # uvicorn's bind error (exit 3): the user was told a URL that served something else
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "tldrlab", "serve", "--port", str(port), "--workers", "1"],
            capture_output=True,
            text=True,
            timeout=120,
            env=dict(os.environ),
        )
    assert done.returncode == 4, done.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in done.stderr
    assert "tldrlab API on" not in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_serve_listens_where_it_says_and_stops_on_sigterm(tldrlab_home: Path, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = start_serve(port, out, 0)
        try:
            wait_for_port(port, timeout=60)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
                assert response.status == 200
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
    assert code == 0, log.read_text()
    assert f"tldrlab API on http://127.0.0.1:{port}" in log.read_text()


def test_a_worker_whose_output_is_a_log_file_writes_no_progress_bars_into_it(
    tldrlab_home: Path, tmp_path: Path
) -> None:
    # Bars were on by default in `serve` and `worker` as on a command line, so an ingest run (or the bundled
    # model's first-use conversion) drew its bars into the service's log. The same ingest on a command line
    # shows them (tests/digest/test_cli.py); a worker writing to a file logs no bar.
    run_id = create_run("ingest", {"path": str(sample_path("beer_thread"))}).id
    open_queue().enqueue(run_id)
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        done = subprocess.run(
            [sys.executable, "-m", "tldrlab", "worker", "--burst", "--poll-s", "0.1"],
            env=dict(os.environ),
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=120,
        )
    text = log.read_text(encoding="utf-8")
    assert done.returncode == 0, text
    assert open_registry().get(run_id).status.value == "completed", text  # it did the work that draws bars
    assert "━" not in text and "threads/s" not in text and "sentences/s" not in text, text


def test_an_empty_host_is_refused_not_every_interface(capsys: pytest.CaptureFixture[str]) -> None:
    """bind(("", port)) listens on every interface: `serve --host ""` served the API on all of them."""
    for host in ("", "  "):
        with pytest.raises(InvalidConfigError, match="host: is empty: give an address to listen on"):
            validate_model(ServeConfig, {"host": host}, what="serve options")
    code, _, err = run_captured(["serve", "--host", "", "--workers", "0"], capsys)  # refused before serving
    assert code == 2 and err.count("\n") == 1 and "host: is empty" in err, err


def _submit(port: int, config: dict[str, object]) -> str:
    body = json.dumps({"kind": "smoke", "config": config}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/runs", data=body, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(json.load(response)["id"])


@pytest.mark.slow
def test_a_local_worker_killed_mid_run_is_started_again(tldrlab_home: Path, tmp_path: Path) -> None:
    # `serve --workers 1` whose worker died (the OOM killer, a kill -9) kept serving with no worker: the
    # run it held read `running` for good and every run submitted after it stayed `queued`
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = start_serve(port, out, 1)
        try:
            wait_for_port(port, timeout=60)
            first = _submit(port, {"steps": 200, "step_sleep_s": 0.2, "checkpoint_every": 5})
            running = wait_for(
                lambda: (r := record(first)).status.value == "running" and (r.progress or 0) > 0 and r,
                timeout=120,
                what="the first run to train",
            )
            killed = int(str(running.worker).split(":")[1])
            os.kill(killed, signal.SIGKILL)
            second = _submit(port, {"steps": 2})
            wait_for(
                lambda: record(second).status.value == "completed",
                timeout=90,
                what="the run submitted after the kill to complete",
            )
            replacement = int(str(record(second).worker).split(":")[1])
            assert replacement != killed
            text = log.read_text()
            assert f"local worker (pid {killed}) was killed by SIGKILL after" in text, text
            assert "; starting another now" in text, text
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=90)
    assert code == 0, log.read_text()
    with pytest.raises(ProcessLookupError):  # stopped with `serve`, as the first one would have been
        os.kill(replacement, 0)


def test_a_worker_that_exits_at_once_is_started_again_ever_later_not_in_a_loop() -> None:
    # a setup the worker cannot run in (a queue that refuses it) must not fork a process every poll
    from tldrlab.service.server import LocalWorkers

    said = io.StringIO()
    workers = LocalWorkers(
        1, argv=[sys.executable, "-c", "raise SystemExit(3)"], poll_s=0.02, stderr=said
    ).start()
    try:
        wait_for(lambda: said.getvalue().count("exited with code 3") >= 3, timeout=60, what="three exits")
    finally:
        workers.stop(timeout_s=10)
    delays = re.findall(r"exited with code 3 after \d+ s; starting another (now|in \d+ s)", said.getvalue())
    assert delays[:3] == ["now", "in 1 s", "in 2 s"], said.getvalue()


@pytest.mark.slow
def test_serve_stops_while_a_client_follows_a_running_run(tldrlab_home: Path, tmp_path: Path) -> None:
    # uvicorn waited for every open response before returning, a run's event stream lasts until the run
    # ends, and the run's worker got its SIGTERM only once uvicorn returned: `serve` stopped refusing
    # connections but never exited while anyone (the runs page) followed a running run
    import threading

    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = start_serve(port, out, 1, new_session=True)
        try:
            wait_for_port(port, timeout=60)
            run_id = _submit(port, {"steps": 2000, "step_sleep_s": 0.2, "checkpoint_every": 5})
            wait_for(lambda: (record(run_id).progress or 0) > 0, timeout=120, what="the run to train")
            lines: list[bytes] = []

            def follow() -> None:
                url = f"http://127.0.0.1:{port}/runs/{run_id}/events"
                with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=120) as stream:
                    lines.extend(stream)

            reader = threading.Thread(target=follow, daemon=True)
            reader.start()
            wait_for(lambda: any(line.startswith(b"event: progress") for line in lines), timeout=30)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=45)
            reader.join(timeout=10)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
    assert code == 0, log.read_text()
    assert not reader.is_alive()  # the stream ended; an EventSource reconnects to the next server
    # the worker was stopped as `serve` stops: its run checkpointed and went back on the queue
    assert record(run_id).status.value == "queued", record(run_id)


def test_an_upload_over_the_server_s_file_size_limit_is_507_naming_the_cause(
    tldrlab_home: Path, tmp_path: Path
) -> None:
    # a server under `ulimit -f` (or storing onto a file system's largest-file limit): the upload's write
    # failed with "OSError: [Errno 27] File too large", answered 500 "internal error"
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))

    port = free_port()
    log = tmp_path / "serve.log"
    command = [sys.executable, "-m", "tldrlab", "serve", "--port", str(port), "--workers", "0"]
    body = "".join(f'{{"text": "line {i} {os.urandom(8).hex()}"}}\n' for i in range(20000)).encode()
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, preexec_fn=limit)
        try:
            wait_for_port(port, timeout=60)
            upload = urllib.request.Request(
                f"http://127.0.0.1:{port}/datasets?name=big.jsonl", data=body, method="POST"
            )
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(upload, timeout=60)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    assert refused.value.code == 507, log.read_text()
    answer = json.loads(refused.value.read())
    assert answer["code"] == "file_too_large" and "file too large" in answer["message"], answer
    assert str(tldrlab_home) not in answer["message"]  # the operator's log has the path, not the client
    assert "a write was refused: file too large" in log.read_text()
    assert list((tldrlab_home / "datasets" / ".incoming").iterdir()) == []  # nothing partly stored is kept
