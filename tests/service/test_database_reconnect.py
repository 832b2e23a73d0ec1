"""The API over PostgreSQL after the server dropped its connections (restarted, failed over, an
administrator's pg_terminate_backend): the next requests are served on a new connection."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from tldrlab.config import get_settings
from tldrlab.service.app import create_app


@pytest.fixture
def client(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("TLDRLAB_DATABASE_URL", postgres_url)
    get_settings.cache_clear()
    with TestClient(create_app()) as client:
        yield client


def drop_connections(url: str) -> int:
    """End every other session on the test's database, as a restarting server does (FATAL: terminating
    connection due to administrator command)."""
    with psycopg.connect(url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


def check_error(response: Any) -> None:
    """A failed request is a clear, retryable 503, never a 500."""
    body = response.json()
    assert response.status_code == 503 and body["code"] == "service_unavailable", response.text
    assert body["message"] and body["request_id"], body


def test_the_api_serves_again_once_postgresql_dropped_its_connections(
    client: TestClient, postgres_url: str
) -> None:
    # every later request was a 500 (psycopg's "the connection is closed") until the API was restarted; a
    # worker's heartbeats and claims failed the same way for good
    submitted = client.post("/runs", json={"kind": "smoke", "config": {"steps": 2}})
    assert submitted.status_code == 202, submitted.text
    run_id = submitted.json()["id"]
    post = {"id": "a", "text": "Serve lagers cold. Ales warmer."}
    assert client.post("/threads", json={"id": "t", "title": "T", "posts": [post]}).status_code == 201
    assert client.get("/threads/t/highlights").status_code == 200

    assert drop_connections(postgres_url) >= 1
    # reads are sent again on a new connection
    shown = client.get(f"/runs/{run_id}")
    assert shown.status_code == 200 and shown.json()["status"] == "queued", shown.text
    found = client.get("/threads/t/highlights")  # pgvector's types are known to the new connection
    assert found.status_code == 200, found.text
    assert {h["text"] for h in found.json()["highlights"]} == {"Serve lagers cold.", "Ales warmer."}

    assert drop_connections(postgres_url) >= 1
    # a write is not sent twice (it may have been done): refused as a 503, the next one served
    again = client.post("/runs", json={"kind": "smoke", "config": {"steps": 2}})
    if again.status_code != 202:
        check_error(again)
        again = client.post("/runs", json={"kind": "smoke", "config": {"steps": 2}})
    assert again.status_code == 202, again.text
    listed = client.get("/runs").json()["runs"]
    assert run_id in {r["id"] for r in listed} and again.json()["id"] in {r["id"] for r in listed}
    assert client.get("/readyz").status_code == 200


def test_the_digest_stream_tells_a_lost_database_as_the_api_does(
    client: TestClient, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # /stream_summary's `error` event carried the database error's whole message (psycopg's, which can name
    # the server's host, port, socket path and user) where the API's 503s and /readyz say a safe text
    post = {"id": "a", "text": "Serve lagers cold. Ales warmer."}
    assert client.post("/threads", json={"id": "t", "title": "T", "posts": [post]}).status_code == 201
    assert client.get("/threads/t").status_code == 200  # the digest's store and cache are open
    cache_db = client.app.state.digest.cache.db  # type: ignore[attr-defined]
    name = psycopg.conninfo.conninfo_to_dict(postgres_url)["dbname"]
    with psycopg.connect(postgres_url, dbname="postgres", autocommit=True) as admin:
        # the database takes no new connection and the cache's is ended, so the thread is found (the
        # store's connection lives) and the stream starts, then the cache cannot connect again
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        try:
            admin.execute("SELECT pg_terminate_backend(%s)", (cache_db.connection.info.backend_pid,))
            with caplog.at_level(logging.WARNING, logger="tldrlab.service"):
                answer = client.post("/stream_summary", json={"thread_id": "t"})
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    assert answer.status_code == 200, answer.text
    errors = [block for block in answer.text.split("\n\n") if block.startswith("event: error")]
    assert len(errors) == 1, answer.text
    error = json.loads(errors[0].split("data: ", 1)[1])
    assert error["code"] == "service_unavailable" and error["request_id"], error
    assert error["message"] == "cannot connect to PostgreSQL; try again (the server log says why)", error
    assert "port" not in answer.text and "socket" not in answer.text, answer.text
    assert "cannot connect to PostgreSQL: " in caplog.text, caplog.text  # the detail, for the operator
