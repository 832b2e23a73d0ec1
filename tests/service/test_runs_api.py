"""The runs / tokenizers / artifacts API on a real app, registry and embedded queue (TestClient)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from svc_helpers import ServerThread, raw_get, record

from tldrlab.config import get_settings
from tldrlab.errors import ConfigError
from tldrlab.runs import RunStatus, create_run, open_registry, start_run
from tldrlab.service.app import create_app
from tldrlab.service.worker import WorkerConfig, build_worker

BURST = WorkerConfig(burst=True, heartbeat_s=0.1, poll_s=0.05)


@pytest.fixture
def client() -> TestClient:
    return TestClient(create_app())


def _work() -> None:
    build_worker(config=BURST).run()


def test_train_smoke_run_end_to_end(client: TestClient) -> None:
    created = client.post("/runs", json={"kind": "smoke", "config": {"steps": 6, "checkpoint_every": 3}})
    assert created.status_code == 202
    run_id = created.json()["id"]
    assert created.json()["status"] == "queued" and "run_dir" not in created.json()
    listed = client.get("/runs", params={"kind": "smoke"}).json()
    assert [r["id"] for r in listed["runs"]] == [run_id]
    _work()
    detail = client.get(f"/runs/{run_id}").json()
    assert detail["status"] == "completed" and detail["progress"] == pytest.approx(1.0)
    assert detail["message"].startswith("completed") and detail["heartbeat_age_s"] >= 0
    assert detail["last_metrics"]["step"] == 6 and {a["path"] for a in detail["artifacts"]} >= {
        "artifacts/weights.json"
    }
    logs = client.get(f"/runs/{run_id}/logs", params={"tail": 2}).json()["lines"]
    assert len(logs) == 2 and all("message" in line for line in logs)
    with client.stream("GET", f"/runs/{run_id}/logs/stream") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        body = stream.read().decode()
    events = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]
    assert [e["step"] for e in events if e["type"] == "progress"] == list(range(1, 7))
    # a replayed metrics line said the run's progress now: step 1 of 6 read 100 %
    lines = [e for e in events if e["type"] in ("progress", "eval")]
    assert [e["progress"] for e in lines] == [None] * (len(lines) - 1) + [pytest.approx(1.0)], lines
    assert events[-1]["type"] == "completed" and any(e["type"] == "checkpoint" for e in events)
    assert any(e["type"] == "log" for e in events)
    files = client.get(f"/artifacts/smoke/{run_id}").json()["files"]
    assert "artifacts/weights.json" in {f["path"] for f in files}
    weights = client.get(f"/artifacts/smoke/{run_id}/artifacts/weights.json")
    assert weights.status_code == 200 and len(weights.json()["weight"]) == 16
    past = client.get(f"/artifacts/smoke/{run_id}/artifacts/weights.json", headers={"Range": "bytes=99999-"})
    assert past.status_code == 416 and past.json()["code"] == "range_not_satisfiable"  # JSON, not plain text
    assert past.headers["content-range"] == f"bytes */{len(weights.content)}" and past.json()["request_id"]
    part = client.get(f"/artifacts/smoke/{run_id}/artifacts/weights.json", headers={"Range": "bytes=0-0"})
    assert part.status_code == 206 and part.content == weights.content[:1]
    assert client.get(f"/artifacts/train/{run_id}").status_code == 404  # wrong kind
    # the result as every front end shows it (a kind without a report of its own: its result's fields)
    report = client.get(f"/runs/{run_id}/report").json()
    assert report["run_id"] == run_id and report["kind"] == "smoke" and report["warnings"] == []
    assert f"run {run_id}" in report["markdown"] and "| final_loss |" in report["markdown"]


def test_cancel_queued_and_finished(client: TestClient) -> None:
    run_id = client.post("/runs", json={"kind": "smoke", "config": {"steps": 3}}).json()["id"]
    cancelled = client.post(f"/runs/{run_id}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    _work()  # the worker drops the cancelled job
    assert record(run_id).status == RunStatus.CANCELLED and record(run_id).attempts == 0
    again = client.post(f"/runs/{run_id}/cancel")
    assert again.status_code == 409 and again.json()["code"] == "conflict"


def test_errors_have_code_message_request_id(client: TestClient) -> None:
    missing = client.get("/runs/nope", headers={"X-Request-ID": "req-123"})
    assert missing.status_code == 404 and missing.headers["x-request-id"] == "req-123"
    assert missing.json() == {
        "code": "not_found",
        "message": "no run with id 'nope'",
        "request_id": "req-123",
    }
    unknown = client.post("/runs", json={"kind": "rm -rf", "config": {}})
    assert unknown.status_code == 422 and "unknown run kind" in unknown.json()["message"]
    assert unknown.json()["code"] == "unknown_kind" and "smoke" in unknown.json()["message"]
    # the kinds it offers are the ones a client may submit (GET /kinds); it offered `trial` and the other
    # children of runs, and submitting one was a 400 where every other well-formed but invalid body is a 422
    submittable = sorted(kind["name"] for kind in client.get("/kinds").json()["kinds"])
    assert unknown.json()["message"].endswith("choose one of " + ", ".join(submittable)), unknown.text
    for child in ("trial", "experiment_arm"):
        refused = client.post("/runs", json={"kind": child, "config": {}})
        assert refused.status_code == 422 and refused.json()["code"] == "unknown_kind", refused.text
        assert "started by their parent run" in refused.json()["message"], refused.text
    invalid = client.post("/runs/train", json={"cfg": {}})
    assert invalid.status_code == 422 and invalid.json()["code"] == "invalid_input"
    not_json = client.post("/runs", content=b"{nope", headers={"content-type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["request_id"]
    assert len(client.get("/healthz").headers["x-request-id"]) == 32  # generated when not sent
    # the listing's query parameters are RunQuery's fields: a bad value or an unknown name is a 422 naming it
    bogus = client.get("/runs", params={"status": "bogus"})
    assert bogus.status_code == 422 and bogus.json()["code"] == "invalid_input"
    assert "status" in bogus.json()["message"]
    typo = client.get("/runs", params={"stauts": "completed"})
    assert typo.status_code == 422 and "stauts" in typo.json()["message"]
    # a POST without a body answered a bare "Field required", naming nothing
    for path in ("/runs", "/runs/train", "/cleanup/prune", "/summarize"):
        bare = client.post(path)
        assert bare.status_code == 422 and bare.json()["code"] == "invalid_input", path
        assert bare.json()["message"].startswith("the request body is missing"), (path, bare.text)


@pytest.mark.parametrize(
    ("content_type", "body", "said"),
    [
        ("text/plain", b'{"kind": "smoke"}', "Content-Type: application/json (this request's is text/plain)"),
        (None, b'{"kind": "smoke"}', "Content-Type: application/json (this request has none)"),
        (
            "application/x-www-form-urlencoded",
            b"kind=smoke",
            "this request's is application/x-www-form-urlencoded",
        ),
        (
            "application/json",
            b"[]",
            "must be a JSON object (the route's fields, {} for defaults), not an array",
        ),
        (
            "application/json",
            b"null",
            "must be a JSON object (the route's fields, {} for defaults), not null",
        ),
        (
            "application/json",
            b'"smoke"',
            "must be a JSON object (the route's fields, {} for defaults), not a string",
        ),
        (
            "application/json",
            b"1e400",
            "must be a JSON object (the route's fields, {} for defaults), not a number",
        ),
    ],
    ids=["text-plain", "no-content-type", "form-encoded", "array", "null", "string", "number"],
)
def test_a_body_that_is_not_a_json_object_is_refused_saying_so(
    client: TestClient, content_type: str | None, body: bytes, said: str
) -> None:
    # every such body was a 422 "Input should be a valid dictionary or object to extract fields from": no
    # field, nothing of the body being an array, nor of the JSON sent as text/plain (or form-encoded, as
    # curl -d sends it) that the server never parsed
    headers = {"content-type": content_type} if content_type else {}
    for path in ("/runs", "/runs/train", "/runs/some-run/evaluate", "/tokenizers/train", "/cleanup/prune"):
        refused = client.post(path, content=body, headers=headers)
        error = refused.json()
        assert refused.status_code == 422 and error["code"] == "invalid_input", (path, refused.text)
        assert said in error["message"] and error["request_id"], (path, refused.text)
    assert client.get("/runs").json()["count"] == 0


def test_a_request_seed_cannot_differ_from_the_seed_the_run_uses(client: TestClient) -> None:
    # {"seed": 5} beside a config seeded with 0 was recorded as the manifest's seed while the run used 0; an
    # invalid body, so a 422 as every route answers one
    other = client.post("/runs", json={"kind": "smoke", "config": {"steps": 2}, "seed": 5})
    assert other.status_code == 422 and other.json()["code"] == "invalid_input", other.text
    assert "its config's seed is 0" in other.json()["message"]
    assert client.get("/runs").json()["runs"] == []  # nothing was created
    same = client.post("/runs", json={"kind": "smoke", "config": {"steps": 2, "seed": 5}, "seed": 5})
    assert same.status_code == 202, same.text
    assert json.loads((Path(record(same.json()["id"]).run_dir) / "manifest.json").read_text())["seed"] == 5


def test_a_request_seed_is_a_seed_a_config_could_hold(client: TestClient, tldrlab_home: Path) -> None:
    # the body's seed was a plain int: `true` was taken for 1, and -1 and 2**70 as they came, and recorded in
    # the manifest of a kind whose config has no seed (an evaluation); a config's seed is 0 to 2**32 - 1 and
    # never a boolean (tldrlab.numbers)
    (tldrlab_home / "data").mkdir(parents=True)
    (tldrlab_home / "data" / "corpus.txt").write_text("hello world\n" * 50)
    parent = create_run("train", {"model": "char_lstm", "data": {"path": "corpus.txt"}})
    open_registry().update(parent.id, status=RunStatus.COMPLETED)
    evaluation = {"kind": "evaluate", "config": {"model_run": parent.id}}
    for seed, said in (
        (True, "seed: expected a number, got the boolean true"),
        (False, "seed: expected a number, got the boolean false"),
        (-1, "seed: Input should be greater than or equal to 0"),
        (2**70, "seed: Input should be less than or equal to 4294967295"),
    ):
        for path, body in (
            ("/runs", {**evaluation, "seed": seed}),
            ("/runs/train", {"config": {}, "seed": seed}),
            ("/tokenizers/train", {"config": {}, "seed": seed}),
        ):
            refused = client.post(path, json=body)
            assert refused.status_code == 422 and refused.json()["code"] == "invalid_input", (
                path,
                refused.text,
            )
            assert refused.json()["message"] == said, (path, refused.text)
    assert [run["id"] for run in client.get("/runs").json()["runs"]] == [parent.id]  # nothing was created
    kept = client.post("/runs", json={**evaluation, "seed": 7})
    assert kept.status_code == 202, kept.text
    assert json.loads((Path(record(kept.json()["id"]).run_dir) / "manifest.json").read_text())["seed"] == 7


def test_child_requests_need_a_completed_training_run(client: TestClient, tldrlab_home: Path) -> None:
    smoke = client.post("/runs", json={"kind": "smoke", "config": {"steps": 2}}).json()["id"]
    # a run of a kind that saves no model, named by the path, is refused as `POST /runs` refuses it named in
    # `model_run`: a 422 invalid_config at `model_run` on each of the three routes (they answered a 409
    # conflict, as if the run were in a passing state, where `POST /runs` answered a 422 for the same run)
    bodies = {"generate": {"prompts": ["hi"]}, "score": {"text": "hi"}, "evaluate": {}}
    for action, config in bodies.items():
        wrong_kind = client.post(f"/runs/{smoke}/{action}", json={"config": config})
        assert wrong_kind.status_code == 422, (action, wrong_kind.text)
        answer = wrong_kind.json()
        assert answer["code"] == "invalid_config" and answer["errors"][0]["loc"] == ["model_run"], answer
        assert answer["message"].startswith(f"model_run: run {smoke} is a smoke run, not a training run")
        named = client.post("/runs", json={"kind": action, "config": {**config, "model_run": smoke}})
        assert named.status_code == 422, (action, named.text)
        assert {k: v for k, v in named.json().items() if k != "request_id"} == {
            k: v for k, v in answer.items() if k != "request_id"
        }
    data = tldrlab_home / "data"
    data.mkdir(parents=True)
    (data / "text.txt").write_text("To be, or not to be.\n")
    train = client.post(
        "/runs/train", json={"config": {"model": "char_lstm", "data": {"path": "text.txt"}}}
    ).json()
    assert train["kind"] == "train" and train["status"] == "queued"
    early = client.post(f"/runs/{train['id']}/evaluate", json={"config": {}})
    assert early.status_code == 409 and "completed training run" in early.json()["message"]
    assert client.get(f"/runs/{train['id']}/eval").status_code == 404
    assert client.get(f"/runs/{train['id']}/score/{smoke}").status_code == 404


def test_tokenizer_routes(client: TestClient, tldrlab_home: Path) -> None:
    (tldrlab_home / "data").mkdir(parents=True)
    (tldrlab_home / "data" / "corpus.txt").write_text("some words to learn\n")
    config = {"method": "bpe", "vocab_size": 300, "corpus": ["corpus.txt"]}
    created = client.post("/tokenizers/train", json={"config": config})
    assert created.status_code == 202 and created.json()["kind"] == "tokenizer"
    info = client.get(f"/tokenizers/{created.json()['id']}").json()
    assert info["status"] == "queued" and info["stats"] == {}
    early = client.get(f"/runs/{info['id']}/report")
    assert early.status_code == 409 and "queued" in early.json()["message"]
    _work()
    # the kind's own report, as `tldrlab tokenizer` prints it, with the server's paths rewritten
    report = client.get(f"/runs/{info['id']}/report").json()["markdown"]
    assert "| method | bpe |" in report and "corpus.txt" in report and str(tldrlab_home) not in report
    assert client.get("/runs/nope/report").status_code == 404
    smoke = client.post("/runs", json={"kind": "smoke", "config": {}}).json()["id"]
    assert client.get(f"/tokenizers/{smoke}").status_code == 404


def test_body_limit_and_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TLDRLAB_MAX_BODY_BYTES", "200")
    monkeypatch.setenv("TLDRLAB_API_KEY", "changeme")
    get_settings.cache_clear()
    with pytest.raises(ConfigError, match="placeholder"):
        create_app()
    key = "k-" + "7f3a9c1e5b2d4068" * 2
    monkeypatch.setenv("TLDRLAB_API_KEY", key)
    get_settings.cache_clear()
    client = TestClient(create_app())
    assert client.get("/healthz").status_code == 200
    denied = client.get("/runs")
    assert denied.status_code == 401 and denied.json()["code"] == "unauthorized"
    assert client.get("/runs", headers={"X-Api-Key": key[:-1] + "x"}).status_code == 401
    assert client.get("/runs", headers={"X-Api-Key": key}).status_code == 200
    big = client.post("/runs", headers={"X-Api-Key": key}, json={"kind": "smoke", "config": {"x": "y" * 500}})
    assert big.status_code == 413 and big.json()["code"] == "payload_too_large"


def test_a_failed_runs_logs_keep_the_traceback_on_the_server(client: TestClient) -> None:
    from tldrlab.runs import start_run

    with pytest.raises(ZeroDivisionError), start_run("toy", {}) as run:
        _ = 1 / 0
    assert "Traceback" in (run.dir / "log.jsonl").read_text()  # the run's own log file has it
    logs = client.get(f"/runs/{run.id}/logs")
    assert logs.status_code == 200 and logs.json()["lines"]
    assert "Traceback" not in logs.text and all("exception" not in line for line in logs.json()["lines"])


def _sse(body: str) -> list[tuple[str, dict[str, Any]]]:
    """(id, data) of every event of an SSE body; without the time of a lifecycle event (when it was derived,
    not when it happened: it differs between two streams)."""
    events = []
    for block in body.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if not line.startswith(":"))
        if "data" in fields:
            data = json.loads(fields["data"])
            if data["status"] is not None:
                del data["time"]
            events.append((fields["id"], data))
    return events


def test_an_event_history_gives_lifecycle_events_the_time_they_happened(client: TestClient) -> None:
    # a history read later stamped its lifecycle events with the time the stream read them: a run that
    # completed a while ago read as completing now
    done = client.post("/runs", json={"kind": "smoke", "config": {"steps": 2}}).json()["id"]
    _work()
    waiting = client.post("/runs", json={"kind": "smoke", "config": {"steps": 2}}).json()["id"]
    time.sleep(0.5)
    asked = time.time()
    finished = [
        json.loads(line[6:])
        for line in client.get(f"/runs/{done}/events").text.splitlines()
        if line.startswith("data: ")
    ]
    completed = [e for e in finished if e["type"] == "completed"]
    assert len(completed) == 1 and completed[0]["time"] == pytest.approx(record(done).ended_at, abs=1e-3)
    assert completed[0]["time"] < asked - 0.4
    with client.stream("GET", f"/runs/{waiting}/events") as stream:  # a queued run's stream stays open
        line = next(line for line in stream.iter_lines() if line.startswith("data: "))
    queued = json.loads(line[6:])
    assert queued["type"] == "queued" and queued["time"] == pytest.approx(
        record(waiting).created_at, abs=1e-3
    )


def test_a_reconnecting_event_stream_resumes_after_its_last_event_id(client: TestClient) -> None:
    # EventSource reconnects with Last-Event-ID; the stream ignored it and replayed the run from its first
    # event, so a reconnecting client received every event again
    run_id = client.post(
        "/runs", json={"kind": "smoke", "config": {"steps": 6, "checkpoint_every": 2}}
    ).json()["id"]
    _work()
    for path in (f"/runs/{run_id}/events", f"/runs/{run_id}/logs/stream"):
        whole = _sse(client.get(path).text)
        types = [event["type"] for _, event in whole]
        assert len({event_id for event_id, _ in whole}) == len(whole)  # ids are distinct
        assert "checkpoint" in types and "progress" in types and types[-1] == "completed"
        for cut in range(len(whole) - 1):  # dropped after each event in turn: the rest, exactly once
            resumed = client.get(path, headers={"Last-Event-ID": whole[cut][0]})
            assert resumed.status_code == 200
            assert _sse(resumed.text) == whole[cut + 1 :], (path, cut)
        # after the last event of a finished run: 204, which tells an EventSource to stop reconnecting
        done = client.get(path, headers={"Last-Event-ID": whole[-1][0]})
        assert done.status_code == 204 and done.text == ""
        # an id this server did not make (another server's, a garbled one) replays the whole history
        assert _sse(client.get(path, headers={"Last-Event-ID": "17"}).text) == whole


def test_a_garbled_last_event_id_replays_the_history() -> None:
    # the cursor was read with str.isdigit (true of "²") and lstrip("-") (which took "--1"), then int(),
    # which refuses those and 4301+ digits: a client's Last-Event-ID header was a 500 "internal error".
    # A real server: its HTTP parser hands the header's bytes on as sent (latin-1), as TestClient does not
    with start_run("smoke", {}) as run:
        run.log("a line of the run's log")
    path = f"/runs/{run.id}/logs/stream"
    garbled = [
        "0.0.-.--1",
        "0.0.-.-\u00b2",
        "\u00b2.0.-.0",
        "9" * 5000 + ".0.-.0",
        "0." + "9" * 5000 + ".-.0",
    ]
    with ServerThread(create_app()) as server:
        status, whole = raw_get(server.port, path)
        assert status == 200 and b"event: completed" in whole, whole[-300:]
        for last_event_id in garbled:
            # an id this server did not make: the whole history, as for any garbled id
            status, resumed = raw_get(server.port, path, headers={"Last-Event-ID": last_event_id})
            assert status == 200, (last_event_id[:20], resumed[:300])
            assert resumed == whole, last_event_id[:20]


def test_an_event_stream_dropped_mid_run_resumes_without_repeating_or_losing_events(
    client: TestClient,
) -> None:
    # live, the polls interleave log lines, metrics lines and status changes; a reconnection reads the rest in
    # one poll: the id must say where the stream stood, not count events
    config = {"steps": 8, "checkpoint_every": 2, "step_sleep_s": 0.15}
    run_id = client.post("/runs", json={"kind": "smoke", "config": config}).json()["id"]
    worker = threading.Thread(target=_work)
    worker.start()
    path, first = f"/runs/{run_id}/logs/stream?poll_s=0.05", ""
    with client.stream("GET", path) as stream:
        for line in stream.iter_lines():
            first += line + "\n"
            data = json.loads(line[6:]) if line.startswith("data: ") else {}
            if data.get("type") == "progress" and data["step"] == 3:
                break
    seen = _sse(first + "\n")
    rest = _sse(client.get(path, headers={"Last-Event-ID": seen[-1][0]}).text)
    worker.join(timeout=60)
    events = [event for _, event in seen + rest]
    assert [e["step"] for e in events if e["type"] == "progress"] == list(range(1, 9))
    assert [e["step"] for e in events if e["type"] == "checkpoint"] == [2, 4, 6, 8]
    assert [e["type"] for e in events if e["status"] and e["type"] != "queued"] == ["started", "completed"]
    replayed = [event for _, event in _sse(client.get(path).text)]
    assert [e["message"] for e in events if e["type"] == "log"] == [
        e["message"] for e in replayed if e["type"] == "log"
    ]


def test_an_evaluation_is_found_by_a_prefix_unique_among_the_runs_evaluations(client: TestClient) -> None:
    # GET /runs/{id}/eval?evaluation= took only a full evaluation id, where every other run reference (the
    # CLI's run arguments, ?parent_id=) takes a unique prefix
    from tldrlab.runs import start_run

    with start_run("train", {}, run_id="train-evalprefix") as parent:
        pass
    with start_run("train", {}, run_id="train-evalprefix-other") as other:
        pass
    for run_id, of in (("evaluate-px-a1", parent), ("evaluate-px-b2", parent), ("evaluate-px-a9", other)):
        with start_run("evaluate", {}, run_id=run_id, parent_id=of.id):
            pass

    def asked(evaluation: str) -> Any:
        return client.get(f"/runs/{parent.id}/eval", params={"evaluation": evaluation})

    # unique among this run's evaluations, though another run's evaluation starts so too
    for prefix, expected in (("evaluate-px-a", "evaluate-px-a1"), ("evaluate-px-b", "evaluate-px-b2")):
        found = asked(prefix)
        assert found.status_code == 200 and found.json()["request_id"] == expected, found.text
    assert asked("evaluate-px-a1").json()["request_id"] == "evaluate-px-a1"
    ambiguous = asked("evaluate-px-")
    body = ambiguous.json()
    assert ambiguous.status_code == 404 and body["code"] == "ambiguous_run_id", body
    assert "2 runs match" in body["message"] and body["request_id"], body
    another = asked("evaluate-px-a9")  # another run's evaluation is not this run's
    assert another.status_code == 404 and another.json()["code"] == "not_found", another.text
    assert "no evaluate request" in another.json()["message"]


def test_a_child_request_naming_another_model_run_is_refused_not_replaced(client: TestClient) -> None:
    # POST /runs/{id}/evaluate (generate, score) with {"model_run": <another run>} in its config replaced it
    # with the path's run without a word: a 202 for an evaluation of a model the client did not ask about
    with start_run("train", {}, run_id="train-childpath") as parent:
        pass
    with start_run("train", {}, run_id="train-childother") as other:
        pass
    bodies = {"evaluate": {}, "generate": {"prompts": ["hi"]}, "score": {}}
    for action, config in bodies.items():
        asked = {"config": {**config, "model_run": other.id}}
        refused = client.post(f"/runs/{parent.id}/{action}", json=asked)
        body = refused.json()
        assert refused.status_code == 422 and body["code"] == "invalid_config", (action, refused.text)
        assert body["errors"][0]["loc"] == ["model_run"] and body["request_id"], body
        assert body["message"] == (
            f"model_run: '{other.id}', but this route takes the model of run {parent.id} (the path's): "
            f"leave model_run out, or POST /runs/{{that run}}/{action}"
        )
    assert open_registry().list(parent_id=parent.id) == []  # nothing was created
    # the path's own run named again is what the route takes anyway
    same = {"prompts": ["hi"], "model_run": parent.id}
    taken = client.post(f"/runs/{parent.id}/generate", json={"config": same})
    assert taken.status_code == 202 and taken.json()["run_id"] == parent.id, taken.text


def test_a_blank_request_id_is_refused_naming_what_it_is(client: TestClient) -> None:
    # ?evaluation=%20 (and GET /runs/{id}/generate/%20, .../score/%20) answered 400 "the run id is empty:
    # give a run id", the registry's wording, where the blank is an evaluation's or request's id
    from tldrlab.runs import start_run

    with start_run("train", {}, run_id="train-blankreq") as parent:
        pass
    for url, what in (
        (f"/runs/{parent.id}/eval?evaluation=%20", "evaluate"),
        (f"/runs/{parent.id}/generate/%20", "generate"),
        (f"/runs/{parent.id}/score/%20", "score"),
    ):
        refused = client.get(url)
        body = refused.json()
        assert refused.status_code == 422 and body["code"] == "invalid_input", (url, refused.text)
        assert body["message"] == f"the {what} request id is empty: give one or a unique prefix of one", body


def test_a_request_of_a_run_id_holding_nul_is_a_404_on_postgresql(
    monkeypatch: pytest.MonkeyPatch, postgres_url: str
) -> None:
    # the request was looked up among the children of the run named in the path without that run being read
    # first: PostgreSQL's text cannot hold NUL, and comparing the parent id was a DataError, a 500
    monkeypatch.setenv("TLDRLAB_DATABASE_URL", postgres_url)
    get_settings.cache_clear()
    client = TestClient(create_app())
    with start_run("train", {}) as parent:
        pass
    for what in ("generate", "score"):
        for path in (f"/runs/{parent.id}%00/{what}/x", f"/runs/%00/{what}/{parent.id}"):
            missing = client.get(path)
            assert missing.status_code == 404 and missing.json()["code"] == "not_found", (path, missing.text)


@pytest.mark.parametrize("params", [{"kind": ""}, {"kind": " "}, {"parent_id": ""}, {"parent_id": " "}])
def test_a_blank_listing_filter_is_a_422_not_no_filter(client: TestClient, params: dict[str, str]) -> None:
    # GET /runs?kind= listed every run: a blank kind was read as no kind given
    from tldrlab.runs import start_run

    with start_run("smoke", {}, run_id="smoke-blankfilter"):
        pass
    refused = client.get("/runs", params=params)
    body = refused.json()
    assert refused.status_code == 422 and body["code"] == "invalid_input", refused.text
    (name,) = params
    assert f"{name}: is empty: give a value or leave the filter out" in body["message"], body


def test_an_event_history_is_in_time_order_and_resumes_from_any_event() -> None:
    """A history read in one poll gave every log line, then every metrics line: a finished run's replay
    showed its whole log before its first step. Merged by time, each event's id still resumes right after
    it (the events after, exactly once)."""
    from tldrlab.runs import create_run, open_registry
    from tldrlab.runs.atomic import append_jsonl
    from tldrlab.service.events import RunTail

    run = create_run("smoke", {})
    run_dir = Path(run.run_dir)
    start = 1_700_000_000.0
    for i, message in enumerate(["run started", "step 1 done", "checkpoint at 2", "step 3 done"]):
        append_jsonl(run_dir / "log.jsonl", {"ts": start + 2 * i, "level": "INFO", "message": message})
    for step in (1, 2, 3):
        append_jsonl(
            run_dir / "metrics.jsonl", {"step": step, "time": start + 2 * step - 1, "loss": 1 / step}
        )
    registry = open_registry()
    whole = RunTail(registry, run.id).poll_with_cursors()
    shown = [(e.type, e.message if e.type != "progress" else e.step) for e, _ in whole]
    assert shown == [
        ("log", "run started"),
        ("progress", 1),
        ("log", "step 1 done"),
        ("progress", 2),
        ("checkpoint", "checkpoint at 2"),
        ("progress", 3),
        ("log", "step 3 done"),
        ("queued", None),
    ], shown
    for cut, (_, cursor) in enumerate(whole):
        rest = RunTail(registry, run.id, cursor=cursor).poll()
        assert [e.model_dump() for e in rest] == [e.model_dump() for e, _ in whole[cut + 1 :]], cut


def test_an_event_stream_ends_when_its_run_is_deleted() -> None:
    # a run cancelled and deleted between two polls of its stream was read as "no new events" for good: the
    # stream sent keep-alives forever and the client never learnt the run was gone
    import httpx
    from svc_helpers import ServerThread

    with ServerThread(create_app()) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        run_id = http.post("/runs", json={"kind": "smoke", "config": {"steps": 2}}).json()["id"]
        lines: list[str] = []

        def follow() -> None:
            with http.stream("GET", f"/runs/{run_id}/events", params={"poll_s": 10}) as stream:
                for line in stream.iter_lines():
                    lines.append(line)

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        deadline = time.monotonic() + 30
        while "event: queued" not in lines and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "event: queued" in lines, lines
        # both before the stream's next poll, 10 s later
        assert http.post(f"/runs/{run_id}/cancel").json()["status"] == "cancelled"
        assert http.delete(f"/runs/{run_id}").status_code == 200
        reader.join(timeout=40)
        assert not reader.is_alive(), lines  # the stream ended
        assert "event: cancelled" not in lines, lines  # it ended because the run is gone, not on a status
        assert http.get(f"/runs/{run_id}/events").status_code == 404  # what a reconnecting client then gets


def test_a_run_that_ended_without_completing_is_not_promised_a_report(client: TestClient) -> None:
    # GET /runs/{id}/report of a failed or cancelled run said "it has a report once it completed", a report
    # that never comes; a queued or running run still gets that promise
    queued = client.post("/runs", json={"kind": "smoke", "config": {"steps": 2}}).json()["id"]
    early = client.get(f"/runs/{queued}/report").json()["message"]
    assert early == f"run {queued} is queued: it has a report once it completes"
    client.post(f"/runs/{queued}/cancel")
    answer = client.get(f"/runs/{queued}/report")
    assert answer.status_code == 409
    assert answer.json()["message"] == f"run {queued} was cancelled: only a completed run has a report"
