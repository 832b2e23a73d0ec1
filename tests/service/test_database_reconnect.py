"""The API over PostgreSQL after the server dropped its connections (restarted, failed over, an
administrator's pg_terminate_backend): the next requests are served on a new connection."""

from __future__ import annotations

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
