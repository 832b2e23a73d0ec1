"""Every 422 `invalid_config` lists `errors: [{loc, msg}]`, `loc` the refused field's path (list indexes as
strings, as pydantic's validation errors give them) and the message naming it dotted: what a client (the runs
page's form) points at. Only pydantic's own refusals carried `errors`; path confinement, dataset and run
references, a run that names no data to evaluate on, generation limits, a sweep's arm and seed, the summarize
route and a kind's check of what its inputs hold answered a message alone. One submission per kind of
refusal, through the real app and registry."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tldrlab.errors import InvalidConfigError
from tldrlab.runs import create_run, open_registry
from tldrlab.runs.registry import RunStatus
from tldrlab.samples import sample_path
from tldrlab.service.app import create_app


@dataclass
class World:
    """What the refused requests name: the data root, a completed training run whose config names no data (and
    another training run, so that `train-` is an ambiguous prefix), a smoke run, an uploaded data set whose
    files are gone, an ingested thread."""

    home: Path
    no_data_run: str
    smoke_run: str
    gone_dataset: str
    thread: str


@pytest.fixture
def client(tldrlab_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("TLDRLAB_MAX_GENERATE_TOKENS", "256")
    for name in ("TLDRLAB_OPENAI_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with TestClient(create_app()) as test_client:
        yield test_client


@pytest.fixture
def world(client: TestClient, tldrlab_home: Path) -> World:
    root = tldrlab_home / "data"
    (root / "no-model").mkdir(parents=True)
    (root / "no-model" / "notes.txt").write_text("not a model\n")
    (root / "text.txt").write_text("To be, or not to be, that is the question.\n" * 20)
    no_data = create_run("train", {})  # a training run recorded without a data section
    open_registry().update(no_data.id, status=RunStatus.COMPLETED)
    create_run("train", {})
    smoke = create_run("smoke", {"steps": 2})
    uploaded = client.post("/datasets", params={"name": "gone.txt"}, content=b"some text\n" * 20)
    assert uploaded.status_code == 201, uploaded.text
    for stored in (tldrlab_home / "datasets").rglob("gone.txt"):
        stored.unlink()
    thread = json.loads(sample_path("beer_thread").read_text(encoding="utf-8"))
    created = client.post("/threads", json=thread)
    assert created.status_code == 201, created.text
    return World(tldrlab_home, no_data.id, smoke.id, uploaded.json()["id"], thread["id"])


def _run(kind: str, config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "/runs", {"kind": kind, "config": config}


def _sweep(program: str, metric: str, config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    sweep = {
        "program": program,
        "method": "grid",
        "metric": {"name": metric, "goal": "minimize"},
        "parameters": {"train.lr": {"values": [1e-3]}},
        "config": config,
    }
    return _run("sweep", {"sweep": sweep})


def _stream(w: World, summarizer: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "/stream_summary", {"thread_id": w.thread, "summarizer": summarizer, "params": params}


Request = Callable[[World], tuple[str, dict[str, Any]]]

# (what is refused, the request, the field's loc)
REFUSALS: list[tuple[str, Request, list[str]]] = [
    (
        "input path not in the data roots",
        lambda w: _run("train", {"data": {"path": "gone.txt"}}),
        ["data", "path"],
    ),
    (
        "input path in a list",
        lambda w: _run("tokenizer", {"corpus": ["text.txt", "gone.txt"]}),
        ["corpus", "1"],
    ),
    ("NUL in an input path", lambda w: _run("train", {"data": {"path": "te\x00xt.txt"}}), ["data", "path"]),
    (
        "NUL in an output path",
        lambda w: _run("tokenizer", {"corpus": "text.txt", "out_dir": "a\x00b"}),
        ["out_dir"],
    ),
    ("unknown dataset", lambda w: _run("train", {"data": {"path": "dataset:ds-nope"}}), ["data", "path"]),
    (
        "a data set whose files are gone",
        lambda w: _run("train", {"data": {"path": f"dataset:{w.gone_dataset}"}}),
        ["data", "path"],
    ),
    ("unknown run", lambda w: _run("train", {"data": {"path": "run:nope/x.txt"}}), ["data", "path"]),
    (
        "a run's missing file",
        lambda w: _run("train", {"data": {"path": f"run:{w.smoke_run}/gone.txt"}}),
        ["data", "path"],
    ),
    (
        "absolute path in the read roots, missing",
        lambda w: _run("train", {"data": {"path": str(w.home / "data" / "gone.txt")}}),
        ["data", "path"],
    ),
    (
        "unknown model",
        lambda w: _run("evaluate", {"model_run": "no-such-model", "data": "text.txt"}),
        ["model_run"],
    ),
    (
        "an ambiguous run prefix",
        lambda w: _run("evaluate", {"model_run": "train-", "data": "text.txt"}),
        ["model_run"],
    ),
    ("a directory holding no model", lambda w: _run("evaluate", {"model_run": "no-model/"}), ["model_run"]),
    (
        "generation past the server's limit",
        lambda w: _run(
            "generate",
            {"model_run": w.no_data_run, "dataset": "text.txt", "options": {"max_new_tokens": 300}},
        ),
        ["options", "max_new_tokens"],
    ),
    (
        "a split the data lacks",
        lambda w: _run("train", {"data": {"path": "text.txt", "val_split": "validation"}}),
        ["data", "val_split"],
    ),
    ("a model no run made, no data", lambda w: _run("evaluate", {"model_run": "smollm2"}), ["data"]),
    (
        "a run that names no data to evaluate on",
        lambda w: (f"/runs/{w.no_data_run}/evaluate", {"config": {}}),
        ["data"],
    ),
    (
        "an experiment sweep's arm",
        lambda w: _sweep("tldrlab.experiment", "val_loss", {"arm": "pai"}),
        ["sweep", "config", "arm"],
    ),
    (
        "an experiment sweep's seed",
        lambda w: _sweep("tldrlab.experiment", "val_loss", {"seed": "one"}),
        ["sweep", "config", "seed"],
    ),
    (
        "a sweep program's path",
        lambda w: _sweep("tldrlab.train", "eval_loss", {"data": {"path": "gone.txt"}}),
        ["sweep", "config", "data", "path"],
    ),
    ("summarize: unknown alias", lambda w: ("/summarize", {"document": "x", "alias": "nope"}), ["alias"]),
    ("summarize: no default model", lambda w: ("/summarize", {"document": "x"}), ["model"]),
    (
        "summarize: past the server's limit",
        lambda w: ("/summarize", {"document": "x", "max_new_tokens": 300}),
        ["max_new_tokens"],
    ),
    (
        "summarizer params: a length",
        lambda w: _stream(w, "local", {"max_new_tokens": 0}),
        ["params", "max_new_tokens"],
    ),
    (
        "summarizer params: a nested length",
        lambda w: _stream(w, "two_stage", {"final_params": {"max_new_tokens": 0}}),
        ["params", "final_params", "max_new_tokens"],
    ),
    ("summarizer params: a blank model", lambda w: _stream(w, "local", {"model": " "}), ["params", "model"]),
    (
        "summarizer params: a model that is no string",
        lambda w: _stream(w, "local", {"model": 3}),
        ["params", "model"],
    ),
]


def test_a_refused_field_is_listed_in_errors_at_its_path(client: TestClient, world: World) -> None:
    # one app and registry for every case (a case refuses, so it changes neither): set up per case, they took
    # most of the time
    before = len(open_registry().list())
    for what, request_of, loc in REFUSALS:
        path, body = request_of(world)
        response = client.post(path, json=body)
        assert response.status_code == 422, (what, response.text)
        answer = response.json()
        assert answer["code"] == "invalid_config", (what, answer)
        assert answer["errors"][0]["loc"] == loc, (what, answer)
        # the message names the field as `loc` does, in the words of its `errors` entry
        assert answer["message"] == f"{'.'.join(loc)}: {answer['errors'][0]['msg']}", (what, answer)
        assert str(world.home) not in response.text, what
        assert len(open_registry().list()) == before, what  # nothing was created


def test_a_refusal_that_names_no_field_is_listed_at_the_whole_config(
    client: TestClient, world: World
) -> None:
    """A check of something no field of the config names (the server's concept store holding nothing, a
    summarizer the server cannot build) is at `loc` [], as pydantic places a model validator's error, with
    the whole message, not a field guessed from the words."""
    for path, body in (
        _run("lvm_index", {}),
        _stream(world, "openai", {}),
    ):
        response = client.post(path, json=body)
        assert response.status_code == 422, response.text
        answer = response.json()
        assert answer["code"] == "invalid_config", answer
        assert answer["errors"] == [{"loc": [], "msg": answer["message"]}], answer


def test_a_kinds_check_of_what_a_field_names_is_listed_at_that_field(
    client: TestClient, world: World
) -> None:
    """A kind's check of what its inputs hold (data files in a training's data, a corpus file that is a
    directory, a prepared ELM directory, a sequences file) knows which field it read, but answered at `loc` []
    (the config as a whole), as if it named none: each is now at its field, worded `field: ...` as the other
    refusals of one field are."""
    import numpy as np

    from sequencesutil import write_tiny_sequences
    from tldrlab.lvm.store import ConceptIn, open_concept_store

    store = open_concept_store()  # the server's store, holding one article of source `wiki`
    store.replace_article(
        source="wiki",
        article_id="a",
        concepts=[ConceptIn(position=0, start=0, end=6, text="A bee.")],
        vectors=np.ones((1, 4), dtype=np.float32) / 2,
        embedder="minilm",
        chunking="sentence",
    )
    store.close()
    root = world.home / "data"
    (root / "empty").mkdir()
    (root / "texts").mkdir()
    (root / "empty.jsonl").write_text("")
    (root / "held").mkdir()
    (root / "held" / "test.txt").write_text("An article held out.\n")
    write_tiny_sequences(root / "seqs.npz")  # a train and a val split
    sweep = {
        "program": "tldrlab.train",
        "method": "grid",
        "metric": {"name": "eval_loss", "goal": "minimize"},
        "parameters": {"train.lr": {"values": [1e-3]}},
        "config": {"model": "char_lstm", "data": {"path": "empty"}},
    }
    cases: list[tuple[str, dict[str, Any], list[str]]] = [
        ("train", {"model": "char_lstm", "data": {"path": "empty"}}, ["data", "path"]),
        ("sweep", {"sweep": sweep}, ["sweep", "config", "data", "path"]),
        ("tokenizer", {"corpus": ["text.txt", "texts"]}, ["corpus", "1"]),
        ("tokenizer", {"corpus": ["text.txt", "empty.jsonl"]}, ["corpus", "1"]),
        ("tokenizer", {"corpus": ["text.txt", "text.txt"]}, ["corpus"]),
        ("experiment", {"data": "empty.jsonl"}, ["data"]),
        ("ingest", {"path": "text.txt"}, ["path"]),
        ("elm_prepare", {"data": "empty.jsonl", "out": "prepared"}, ["data"]),
        ("elm_train", {"data": "no-model"}, ["data"]),
        ("elm_optimize", {"base": {"data": "no-model"}}, ["base", "data"]),
        ("lvm_ingest", {"path": "held"}, ["path"]),
        ("lvm_sequences", {"source": "wiki", "test_source": "news", "out": "s.npz"}, ["test_source"]),
        ("lvm_train", {"sequences": "text.txt"}, ["sequences"]),
        ("lvm_evaluate", {"sequences": "text.txt"}, ["sequences"]),
        ("lvm_evaluate", {"sequences": "seqs.npz", "split": "test"}, ["split"]),
    ]
    before = len(open_registry().list())
    for kind, config, loc in cases:
        response = client.post("/runs", json={"kind": kind, "config": config})
        assert response.status_code == 422, (kind, response.text)
        answer = response.json()
        assert answer["code"] == "invalid_config", (kind, answer)
        (error,) = answer["errors"]
        assert error["loc"] == loc, (kind, answer)
        assert answer["message"] == f"{'.'.join(loc)}: {error['msg']}", (kind, answer)
        assert str(world.home) not in response.text, kind
    assert len(open_registry().list()) == before  # nothing was created


def test_a_kinds_prepare_step_refusal_is_a_422_at_its_field(client: TestClient, world: World) -> None:
    """A kind's prepare step reads what the config names too (an `elm_evaluate`'s predictions and references
    files): its refusals reached the client as a 400 `invalid_input` with no `errors`, where its check's are a
    422 `invalid_config` at the field. Each is now the same 422 at the file's field."""
    root = world.home / "data"
    (root / "empty.jsonl").write_text("")
    (root / "two.jsonl").write_text(
        '{"prediction": "a", "reference": "b"}\n{"prediction": "c", "reference": "d"}\n'
    )
    (root / "one.jsonl").write_text('{"reference": "b"}\n')
    (root / "unreferenced.jsonl").write_text('{"prediction": "a"}\n')
    (root / "garbled.jsonl").write_text("not json\n")
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"predictions": "empty.jsonl"}, ["predictions"]),
        ({"predictions": "garbled.jsonl"}, ["predictions"]),
        ({"predictions": "unreferenced.jsonl"}, ["predictions"]),  # no references file: its own
        ({"predictions": "two.jsonl", "references": "one.jsonl"}, ["references"]),
        ({"predictions": "two.jsonl", "references": "garbled.jsonl"}, ["references"]),
    ]
    before = len(open_registry().list())
    for config, loc in cases:
        response = client.post("/runs", json={"kind": "elm_evaluate", "config": config})
        assert response.status_code == 422, (config, response.text)
        answer = response.json()
        assert answer["code"] == "invalid_config", (config, answer)
        (error,) = answer["errors"]
        assert error["loc"] == loc, (config, answer)
        assert answer["message"] == f"{'.'.join(loc)}: {error['msg']}", (config, answer)
        assert str(world.home) not in response.text, config
    assert len(open_registry().list()) == before  # nothing was created
    accepted = client.post("/runs", json={"kind": "elm_evaluate", "config": {"predictions": "two.jsonl"}})
    assert accepted.status_code == 202, accepted.text


def test_a_sweep_specs_refusal_is_listed_at_its_key(client: TestClient, world: World) -> None:
    """The sweep spec's own checks (`sweep.spec.parse_sweep`: a method, a goal, a parameter's range) name the
    key they refuse in their words, but the 422 listed them at ["sweep"], the whole spec; each is now at its
    key under `sweep`, a parameter's dotted name one key of `parameters`."""

    def sweep(**change: Any) -> dict[str, Any]:
        raw = {
            "program": "tldrlab.train",
            "method": "random",
            "metric": {"name": "eval_loss", "goal": "minimize"},
            "parameters": {"train.lr": {"min": 1e-4, "max": 1e-2}},
            "config": {"model": "char_lstm", "data": {"path": "text.txt"}},
            **change,
        }
        return {"kind": "sweep", "config": {"sweep": raw}}

    cases: list[tuple[dict[str, Any], list[str]]] = [
        (sweep(method="nope"), ["sweep", "method"]),
        (sweep(metric={"name": "eval_loss", "goal": "up"}), ["sweep", "metric", "goal"]),
        (sweep(paramters={}), ["sweep", "paramters"]),
        (sweep(parameters={"train.lr": {"min": 2, "max": 1}}), ["sweep", "parameters", "train.lr", "min"]),
        (
            sweep(parameters={"train.lr": {"distribution": "gaussian"}}),
            ["sweep", "parameters", "train.lr", "distribution"],
        ),
        (sweep(method="grid"), ["sweep", "parameters", "train.lr"]),  # a range a grid cannot list
        (sweep(early_terminate={"type": "asha"}), ["sweep", "early_terminate", "type"]),
        (sweep(run_cap=0), ["sweep", "run_cap"]),
    ]
    before = len(open_registry().list())
    for body, loc in cases:
        response = client.post("/runs", json=body)
        assert response.status_code == 422, (loc, response.text)
        answer = response.json()
        assert answer["code"] == "invalid_config", (loc, answer)
        (error,) = answer["errors"]
        assert error["loc"] == loc, answer
        assert f"{'.'.join(loc)}: {error['msg']}" in answer["message"], answer
    assert len(open_registry().list()) == before


def test_a_sweep_whose_pruner_cannot_be_built_is_refused_at_submit(client: TestClient, world: World) -> None:
    """A hyperband `early_terminate` whose max_iter is below its min_iter (no bracket fits) was accepted with
    a 202 and failed in the worker, once the sweep's run built its pruner; a `strict` that is no boolean was
    accepted. Each is now a 422 at its key; a max_iter equal to min_iter (one bracket) is accepted."""

    def sweep(early_terminate: dict[str, Any]) -> dict[str, Any]:
        raw = {
            "program": "tldrlab.train",
            "method": "random",
            "metric": {"name": "eval_loss", "goal": "minimize"},
            "parameters": {"train.lr": {"min": 1e-4, "max": 1e-2}},
            "early_terminate": early_terminate,
            "config": {"model": "char_lstm", "data": {"path": "text.txt"}},
        }
        return {"kind": "sweep", "config": {"sweep": raw}}

    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"type": "hyperband", "min_iter": 5, "max_iter": 2}, ["sweep", "early_terminate", "max_iter"]),
        (
            {"type": "hyperband", "min_iter": 2, "s": 2, "strict": "yes"},
            ["sweep", "early_terminate", "strict"],
        ),
    ]
    before = len(open_registry().list())
    for early_terminate, loc in cases:
        response = client.post("/runs", json=sweep(early_terminate))
        assert response.status_code == 422, (early_terminate, response.text)
        answer = response.json()
        assert answer["code"] == "invalid_config", answer
        (error,) = answer["errors"]
        assert error["loc"] == loc, answer
        assert f"{'.'.join(loc)}: {error['msg']}" in answer["message"], answer
    assert "give a max_iter of at least 5" in client.post("/runs", json=sweep(cases[0][0])).text
    assert len(open_registry().list()) == before
    accepted = client.post("/runs", json=sweep({"type": "hyperband", "min_iter": 3, "max_iter": 3}))
    assert accepted.status_code == 202, accepted.text


def test_path_not_allowed_and_a_sweeps_spec_refusals_list_errors_at_their_field(
    client: TestClient, world: World
) -> None:
    """403 `path_not_allowed` answers named their field in the message only (`data.path: API runs read only
    inside ...`), with no `errors`; a sweep whose base config or parameters did not fit its program was a 400
    `invalid_config` with no `errors`, naming `config.train` where the request holds `sweep.config.train`.
    Each lists `errors: [{loc, msg}]` now, its message `loc: msg` as a 422 `invalid_config`'s."""
    outside = world.home.parent / "outside.txt"
    outside.write_text("secret\n")

    def sweep(
        config: dict[str, Any], parameter: str = "train.lr", value: Any = 8
    ) -> tuple[str, dict[str, Any]]:
        raw = {
            "program": "tldrlab.train",
            "method": "grid",
            "metric": {"name": "eval_loss", "goal": "minimize"},
            "parameters": {parameter: {"values": [value]}},
            "config": {"model": "char_lstm", "data": {"path": "text.txt"}, **config},
        }
        return _run("sweep", {"sweep": raw})

    cases: list[tuple[tuple[str, dict[str, Any]], int, list[str]]] = [
        (_run("train", {"data": {"path": "../outside.txt"}}), 403, ["data", "path"]),
        (_run("train", {"data": {"path": str(outside)}}), 403, ["data", "path"]),
        (_run("tokenizer", {"corpus": ["text.txt"], "out_dir": "/tmp/tok"}), 403, ["out_dir"]),
        (_run("tokenizer", {"corpus": ["text.txt", "../outside.txt"]}), 403, ["corpus", "1"]),
        (_run("ingest", {"path": "text.txt", "embedder": "minilm"}), 403, ["embedder"]),
        (
            _run("elm_train", {"data": "text.txt", "model": {"lm_settings": {"from_pretrained": "../x"}}}),
            403,
            ["model", "lm_settings", "from_pretrained"],
        ),
        (
            _run(
                "sweep",
                {"sweep": {"program": "train.py", "method": "grid", "parameters": {"lr": {"value": 1}}}},
            ),
            403,
            ["sweep", "program"],
        ),
        (sweep({}, parameter="data.path", value="text.txt"), 403, ["sweep", "parameters", "data.path"]),
        (_stream(world, "openai", {"base_url": "http://x"}), 403, ["params", "base_url"]),
        (sweep({"train": 3}), 422, ["sweep", "parameters", "train.lr"]),
        (sweep({"train": 3}, parameter="model_settings.hidden_dim"), 422, ["sweep", "config", "train"]),
    ]
    before = len(open_registry().list())
    for (path, body), status, loc in cases:
        response = client.post(path, json=body)
        assert response.status_code == status, (loc, response.text)
        answer = response.json()
        (error,) = answer["errors"]
        assert error["loc"] == loc, answer
        assert answer["message"] == f"{'.'.join(loc)}: {error['msg']}", answer
        assert str(world.home) not in response.text, loc
    assert len(open_registry().list()) == before


def test_an_invalid_config_error_says_where_it_is() -> None:
    """The guard: an InvalidConfigError cannot be made without its `errors` (mypy refuses the call too), so
    none reaches the API with a message alone; the command line prints the same message as before."""
    with pytest.raises(TypeError, match="errors"):
        InvalidConfigError("data: no such file")  # type: ignore[call-arg]
    refused = InvalidConfigError.at(("corpus", 0), "no such file or directory in the data roots")
    assert refused.message == "corpus.0: no such file or directory in the data roots"
    assert refused.details["errors"] == [
        {"loc": ["corpus", "0"], "msg": "no such file or directory in the data roots"}
    ]
    whole = InvalidConfigError.unplaced("not a prepared ELM data directory")
    assert whole.details["errors"] == [{"loc": [], "msg": "not a prepared ELM data directory"}]
