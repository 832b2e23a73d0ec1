"""No run config takes a number that is not finite: every float field of every kind's config (nested sections
and the model settings a train config validates by its family's class included) refuses `inf` and `nan` with
the field's path, from the registry, over HTTP (JSON's `Infinity`) and from the command line (`--lr inf`).
Nor does any other class the API or the CLI fills from a request: every request body and query class of the
app's routes and every generated command's options class (found by walking the routes and the commands, nested
classes included) sets `allow_inf_nan=False`, and each of its float fields says "finite". Their free-form
fields (`dict[str, Any]`, `Any`: found by the same walks) refuse a number that is not finite anywhere inside,
at its path (`tldrlab.freeform.FreeForm`), unless another class validates the whole value
(`ValidatedWhole`)."""

from __future__ import annotations

import importlib
import math
import re
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import pytest
import typer
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel, ValidationError

from cliutil import run_captured
from tldrlab.cli.main import app as cli_app
from tldrlab.cli.options import Flag, LazyCommand, parse_value
from tldrlab.config import get_settings
from tldrlab.configmodel import ConfigModel
from tldrlab.errors import ConfigError, InvalidConfigError
from tldrlab.freeform import ValidatedWhole
from tldrlab.kinds import KINDS, section_class, validate_config
from tldrlab.models.registry import MODELS
from tldrlab.runs import open_registry
from tldrlab.service.app import create_app
from tldrlab.service.events import RunEvent

NOT_FINITE = (math.inf, -math.inf, math.nan)

FieldPath = tuple[str, ...]


def _float_shape(annotation: Any) -> str | None:
    """How a field holds floats: "float" (also `float | None`), "list" (`list[float]`), "dict"
    (`dict[str, float]`), or None when it holds none."""
    if annotation is float:
        return "float"
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (Union, types.UnionType):
        return next((shape for arg in args if (shape := _float_shape(arg)) is not None), None)
    if origin in (list, tuple, set, frozenset) and args and args[0] is float:
        return "list"
    if origin is dict and len(args) == 2 and args[1] is float:
        return "dict"
    return None


def _float_fields(model: type[BaseModel], prefix: FieldPath = ()) -> Iterator[tuple[FieldPath, str]]:
    """(path, shape) of every float field of `model`, nested config sections walked."""
    for name, info in model.model_fields.items():
        section = section_class(info.annotation)
        if section is not None:
            yield from _float_fields(section, (*prefix, name))
        elif (shape := _float_shape(info.annotation)) is not None:
            yield (*prefix, name), shape


def _nested(path: FieldPath, value: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {path[-1]: value}
    for name in reversed(path[:-1]):
        raw = {name: raw}
    return raw


def _refusal(kind: str, raw: dict[str, Any]) -> InvalidConfigError:
    with pytest.raises(InvalidConfigError) as caught:
        validate_config(kind, raw)
    return caught.value


def _refuses_at(error: InvalidConfigError, path: FieldPath, shape: str) -> bool:
    """`error` lists a not-finite problem at `path` (within a list or dict value: at its element) and its
    message names the field."""
    loc = list(path)
    for problem in error.details["errors"]:
        inner = problem["loc"][: len(loc)] == loc and len(problem["loc"]) == len(loc) + (shape != "float")
        if inner and "finite" in problem["msg"]:
            return ".".join(loc) in error.message
    return False


CASES = [
    pytest.param(kind.name, path, shape, id=f"{kind.name}:{'.'.join(path)}")
    for kind in KINDS.values()
    for path, shape in _float_fields(kind.config)
]


@pytest.mark.parametrize(("kind", "path", "shape"), CASES)
def test_every_float_field_of_every_kind_refuses_inf_and_nan(kind: str, path: FieldPath, shape: str) -> None:
    for bad in NOT_FINITE:
        value = bad if shape == "float" else [bad] if shape == "list" else {"key": bad}
        error = _refusal(kind, _nested(path, value))
        assert _refuses_at(error, path, shape), (bad, error.message, error.details["errors"])


MODEL_SETTINGS = [
    pytest.param(family, path, shape, id=f"{family}:{'.'.join(path)}")
    for family, spec in MODELS.items()
    for path, shape in _float_fields(spec.config_cls)
]


@pytest.mark.parametrize(("family", "path", "shape"), MODEL_SETTINGS)
def test_model_settings_validated_by_their_family_refuse_inf_and_nan(
    family: str, path: FieldPath, shape: str
) -> None:
    for bad in NOT_FINITE:
        value = bad if shape == "float" else [bad] if shape == "list" else {"key": bad}
        raw = {"model": family, "data": {"path": "data"}, "model_settings": _nested(path, value)}
        error = _refusal("train", raw)
        assert _refuses_at(error, ("model_settings", *path), shape), (bad, error.message)


def test_infinity_over_http_is_a_422_naming_the_field_and_creates_no_run() -> None:
    client = TestClient(create_app())
    body = '{"kind": "train", "config": {"data": {"path": "x"}, "train": {"lr": Infinity}}}'
    for text in (body, body.replace("Infinity", "NaN"), body.replace("Infinity", "1e400")):
        response = client.post("/runs", content=text, headers={"content-type": "application/json"})
        assert response.status_code == 422, (text, response.text)
        error = response.json()
        assert error["code"] == "invalid_config" and error["request_id"], error
        assert "train.lr" in error["message"] and "finite" in error["message"], error
        assert error["errors"] == [{"loc": ["train", "lr"], "msg": "Input should be a finite number"}]
    assert open_registry().list() == []


def test_inf_from_a_flag_or_a_yaml_file_is_a_one_line_error_and_creates_no_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_captured(["train", "--data", str(tmp_path), "--lr", "inf"], capsys)
    assert code == 2 and "train.lr" in err and "finite" in err, (code, out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    config = tmp_path / "config.yaml"
    config.write_text(f"data: {{path: {tmp_path}}}\ntrain: {{max_grad_norm: .nan}}\n")
    code, _, err = run_captured(["train", "--config", str(config)], capsys)
    assert code == 2 and "train.max_grad_norm" in err and "finite" in err, err
    assert open_registry().list() == []


@pytest.mark.parametrize(
    ("variable", "setting"),
    [
        ("TLDRLAB_RUN_HEARTBEAT_S", "run_heartbeat_s"),
        ("TLDRLAB_RETENTION__EVERY_S", "retention.every_s"),
        ("TLDRLAB_REDIS_CONNECT_TIMEOUT_S", "redis_connect_timeout_s"),
        ("TLDRLAB_REDIS_TIMEOUT_S", "redis_timeout_s"),
    ],
)
def test_float_settings_from_the_environment_refuse_inf_and_nan(
    variable: str, setting: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for bad in ("inf", "nan", "-inf"):
        monkeypatch.setenv(variable, bad)
        get_settings.cache_clear()
        with pytest.raises(ConfigError, match=rf"{re.escape(setting)} .*finite"):
            get_settings()
    get_settings.cache_clear()


def test_a_sweep_choosing_inf_or_nan_for_a_parameter_is_refused_at_submit() -> None:
    base = {
        "method": "random",
        "metric": {"name": "eval_loss", "goal": "minimize"},
        "program": "tldrlab.train",
    }
    for block, where in (
        ({"values": [1e-3, math.inf]}, "parameters.train.lr.values.1"),
        ({"value": math.nan}, "parameters.train.lr.value"),
    ):
        sweep = {**base, "parameters": {"train.lr": block}}
        error = _refusal("sweep", {"sweep": sweep})
        assert where in error.message and "finite" in error.message, error.message
    sweep = {
        **base,
        "parameters": {"train.lr": {"values": [1e-3, 3e-3]}},
        "config": {"data": {"path": "data"}},
    }
    assert validate_config("sweep", {"sweep": sweep})


def test_the_walk_finds_the_float_fields_people_set() -> None:
    found = {(kind, ".".join(path)) for kind, path, _ in (case.values for case in CASES)}
    assert {
        ("train", "train.lr"),
        ("train", "data.val_fraction"),
        ("elm_optimize", "base.loss.lm_weight"),
    } <= found
    assert {"lr", "dropout", "temperature"} <= {path[-1] for _, path, _ in (case.values for case in CASES)}


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI keeps included routers unflattened
        if included is not None:
            yield from _api_routes(included.routes)
        elif isinstance(route, APIRoute):
            yield route


def _route_params(route: APIRoute) -> Iterator[Any]:
    """The body and query parameters of `route` and of its dependencies."""
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        yield from (*dependant.body_params, *dependant.query_params)
        stack.extend(dependant.dependencies)


def _with_nested(classes: dict[type[BaseModel], str]) -> dict[type[BaseModel], str]:
    """`classes` and every model class their fields hold (in lists, dicts and unions too)."""
    found = dict(classes)
    stack = list(classes.items())
    while stack:
        cls, where = stack.pop()
        for name, info in cls.model_fields.items():
            for model in _models_in([info.annotation]):
                if model not in found:
                    found[model] = f"{where} .{name}"
                    stack.append((model, found[model]))
    return found


def _models_in(annotations: list[Any]) -> Iterator[type[BaseModel]]:
    while annotations:
        annotation = annotations.pop()
        annotations.extend(get_args(annotation))
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield annotation


def request_classes() -> dict[type[BaseModel], str]:
    """Every model class the API validates a request body or query as, and every class a generated command's
    options are validated as, with where it was found. A route that parses its body itself (POST /threads,
    /stream_summary) declares no body parameter: every model class a route module holds that no route
    returns counts as one of its requests."""
    found: dict[type[BaseModel], str] = {}
    returned: dict[type[BaseModel], str] = {}
    routes = list(_api_routes(create_app().routes))
    for route in routes:
        for param in _route_params(route):
            annotation = param.field_info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                found.setdefault(annotation, f"{sorted(route.methods)[0]} {route.path} {param.name}")
        returns = [route.response_model, get_type_hints(route.endpoint).get("return")]
        returned.update((cls, route.path) for cls in _models_in(returns))
    # what the SSE routes send as each event's data: an answer (a diverged run's NaN loss is reported as
    # is), though a route module holds it for its stream's annotations and no route declares it
    returned[RunEvent] = "/runs/{run_id}/events"
    returned = _with_nested(returned)
    for module in {route.endpoint.__module__ for route in routes}:
        for value in vars(importlib.import_module(module)).values():
            # ConfigModel: the base of the classes a module declares, imported by it, no request of its own
            is_model = isinstance(value, type) and issubclass(value, BaseModel) and value is not ConfigModel
            if is_model and value.__module__.startswith("tldrlab.") and value not in returned:
                found.setdefault(value, f"{module}.{value.__qualname__}")
    commands: list[tuple[str, Any]] = [("tldrlab", typer.main.get_command(cli_app))]
    while commands:
        path, command = commands.pop()
        commands.extend((f"{path} {name}", sub) for name, sub in getattr(command, "commands", {}).items())
        if isinstance(command, LazyCommand):
            assert command.config is not None, path
            found.setdefault(command.config(), path)
    return _with_nested(found)


REQUEST_CLASSES = request_classes()


def test_the_walk_finds_the_request_and_option_classes() -> None:
    names = {cls.__name__ for cls in REQUEST_CLASSES}
    expected = {"RunRequest", "RunQuery", "CompareQuery", "ChunkRequest", "ArticleIn", "StatsQuery",
                "ThreadHighlightOptions", "ThreadDigestOptions", "ImportOptions", "LabelOptions",
                "ContinueOptions", "InspectOptions", "WorkerConfig", "TrainConfig",
                "StreamSummaryRequest", "Thread", "Post"}  # fmt: skip
    assert expected <= names, expected - names


def _class_id(cls: type[BaseModel]) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


# sorted: the walk's order follows a set of modules, which differs between processes (string hashing is
# randomised), and xdist refuses workers that collected the tests in different orders
@pytest.mark.parametrize(
    "cls", [pytest.param(cls, id=_class_id(cls)) for cls in sorted(REQUEST_CLASSES, key=_class_id)]
)
def test_every_request_and_option_class_refuses_inf_and_nan(cls: type[BaseModel]) -> None:
    where = REQUEST_CLASSES[cls]
    assert cls.model_config.get("allow_inf_nan") is False, (
        f"{cls.__qualname__} ({where}): allow_inf_nan=False"
    )
    for name, info in cls.model_fields.items():
        shape = _float_shape(info.annotation)
        if shape is None:
            continue
        for bad in NOT_FINITE:
            value = bad if shape == "float" else [bad] if shape == "list" else {"key": bad}
            with pytest.raises(ValidationError) as caught:
                cls.model_validate({name: value})
            problems = [e for e in caught.value.errors() if e["loc"][:1] == (name,)]
            assert [e["type"] for e in problems] == ["finite_number"], (where, name, bad, problems)


def test_float_query_parameters_of_routes_refuse_inf_and_nan() -> None:
    client = TestClient(create_app())
    checked = []
    for route in _api_routes(create_app().routes):
        for param in route.dependant.query_params:
            if _float_shape(param.field_info.annotation) != "float":
                continue
            path = re.sub(r"\{[^}]+\}", "x", route.path)
            for bad in ("inf", "nan", "-inf"):
                response = client.request(sorted(route.methods)[0], path, params={param.name: bad})
                error = response.json()
                assert response.status_code == 422 and error["code"] == "invalid_input", (path, error)
                assert f"{param.name}: Input should be a finite number" in error["message"], (path, error)
            checked.append(f"{route.path}?{param.name}")
    assert "/runs/{run_id}/events?poll_s" in checked, checked


def test_infinity_in_a_request_option_is_a_422_naming_the_field() -> None:
    """Bounded float options refused NaN only as out of range ('less than or equal to 1'), which misleads."""
    client = TestClient(create_app())
    for bad in ("Infinity", "NaN", "-Infinity"):
        body = f'{{"text": "One idea. Another idea.", "chunking": "semantic", "threshold": {bad}}}'
        response = client.post("/lvm/chunk", content=body, headers={"content-type": "application/json"})
        error = response.json()
        assert response.status_code == 422 and error["code"] == "invalid_input" and error["request_id"], error
        assert error["message"] == "threshold: Input should be a finite number", error
    for bad in ("inf", "nan"):
        response = client.get("/compare", params={"ids": "a", "tolerance": bad})
        error = response.json()
        assert response.status_code == 422 and error["request_id"], error
        assert error["message"] == "query.tolerance: Input should be a finite number", error


def test_inf_in_a_highlights_option_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    """The heuristic's weights have no bounds: `--centrality-weight inf` made every score inf or nan."""
    for bad in ("inf", "nan"):
        code, out, err = run_captured(["highlights", "some-thread", "--centrality-weight", bad], capsys)
        assert code == 2 and "centrality_weight" in err and "finite" in err, (code, out, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


# -- free-form fields: values no class describes (dict[str, Any], Any) -------------------------------------
def _is_free_form(annotation: Any) -> bool:
    """Whether a field's values are not described by a class: it holds `Any` (or `object`) somewhere."""
    if annotation is Any or annotation is object:
        return True
    return any(_is_free_form(arg) for arg in get_args(annotation))


def _free_form_fields(model: type[BaseModel], prefix: FieldPath = ()) -> Iterator[tuple[FieldPath, Any]]:
    """(path, FieldInfo) of every free-form field of `model`, nested config sections walked."""
    for name, info in model.model_fields.items():
        section = section_class(info.annotation)
        if section is not None:
            yield from _free_form_fields(section, (*prefix, name))
        elif _is_free_form(info.annotation):
            yield (*prefix, name), info


def _deep_value(info: Any, bad: float) -> Any:
    """A value of the field's shape with `bad` deep inside, at `deep.0.number` below the field."""
    inner = {"deep": [{"number": bad}]}
    return inner if get_origin(info.annotation) is dict else [inner]


def _deep_loc(info: Any) -> tuple[str | int, ...]:
    """Where `_deep_value` puts the number, below the field."""
    return ("deep", 0, "number") if get_origin(info.annotation) is dict else (0, "deep", 0, "number")


def _validated_whole(info: Any) -> bool:
    return any(isinstance(m, ValidatedWhole) for m in info.metadata)


FREE_FORM_CASES = [
    pytest.param(kind.name, path, id=f"{kind.name}:{'.'.join(path)}")
    for kind in KINDS.values()
    for path, _ in _free_form_fields(kind.config)
]
FREE_FORM_REQUEST_CASES = sorted(
    (
        pytest.param(cls, name, id=f"{_class_id(cls)}.{name}")
        for cls in REQUEST_CLASSES  # nested classes are in it too: each class's own fields
        for name, info in cls.model_fields.items()
        if _is_free_form(info.annotation)
    ),
    key=lambda case: str(case.id),
)


@pytest.mark.parametrize(("kind", "path"), FREE_FORM_CASES)
def test_every_free_form_field_of_every_kind_refuses_inf_and_nan_deep_inside(
    kind: str, path: FieldPath
) -> None:
    """A dict[str, Any] field (model_settings, lm_settings, a sweep's mapping, a trial's params) took
    Infinity anywhere inside it: nothing validated the numbers no class describes."""
    info = dict(_free_form_fields(KINDS[kind].config))[path]
    for bad in NOT_FINITE:
        error = _refusal(kind, _nested(path, _deep_value(info, bad)))
        where = [*path, *(str(p) for p in _deep_loc(info))]
        problems = [e for e in error.details["errors"] if e["loc"][: len(where)] == where]
        assert problems and problems[0]["msg"] == "Input should be a finite number", (bad, error.message)
        assert ".".join(where) in error.message, error.message


@pytest.mark.parametrize(("cls", "name"), FREE_FORM_REQUEST_CASES)
def test_every_free_form_field_of_every_request_and_option_class_refuses_inf_and_nan(
    cls: type[BaseModel], name: str
) -> None:
    """Free-form request and option fields (a summarizer's params on POST /stream_summary or `tldrlab digest
    -p`) refuse a number that is not finite anywhere inside, naming its path; a field whose whole value
    another class validates says so (`ValidatedWhole`: a run request's config, refused by its kind's
    class)."""
    info = cls.model_fields[name]
    if _validated_whole(info):
        return
    for bad in NOT_FINITE:
        with pytest.raises(ValidationError) as caught:
            cls.model_validate({name: _deep_value(info, bad)})
        deep = (name, *_deep_loc(info))
        problems = [e for e in caught.value.errors() if e["loc"][:1] == (name,)]
        assert [(e["type"], e["loc"][: len(deep)]) for e in problems] == [("finite_number", deep)], (
            REQUEST_CLASSES[cls],
            bad,
            problems,
        )


def test_the_walk_finds_the_free_form_fields() -> None:
    kinds = {(kind, ".".join(path)) for kind, path in (case.values for case in FREE_FORM_CASES)}
    assert {
        ("train", "model_settings"),
        ("lvm_train", "model_settings"),
        ("elm_train", "model.lm_settings"),
        ("sweep", "sweep"),
        ("trial", "params"),
    } <= kinds, kinds
    requests = {(cls.__name__, name) for cls, name in (case.values for case in FREE_FORM_REQUEST_CASES)}
    assert {
        ("StreamSummaryRequest", "params"),
        ("ThreadDigestOptions", "params"),
        ("RunRequest", "config"),
    } <= (requests), requests


def test_infinity_in_a_summarizers_params_over_http_is_refused_naming_it() -> None:
    """POST /stream_summary with `"params": {"temperature": Infinity}` was accepted by the request class. The
    route validates its body itself and answers every invalid body 422 (as `"k": 500`): a 422 too."""
    client = TestClient(create_app())
    for bad in ("Infinity", "NaN", "-Infinity", "1e400"):
        body = (
            f'{{"thread_id": "t1", "summarizer": "local", "params": {{"final_params": {{"top_p": {bad}}}}}}}'
        )
        response = client.post("/stream_summary", content=body, headers={"content-type": "application/json"})
        error = response.json()
        assert response.status_code == 422 and error["code"] == "invalid_input" and error["request_id"], error
        assert error["message"] == "params.final_params.top_p: Input should be a finite number", error


def test_infinity_in_a_digest_param_is_a_one_line_error_before_any_work(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`tldrlab digest THREAD -p temperature=Infinity` went on to look the thread up (and a file's ingest);
    the bare words `inf` / `nan` (what Python prints) were not JSON, so they stayed text that only the
    summarizer refused, in its own words. Every spelling is a usage error when `-p` is parsed."""
    for bad in ("Infinity", "NaN", "1e400", "inf", "-inf", "nan", " INF "):
        code, out, err = run_captured(["digest", "no-such-thread", "-p", f"temperature={bad}"], capsys)
        refused = f"--param temperature={bad.strip()}: not a finite number"
        assert code == 2 and refused in err, (code, out, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    # finite bare numbers are still numbers, words still text, and a quoted word passes as text
    flag = Flag(path="params", names=("--param", "-p"), annotation=str, help="", parse="pairs")
    pairs = ["a=0.5", "b=1e-3", "c=-2", "d=info", "e=nano", 'f="inf"']
    assert parse_value(flag, pairs) == {"a": 0.5, "b": 1e-3, "c": -2, "d": "info", "e": "nano", "f": "inf"}
