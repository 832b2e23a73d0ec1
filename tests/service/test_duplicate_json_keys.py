"""A key given twice in one JSON object of a request body is refused (422 with code, message naming the key
and request_id), as a --config YAML file's is: `json` kept the last value silently, so `POST /runs` with two
`config` members ran the second and dropped the first."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tldrlab.runs import open_registry
from tldrlab.service.app import create_app


@pytest.fixture
def client(tldrlab_home: Path) -> TestClient:
    return TestClient(create_app())


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b'{"kind": "smoke", "config": {"steps": 1}, "config": {"steps": 2}}', "config"),
        (b'{"kind": "smoke", "config": {"steps": 1, "steps": 2}}', "steps"),
    ],
)
def test_a_key_given_twice_in_a_request_body_is_a_422_naming_it(
    client: TestClient, body: bytes, key: str
) -> None:
    headers = {"content-type": "application/json", "X-Request-ID": "req-dup"}
    response = client.post("/runs", content=body, headers=headers)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["request_id"] == "req-dup" and error["code"], error
    assert f"the key '{key}' is given twice" in error["message"], error
    assert open_registry().list() == []


def test_a_key_given_twice_in_a_body_read_by_its_route_is_a_422(client: TestClient) -> None:
    """`read_json_body` (a route reading its body itself) parses with the same rule."""
    response = client.post(
        "/stream_summary",
        content=b'{"thread_id": "a", "thread_id": "b"}',
        headers={"content-type": "application/json", "X-Request-ID": "req-dup2"},
    )
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["request_id"] == "req-dup2" and "the key 'thread_id' is given twice" in error["message"]


def test_the_same_key_in_two_objects_is_taken(client: TestClient) -> None:
    body = b'{"kind": "smoke", "config": {"steps": 1}, "tags": {"steps": "x"}}'
    response = client.post("/runs", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 202, response.text
