"""The API with its PostgreSQL out of reach answers a 503 that says so without the server's database address
(host, socket path, user name): those are for the server log."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tldrlab.config import get_settings
from tldrlab.service.app import create_app


def test_an_unreachable_database_is_a_503_naming_no_server_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # psycopg's error went to the client as it was: 'connection to server on socket
    # "/var/run/db/.s.PGSQL.5432" failed' (or 'at "10.0.0.5", port 5432 ... for user "tldrlab"')
    socket_dir = tmp_path / "private-db-socket"
    monkeypatch.setenv("TLDRLAB_DATABASE_URL", f"postgresql://secretuser@/tldrlab?host={socket_dir}")
    get_settings.cache_clear()
    client = TestClient(create_app())
    with caplog.at_level(logging.WARNING, logger="tldrlab.service"):
        for response in (
            client.get("/runs"),
            client.get("/runs/some-run"),
            client.post("/runs", json={"kind": "smoke", "config": {}}),
            client.get("/threads"),
        ):
            body = response.json()
            assert response.status_code == 503 and body["code"] == "service_unavailable", response.text
            assert body["request_id"] and "PostgreSQL" in body["message"], body
            assert "private-db-socket" not in response.text and "secretuser" not in response.text, body
    # the operator still learns why, from the server log
    assert "private-db-socket" in caplog.text, caplog.text


def test_readiness_says_which_service_is_down_without_its_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GET /readyz answers without the API key (probes): its checks gave psycopg's error, the database's
    # socket path or host and user, to anyone who asked
    socket_dir = tmp_path / "private-db-socket"
    monkeypatch.setenv("TLDRLAB_DATABASE_URL", f"postgresql://secretuser@/tldrlab?host={socket_dir}")
    monkeypatch.setenv("TLDRLAB_API_KEY", "kV8q2Zr5Lm0xT3wY7bN4hJ6")
    get_settings.cache_clear()
    ready = TestClient(create_app()).get("/readyz")
    checks = ready.json()["checks"]
    assert ready.status_code == 503 and "PostgreSQL" in checks["database"], ready.text
    assert checks["lvm"] != "ok", checks
    assert "private-db-socket" not in ready.text and "secretuser" not in ready.text, ready.text
