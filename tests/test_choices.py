"""A name chosen from a known set is refused with one message, by one helper (`tldrlab.choices`).

Six config validators (formats, chunking, LVM backbones, baselines, tokenizer methods, experiment arms) and
the library's own checks each worded it themselves ("choose from", "supported:", "must be one of ..., got",
the sweep file's "; allowed: ...", the run-kind registry's "known kinds: ..."). The contract test fails on a
module that words such a message itself instead of calling the helper. The names a config field accepts are
shown before anyone errs: in --help, docs/config.md and /openapi.json (`OneOf`).
"""

from __future__ import annotations

import ast
import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

import tldrlab
from cliutil import run_captured
from tldrlab.choices import OneOf, choices_text, choose_one_of, one_of, unknown_choice
from tldrlab.data.readers import READERS
from tldrlab.errors import InvalidConfigError
from tldrlab.kinds import validate_config
from tldrlab.lvm.config import BASELINE_NAMES
from tldrlab.runs import open_registry
from tldrlab.service.app import create_app
from tldrlab.train.config import model_families

SRC = Path(tldrlab.__file__).parent
HAND_WORDED = re.compile(
    r"choose one of|choose from|; supported:|use one of|must be one of|[;(] ?allowed: |\bknown [a-z ]+s: ",
    re.I,
)


def docstrings(tree: ast.AST) -> set[int]:
    """ids of the string nodes that are docstrings (prose, which may say "choose one of")."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def hand_worded(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, text) of every string (f-strings' literal parts included) wording a choice message."""
    prose = docstrings(tree)
    for joined in ast.walk(tree):  # an f-string's literal parts are reported with the f-string
        if isinstance(joined, ast.JoinedStr):
            prose |= {id(part) for part in joined.values}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            if HAND_WORDED.search(node.value):
                yield node.lineno, node.value
        elif isinstance(node, ast.JoinedStr) and HAND_WORDED.search(ast.unparse(node)):
            yield node.lineno, ast.unparse(node)


# untraced (`no_cover`): it reads tldrlab's source with `ast` and runs none of it, so coverage measures
# nothing here, while tracing made its walk over every module's syntax tree two to three times slower
@pytest.mark.no_cover
def test_no_module_words_a_choice_message_itself() -> None:
    found = [
        f"{path.relative_to(SRC).as_posix()}:{line}: {text}"
        for path in sorted(SRC.rglob("*.py"))
        if path.name != "choices.py" or path.parent != SRC
        for line, text in hand_worded(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert found == [], f"refuse an unknown name with tldrlab.choices (one_of, unknown_choice): {found}"


@pytest.mark.parametrize(
    "source",
    [
        'raise ValueError(f"unknown arm(s) {x}; choose from {known}")',
        "raise ValueError(f\"unknown format {name!r}; supported: {', '.join(READERS)}\")",
        'raise ConfigError(f"device must be one of auto, cpu; got {device!r}")',
        "raise InvalidInputError(f'unknown split {split!r}; use one of {names}')",
        "message = 'precision must be one of ' + ', '.join(PRECISIONS)",
        'raise ConfigError(f"metric.goal: {goal!r}; allowed: {_allowed(GOALS)}")',
        "raise InvalidInputError(f'unknown option(s) {names} for format {name!r} (allowed: {allowed})')",
        'raise UnknownKindError(f"unknown run kind {name!r}; known kinds: {known}")',
    ],
)
def test_the_contract_test_sees_a_hand_worded_message(source: str) -> None:
    assert list(hand_worded(ast.parse(source)))


def test_one_message_for_every_unknown_name() -> None:
    assert unknown_choice("LVM", "rnn", ("lstm", "gru")) == "unknown LVM 'rnn'; choose one of lstm, gru"
    assert choose_one_of(["a", "b"]) == "choose one of a, b"


def test_one_of_checks_a_name_an_unset_field_and_a_list_against_the_registry_at_each_check() -> None:
    registry = {"sentence": object()}

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        chunking: str | None = None
        many: list[str] = []
        _known = field_validator("chunking", "many")(one_of("chunking", registry))

    assert Config(chunking="sentence", many=["sentence"]).chunking == "sentence"
    assert Config().chunking is None  # unset: nothing to check
    with pytest.raises(ValidationError, match="unknown chunking 'semantic'; choose one of sentence"):
        Config(chunking="semantic")
    with pytest.raises(ValidationError) as refused:
        Config(many=["sentence", "paragraph"])
    assert refused.value.errors()[0]["loc"] == ("many",)
    assert "unknown chunking 'paragraph'" in str(refused.value)
    registry["semantic"] = object()  # registered later: read at the check, not copied when the class was made
    assert Config(chunking="semantic").chunking == "semantic"


# -- the names shown where users look: --help, docs/config.md, the JSON schema of /openapi.json --------------
def test_a_one_of_field_is_checked_and_lists_the_registry_as_it_is_when_the_schema_is_made() -> None:
    registry = {"sentence": object()}

    def chunkers() -> dict[str, object]:  # a registry the config module does not import
        return registry

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")

        chunking: Annotated[str, OneOf("chunking", registry)] = "sentence"
        many: Annotated[list[str] | None, OneOf("chunking", chunkers)] = None

    with pytest.raises(ValidationError, match="unknown chunking 'semantic'; choose one of sentence"):
        Config(chunking="semantic")
    registry["semantic"] = object()  # registered after the class was made: accepted and listed
    assert Config(chunking="semantic", many=["semantic"]).many == ["semantic"]
    properties = Config.model_json_schema()["properties"]
    assert properties["chunking"]["enum"] == ["sentence", "semantic"]
    assert properties["many"]["anyOf"] == [
        {"type": "array", "items": {"type": "string", "enum": ["sentence", "semantic"]}},
        {"type": "null"},
    ]
    assert choices_text(Config.model_fields["many"]) == "choices: sentence, semantic"
    assert copy.deepcopy(Config.model_fields["chunking"]).metadata[0].names is registry  # never a snapshot


@pytest.fixture
def plugin_format(monkeypatch: pytest.MonkeyPatch) -> str:
    """A reader format registered at run time, as a plug-in would (removed after the test)."""
    monkeypatch.setitem(READERS, "plugin_lines", READERS["text"])
    return "plugin_lines"


def test_train_help_names_the_choices_of_one_of_fields(
    plugin_format: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_captured(["train", "--help"], capsys)
    flat = " ".join(out.split())
    assert code == 0
    assert "[default: bpe; choices: bpe, sentencepiece, char]" in flat  # --tokenizer.method
    assert "choices: t5, gpt2, char_lstm, causal_lm]" in flat  # --model: the model registry, read lazily
    assert f"choices: {', '.join(READERS)}]" in flat and plugin_format in flat  # --data.format


@pytest.mark.parametrize("command", [["data", "inspect"], ["data", "register"]])
def test_data_commands_help_names_the_formats(
    command: list[str], plugin_format: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_captured([*command, "--help"], capsys)
    assert code == 0 and f"choices: {', '.join(READERS)}]" in " ".join(out.split())  # plugin_lines last
    code, _, err = run_captured([*command, ".", "--format", "rss"], capsys)
    assert code == 2 and f"unknown format 'rss'; choose one of {', '.join(READERS)}" in " ".join(err.split())


def test_ingest_lists_the_thread_formats_and_refuses_a_records_format_before_a_run_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_captured(["ingest", "--help"], capsys)
    assert code == 0 and "choices: stackexchange, discourse, native]" in " ".join(out.split())
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"document": "A long text.", "summary": "Short."}\n', encoding="utf-8")
    code, _, err = run_captured(["ingest", str(pairs), "--format", "pairs"], capsys)
    assert code == 2 and "unknown format 'pairs'; choose one of stackexchange, discourse, native" in err, err
    assert open_registry().list(kind="ingest") == []  # it was refused once the run read the file


def test_openapi_lists_the_choices_of_one_of_fields(plugin_format: str) -> None:
    components = TestClient(create_app()).get("/openapi.json").json()["components"]["schemas"]
    data_format = components["DataConfig"]["properties"]["format"]
    assert data_format["anyOf"] == [{"type": "string", "enum": list(READERS)}, {"type": "null"}]
    assert plugin_format in data_format["anyOf"][0]["enum"]
    baselines = components["LVMEvaluateConfig"]["properties"]["baselines"]["anyOf"][0]
    assert baselines["items"]["enum"] == list(BASELINE_NAMES)
    assert components["TrainJobConfig"]["properties"]["model"]["enum"] == list(model_families())


def test_every_wandb_mode_field_is_one_of_the_modes(capsys: pytest.CaptureFixture[str]) -> None:
    """The W&B mode fields were Literals (pydantic's "Input should be ..." instead of the one message) or, for
    `elm_train`, a plain string: `"wandb": "bogus"` was accepted over HTTP and the run failed once it
    started. Every one is `WandbMode` now: refused with the modes named, listed in --help and the schema."""
    refused = "unknown wandb mode 'bogus'; choose one of offline, online, disabled"
    configs = {
        "train": {"data": {"path": "x"}, "wandb": "bogus"},
        "smoke": {"wandb": "bogus"},
        "evaluate": {"model_run": "m", "wandb": "bogus"},
        "elm_train": {"data": "x", "wandb": "bogus"},
        "elm_optimize": {"base": {"data": "x", "wandb": "bogus"}},
        "experiment": {"data": "x", "wandb_mode": "bogus"},
        "lm_experiment": {"data": "x", "model": "m", "wandb_mode": "bogus"},
    }
    for kind, config in configs.items():
        with pytest.raises(InvalidConfigError) as caught:
            validate_config(kind, config)
        assert refused in caught.value.message, (kind, caught.value.message)
    client = TestClient(create_app())
    response = client.post("/runs", json={"kind": "elm_train", "config": configs["elm_train"]})
    assert response.status_code == 422 and refused in response.json()["message"], response.text
    assert open_registry().list() == []
    components = client.get("/openapi.json").json()["components"]["schemas"]
    for schema, field in (
        ("ElmTrainConfig", "wandb"),
        ("TrainJobConfig", "wandb"),
        ("LMExperimentConfig", "wandb_mode"),
    ):
        modes = components[schema]["properties"][field]["anyOf"][0]
        assert modes == {"type": "string", "enum": ["offline", "online", "disabled"]}, (schema, modes)
    code, out, _ = run_captured(["elm", "train", "--help"], capsys)
    assert code == 0 and "choices: offline, online, disabled]" in " ".join(out.split())
    code, _, err = run_captured(["elm", "train", "--data", "x", "--wandb", "bogus"], capsys)
    assert code == 2 and refused in err and len(err.strip().splitlines()) == 1, err
