"""The run-kind contract, as far as the command line sees it: every kind's config documents and bounds its
fields, its defaults validate, and its generated command has one option per field with unique names."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from pydantic import BaseModel, TypeAdapter

from cliutil import run_captured
from tldrlab.cli.main import app
from tldrlab.cli.runkinds import RUN_COMMANDS, RunCommand
from tldrlab.config import get_settings
from tldrlab.configmodel import ConfigModel
from tldrlab.kinds import section_class, submittable_kinds
from tldrlab.runs import open_registry

NOT_GENERATED = {
    "lvm_generate": "tldrlab lvm generate --measure N (without --measure it generates without a run)",
}
"""Kinds whose command is hand-written, and why."""


def fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, type[BaseModel], Any]]:
    for name, info in model.model_fields.items():
        yield f"{prefix}{name}", model, info
        if section := section_class(info.annotation):
            yield from fields(section, f"{prefix}{name}.")


@pytest.mark.parametrize("spec", RUN_COMMANDS, ids=lambda spec: spec.kind)
def test_config_class_documents_every_field(spec: RunCommand) -> None:
    model = spec.config_class()
    for path, owner, info in fields(model):
        settings = owner.model_config
        assert issubclass(owner, ConfigModel), f"{owner.__name__}: not a ConfigModel (its docstrings unread)"
        assert settings.get("extra") == "forbid", f"{owner.__name__}: extra='forbid'"
        assert (info.description or "").strip(), f"{spec.kind}: field {path} has no docstring"
        if not info.is_required():  # every default is a valid value of its field
            default = info.get_default(call_default_factory=True)
            annotation = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
            TypeAdapter(annotation).validate_python(default)


@pytest.mark.parametrize("spec", RUN_COMMANDS, ids=lambda spec: spec.kind)
def test_generated_command_has_an_option_per_field(spec: RunCommand) -> None:
    command: Any = typer.main.get_command(app)
    for part in spec.path.split():
        command = command.commands[part]
    names = [n for p in command.params for n in (*p.opts, *p.secondary_opts)]
    assert len(names) == len(set(names)), f"{spec.path}: duplicate option names"
    leaves = [path for path, _, info in fields(spec.config_class()) if not section_class(info.annotation)]
    for path in leaves:
        if path not in (*spec.arguments, *spec.exclude):  # excluded fields: an extra flag sets them
            assert "--" + path.replace("_", "-") in names, f"{spec.path}: no option for {path}"
    assert "Example: tldrlab " + spec.path in (command.help or "")


def test_every_submittable_kind_has_a_command() -> None:
    generated = {spec.kind for spec in RUN_COMMANDS}
    assert len(generated) == len(RUN_COMMANDS), "one command per kind"
    missing = {k.name for k in submittable_kinds()} - generated - set(NOT_GENERATED)
    assert not missing, f"run kinds without a command (add a RunCommand): {sorted(missing)}"


@pytest.mark.parametrize("spec", [s for s in RUN_COMMANDS if s.same], ids=lambda spec: spec.kind)
def test_a_shorthand_says_which_options_it_sets_and_shows_no_default_of_its_own(spec: RunCommand) -> None:
    # `elm train --help` listed `--max-steps` (default None) and `--train.max-steps` (default 1000) as two
    # settings, `lvm train --help` `--steps` beside `--train.max-steps`: nothing said they set one thing
    command: Any = typer.main.get_command(app)
    for part in spec.path.split():
        command = command.commands[part]
    options = {name: param for param in command.params for name in (*param.opts, *param.secondary_opts)}
    for group in spec.same:
        *others, last = ("--" + path.replace("_", "-") for path in group)
        help = " ".join(options[last].help.split())
        for other in others:  # named as users know it: the last long alias (`--max-steps`, not `--base.…`)
            shown = [n for n in options[other].opts if n.startswith("--")][-1]
            assert shown in help.partition("Sets what ")[2], f"{spec.path} {last}: {help}"
        assert help.endswith(": give one of them.") and "default:" not in help, f"{spec.path} {last}: {help}"
        for other in others:
            assert "Sets what" not in (options[other].help or ""), f"{spec.path} {other}"


def _required_settings(spec: RunCommand) -> list[str]:
    fields = spec.config_class().model_fields
    return [name for name, info in fields.items() if info.is_required() and name not in spec.defaults]


@pytest.mark.parametrize(
    "spec", [s for s in RUN_COMMANDS if _required_settings(s)], ids=lambda spec: spec.kind
)
def test_a_missing_setting_is_named_as_the_command_line_takes_it(
    spec: RunCommand, capsys: pytest.CaptureFixture[str]
) -> None:
    # `tldrlab tokenizer train` said "give --corpus", `tldrlab eval` "give --model-run": options that do not
    # exist (the corpus and the model are arguments), so following the advice was a usage error
    code, _, err = run_captured(spec.path.split(), capsys)
    if code == 2 and "[usage] Missing argument" in err:  # a required argument typer names itself (SWEEP_FILE)
        return
    given = " ".join(err.split()).partition("(give ")[2].partition(" or set it in --config FILE)")[0]
    assert code == 2 and "Field required" in err and given, err
    _, usage, _ = run_captured([*spec.path.split(), "--help"], capsys)
    usage_line = usage.splitlines()[0]
    command: Any = typer.main.get_command(app)
    for part in spec.path.split():
        command = command.commands[part]
    names = {n for p in command.params for n in (*p.opts, *p.secondary_opts)}
    for way in given.split(", "):
        argument = way.removeprefix("the ").removesuffix(" argument")
        assert way in names or (argument != way and argument in usage_line.split("[OPTIONS]")[1]), (way, err)


def test_an_unknown_embedder_or_embedder_setting_is_refused_before_any_run_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the embedder of lvm ingest, elm prepare, train-highlight-scorer, train-highlight-reranker and elm
    # compare-lm was first looked at by the run, which stayed behind failed (as ingest's was); so was the
    # embedder setting where a config names none
    articles = tmp_path / "articles.txt"
    articles.write_text("One sentence about parsers. Another one about dates.\n")
    papers = tmp_path / "scitldr.jsonl"
    papers.write_text(json.dumps({"source": ["A sentence."], "source_labels": [1], "title": "t"}) + "\n")
    meetings = tmp_path / "qmsum.jsonl"
    meetings.write_text("{}\n")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"document": "a long text about parsers", "summary": "parsers"}) + "\n")
    for argv in (
        ["lvm", "ingest", str(articles), "--embedder", "nosuch"],
        ["elm", "prepare", "--data", str(pairs), "--embedder", "nosuch", "--out", str(tmp_path / "elm")],
        ["train-highlight-scorer", "--scitldr-train", str(papers), "--embedder", "nosuch"],
        ["train-highlight-reranker", "--qmsum-train", str(meetings), "--embedder", "nosuch"],
        ["elm", "compare-lm", "--data", str(pairs), "--embedder", "nosuch", "--out", str(tmp_path / "cmp")],
    ):
        code, _, err = run_captured(argv, capsys)
        assert code == 2 and "--embedder: 'nosuch' is neither a known embedder (minilm" in err, (argv, err)
        assert len(err.strip().splitlines()) == 1, err
    monkeypatch.setenv("TLDRLAB_EMBEDDER", "nosuch")
    get_settings.cache_clear()
    thread = tmp_path / "Posts.xml"  # the embedder is looked at first: the file is not read
    thread.write_text("<posts/>\n")
    for argv in (["lvm", "ingest", str(articles)], ["ingest", str(thread)]):
        code, _, err = run_captured(argv, capsys)
        said = "the embedder setting (TLDRLAB_EMBEDDER): 'nosuch' is neither a known embedder (minilm"
        assert code == 2 and said in err, (argv, err)
        assert len(err.strip().splitlines()) == 1, err
    assert open_registry().list() == []
