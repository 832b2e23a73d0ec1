"""Security: artifact downloads confined to the run directory (raw paths over a socket to a real uvicorn),
and secrets never written to any log or file."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import httpx
import pytest
from svc_helpers import ServerThread, raw_get

from tldrlab.config import get_settings
from tldrlab.runs import create_run
from tldrlab.service.app import create_app
from tldrlab.service.worker import WorkerConfig, build_worker

SECRET_TEXT = "TOP-SECRET-CONTENT-6c1f"


def _run_with_traps(home: Path) -> str:
    record = create_run("smoke", {"steps": 2})
    run_dir = Path(record.run_dir)
    (run_dir / "artifacts").mkdir()
    (run_dir / "artifacts" / "ok.txt").write_text("fine")
    outside = home / "secret.txt"
    outside.write_text(SECRET_TEXT)
    secret_dir = home / "secretdir"
    secret_dir.mkdir()
    (secret_dir / "secret.txt").write_text(SECRET_TEXT)
    os.symlink(outside, run_dir / "artifacts" / "link.txt")
    os.symlink(secret_dir, run_dir / "linkdir")
    return record.id


ATTACKS = [
    "../../../secret.txt",
    "../../secret.txt",
    "artifacts/../../../secret.txt",
    "%2e%2e/%2e%2e/%2e%2e/secret.txt",
    "%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.txt",
    "%2E%2E%2F%2E%2E%2F%2E%2E%2Fsecret.txt",
    "%252e%252e%252f%252e%252e%252f%252e%252e%252fsecret.txt",
    "%25252e%25252e%25252fsecret.txt",
    "/etc/passwd",
    "%2fetc%2fpasswd",
    "..%5c..%5c..%5csecret.txt",
    "..\\..\\..\\secret.txt",
    "artifacts%00/ok.txt",
    "artifacts/ok.txt%00.png",
    "artifacts/link.txt",
    "linkdir/secret.txt",
    "C:%5cWindows%5cwin.ini",
    "./artifacts/ok.txt",
    "artifacts//../../../secret.txt",
]


def test_artifact_paths_are_confined(tldrlab_home: Path) -> None:
    run_id = _run_with_traps(tldrlab_home)
    with ServerThread(create_app()) as server:
        status, body = raw_get(server.port, f"/artifacts/smoke/{run_id}/artifacts/ok.txt")
        assert status == 200 and body == b"fine"
        for attack in ATTACKS:
            status, body = raw_get(server.port, f"/artifacts/smoke/{run_id}/{attack}")
            assert status in (400, 404), (attack, status, body)
            assert SECRET_TEXT.encode() not in body and b"root:" not in body, attack
            payload = json.loads(body)
            assert set(payload) == {"code", "message", "request_id"}, attack
        for attack in ("..%2f..%2fsecret.txt", "../..", "%2e%2e"):  # the run id itself
            status, body = raw_get(server.port, f"/artifacts/smoke/{attack}/secret.txt")
            assert status in (400, 404) and SECRET_TEXT.encode() not in body, attack
        listing = httpx.get(f"{server.url}/artifacts/smoke/{run_id}").json()
        assert {f["path"] for f in listing["files"]} == {"artifacts/ok.txt", "manifest.json"}


def test_secrets_never_reach_logs(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tldrlab_home: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    key = "sk-" + "9d8c7b6a5f4e3d2c1b0a" * 2
    token = "discord-token-" + "ab12" * 8
    monkeypatch.setenv("TLDRLAB_API_KEY", key)
    monkeypatch.setenv("TLDRLAB_DISCORD_TOKEN", token)
    get_settings.cache_clear()
    caplog.set_level(logging.DEBUG)
    with ServerThread(create_app()) as server:
        headers = {"X-Api-Key": key}
        run = httpx.post(
            f"{server.url}/runs", headers=headers, json={"kind": "smoke", "config": {"steps": 3}}
        )
        assert run.status_code == 202
        assert httpx.get(f"{server.url}/runs", headers={"X-Api-Key": key + "x"}).status_code == 401
        assert httpx.get(f"{server.url}/runs/nope", headers=headers).status_code == 404
        build_worker(config=WorkerConfig(burst=True, heartbeat_s=0.1, poll_s=0.05)).run()
        done = httpx.get(f"{server.url}/runs/{run.json()['id']}", headers=headers).json()
        assert done["status"] == "completed"
    captured = capfd.readouterr()
    texts = [caplog.text, captured.out, captured.err]
    texts += [
        p.read_text(errors="replace") for p in tldrlab_home.rglob("*") if p.is_file() and p.suffix != ".pt"
    ]
    for text in texts:
        assert key not in text and token not in text
    assert any("smoke training started" in t for t in texts)  # the logs were really looked at
