"""Range requests on GET /files/{sha256} and GET /artifacts/...: the header is parsed by tldrlab's own
`service.ranges` (it was checked with Starlette's private `FileResponse._parse_range_header`), by RFC 9110's
rules: a set of ranges is satisfiable when any range in it is, only ASCII digits are numbers, a stale
`If-Range` gets the whole file, errors are the API's JSON (400 malformed, 416 with `Content-Range`)."""

from __future__ import annotations

import hashlib
import os

import pytest
from fastapi.testclient import TestClient
from starlette.exceptions import HTTPException

from tldrlab.errors import InvalidInputError
from tldrlab.service.app import create_app
from tldrlab.service.ranges import parse_ranges

SIZE = 1000
Stored = tuple[TestClient, str, bytes]


@pytest.fixture
def stored(tldrlab_home: object) -> Stored:
    """A client and a 1000-byte file in the server's store (its sha256 and bytes)."""
    client = TestClient(create_app())
    blob = os.urandom(SIZE)
    answer = client.post("/files", content=blob, headers={"content-type": "application/octet-stream"})
    assert answer.status_code == 201, answer.text
    return client, hashlib.sha256(blob).hexdigest(), blob


def _get(stored: Stored, **headers: str) -> tuple[int, dict[str, str], bytes]:
    client, sha, _ = stored
    response = client.get(f"/files/{sha}", headers=headers)
    return response.status_code, dict(response.headers), response.content


def test_a_range_set_with_one_satisfiable_range_is_served_not_refused(
    stored: Stored,
) -> None:
    """`bytes=0-9,5000-` (the second past the end) was a 416: the range set is satisfiable (its first)."""
    blob = stored[2]
    for header in ("bytes=0-9,5000-", "bytes=5000-5999, 0-9", "bytes=0-4,5-9"):
        status, headers, content = _get(stored, Range=header)
        assert status == 206 and content == blob[:10], (header, status, content[:40])
        assert headers["content-range"] == f"bytes 0-9/{SIZE}" and headers["content-length"] == "10"
    status, headers, content = _get(stored, Range="bytes=0-9,5-14")  # overlapping: merged
    assert status == 206 and content == blob[:15] and headers["content-range"] == f"bytes 0-14/{SIZE}"


def test_numbers_in_a_range_are_ascii_digits_only(stored: Stored) -> None:
    """int() read `1_0`, `+5` and ` 5` as numbers, so `bytes=1_0-1_9` was served as bytes 10-19."""
    for header in ("bytes=1_0-1_9", "bytes=+5-9", "bytes=0-+9", "bytes=0x1-9", "bytes=0-" + "9" * 5000):
        client, sha, _ = stored
        response = client.get(f"/files/{sha}", headers={"Range": header})
        error = response.json()
        assert response.status_code == 400 and error["code"] == "invalid_input", (header, response.text[:200])
        assert header[:40] in error["message"] and error["request_id"], error


def test_the_ranges_served_and_refused(stored: Stored) -> None:
    blob = stored[2]
    status, headers, content = _get(stored)
    assert status == 200 and content == blob and headers["accept-ranges"] == "bytes"
    for header, part in (
        ("bytes=100-199", blob[100:200]),
        ("bytes=990-", blob[990:]),
        ("bytes=-10", blob[-10:]),
        ("bytes=-5000", blob),
        ("bytes=900-5000", blob[900:]),
        (" Bytes = 1-2 ", blob[1:3]),
    ):
        status, headers, content = _get(stored, Range=header)
        assert status == 206 and content == part, header
        assert headers["content-length"] == str(len(part)) and headers["etag"], header
        assert headers["content-type"] == "application/octet-stream", headers
    for header in ("bytes=1000-", "bytes=5000-5999", "bytes=-0"):
        client, sha, _ = stored
        response = client.get(f"/files/{sha}", headers={"Range": header})
        assert response.status_code == 416 and response.headers["content-range"] == f"bytes */{SIZE}", header
        assert (
            response.json()["code"] == "range_not_satisfiable"
            and f"{SIZE} bytes" in response.json()["message"]
        )
    for header in ("bytes=abc", "items=0-9", "bytes=50-10", "bytes=", "bytes=-", "bytes=,", "bytes=0-9,x"):
        status, _, content = _get(stored, Range=header)
        assert status == 400, header


def test_if_range_serves_the_part_only_of_the_copy_the_client_has(
    stored: Stored,
) -> None:
    blob = stored[2]
    _, whole, _ = _get(stored)
    for validator in (whole["etag"], whole["last-modified"]):
        status, _, content = _get(stored, Range="bytes=0-9", **{"If-Range": validator})
        assert status == 206 and content == blob[:10], validator
    for stale in ('"other"', "W/" + whole["etag"], "Mon, 01 Jan 2001 00:00:00 GMT"):
        # a stale copy: the whole file, whatever the range says (even a malformed one)
        for header in ("bytes=0-9", "bytes=abc"):
            status, headers, content = _get(stored, Range=header, **{"If-Range": stale})
            assert status == 200 and content == blob and headers["content-length"] == str(SIZE), stale


def test_separate_ranges_get_the_whole_file(stored: Stored) -> None:
    for header in ("bytes=0-9,100-109", "bytes=0-9,,100-109"):  # empty list elements are ignored
        status, headers, content = _get(stored, Range=header)
        assert status == 200 and content == stored[2] and "content-range" not in headers, header
    status, _, content = _get(stored, Range="bytes=0-9,")
    assert status == 206 and content == stored[2][:10]


def test_parse_ranges_on_an_empty_file_refuses_every_range() -> None:
    for header in ("bytes=0-", "bytes=-1", "bytes=0-0"):
        with pytest.raises(HTTPException) as caught:
            parse_ranges(header, 0)
        assert caught.value.status_code == 416 and caught.value.headers == {"Content-Range": "bytes */0"}
    with pytest.raises(InvalidInputError):
        parse_ranges("bytes=x-", 0)
    assert parse_ranges("bytes=2-,0-0", 10) == [(0, 1), (2, 10)]


def test_pages_static_files_and_docs_assets_answer_ranges_as_the_api_does() -> None:
    """The pages, their static files and the offline docs' assets went out as plain FileResponses: a bad or
    unsatisfiable Range got Starlette's plain-text 400 / 416, not the API's JSON error."""
    client = TestClient(create_app())
    paths = ["/", "/runs-page", "/static/digest.js", "/docs/assets/swagger-ui.css"]
    for path in paths:
        whole = client.get(path)
        assert whole.status_code == 200 and whole.headers["cache-control"], path
        part = client.get(path, headers={"Range": "bytes=0-9"})
        assert part.status_code == 206 and part.content == whole.content[:10], path
        assert part.headers["cache-control"] == whole.headers["cache-control"], path
        assert part.headers["content-type"] == whole.headers["content-type"], path
        bad = client.get(path, headers={"Range": "bytes=abc"})
        assert bad.status_code == 400 and bad.json()["code"] == "invalid_input", (path, bad.text[:80])
        past = client.get(path, headers={"Range": "bytes=99999999-"})
        assert past.status_code == 416 and past.json()["request_id"], (path, past.text[:80])
        assert past.headers["content-range"] == f"bytes */{len(whole.content)}", path
