"""The `tldrlab` command: help everywhere, `data inspect` on real data, bad input -> message + exit code."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cliutil import run_captured
from tldrlab.cli.main import app

runner = CliRunner()


def _is_group(command: Any) -> bool:
    return hasattr(command, "list_commands")  # typer bundles its own click: no isinstance check


def _commands() -> Iterator[tuple[list[str], Any]]:
    root = typer.main.get_command(app)
    ctx = root.make_context("tldrlab", ["--help"], resilient_parsing=True)

    def walk(command: Any, path: list[str]) -> Iterator[tuple[list[str], Any]]:
        yield path, command
        if _is_group(command):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None
                yield from walk(sub, [*path, name])

    yield from walk(root, [])


def test_console_script_help_in_a_real_process() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tldrlab", "--help"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "data" in result.stdout and "runs" in result.stdout


def test_listing_the_commands_imports_no_heavy_library() -> None:
    """`tldrlab --help` stays fast: the command tree (help of every group) never loads torch and friends."""
    code = (
        "import sys, typer; from tldrlab.cli.main import app\n"
        "root = typer.main.get_command(app)\n"
        "ctx = root.make_context('tldrlab', [], resilient_parsing=True)\n"
        "root.get_help(ctx); [g.get_help(ctx) for g in root.commands.values() if hasattr(g, 'commands')]\n"
        "heavy = ('torch', 'transformers', 'faiss', 'numpy', 'wandb', 'optuna', 'sentence_transformers')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_group_and_command_has_help() -> None:
    paths = [path for path, _ in _commands()]
    assert ["data", "inspect"] in paths and ["data", "formats"] in paths and ["runs", "list"] in paths
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output


def test_every_command_help_shows_an_example() -> None:
    missing = [
        " ".join(path)
        for path, command in _commands()
        if not _is_group(command) and "example" not in (command.help or "").lower()
    ]
    assert missing == [], f"commands whose --help has no example: {missing}"


# untraced (`no_cover`): the whole beer dump through the readers under tracing took ~2.5x as long, and
# tests/data/test_inspect.py::test_inspect_beer_threads (traced) inspects the same dump; the tests of
# tests/data and tests/cli give the same term-missing report without this one
@pytest.mark.no_cover
def test_inspect_beer_dump_as_json(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_captured(
        ["data", "inspect", str(shared_data / "stackexchange_beer"), "--json"], capsys
    )
    assert code == 0
    stats = json.loads(out)["total"]
    assert (stats["threads"], stats["threads_with_accepted_answer"], stats["answers"]) == (663, 410, 1572)
    assert stats["reader_counts"]["rows"] == 2354


def test_inspect_table_output_and_formats(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_captured(
        ["data", "inspect", str(shared_data / "debian_descriptions"), "--split", "val"], capsys
    )
    assert code == 0 and "654" in out and "document_words" in out and "debian" in out
    code, out, _ = run_captured(["data", "formats", "--json"], capsys)
    from tldrlab.data.readers import READERS

    assert code == 0 and set(json.loads(out)) == set(READERS)


def test_inspect_prints_large_lengths_with_every_digit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A document of two million words: its lengths read `2,000,001` (as the counts do), not `2e+06`."""
    path = tmp_path / "big.jsonl"
    rows = [
        {"id": "a", "document": "w " * 2_000_001, "summary": "s"},
        {"id": "b", "document": "w", "summary": "s"},
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    code, out, _ = run_captured(["data", "inspect", str(path), "--format", "pairs"], capsys)
    assert code == 0
    line = next(line for line in out.splitlines() if line.startswith("document_words"))
    # count, mean, median, p95 (numpy's linear interpolation: 1 + 0.95 * 2,000,000) and max
    assert line.split() == ["document_words", "2", "1,000,001", "1,000,001", "1,900,001", "2,000,001"]
    assert "e+0" not in out


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[Path, list[str], list[str]]]:
    """name -> (file, extra CLI args, fragments the error message must contain)."""
    good = json.dumps({"id": "a", "document": "Doc.", "summary": "S"})
    cases: dict[str, tuple[str, str, list[str], list[str]]] = {
        "bad json line": (
            "d.jsonl",
            good + '\n{"id": "b", "document": \n',
            ["--format", "debian"],
            ["line 2"],
        ),
        "missing field": (
            "d.jsonl",
            good + "\n" + json.dumps({"id": "b", "document": "x"}) + "\n",
            ["--format", "debian"],
            ["line 2", "field 'summary'", "missing"],
        ),
        "wrong type": (
            "d.jsonl",
            good + "\n" + json.dumps({"id": "b", "document": ["x"], "summary": "s"}) + "\n",
            ["--format", "debian"],
            ["line 2", "field 'document'", "expected a string, got list"],
        ),
        "nested field": (
            "t.json",
            json.dumps([{"id": "t", "posts": [{"id": "p", "text": "ok"}, {"id": "q", "text": 5}]}]),
            [],
            ["item 0", "field 'posts[1].text'"],
        ),
        "bad xml": (
            "Posts.xml",
            '<?xml version="1.0"?>\n<posts>\n<row Id="1" Body="a < b" />\n</posts>\n',
            [],
            ["line 3", "not valid XML"],
        ),
        "empty file": ("e.jsonl", "", ["--format", "debian"], ["file is empty"]),
    }
    result = {}
    for name, (file_name, content, args, fragments) in cases.items():
        folder = tmp_path / name.replace(" ", "_")
        folder.mkdir()
        path = folder / file_name
        path.write_text(content, encoding="utf-8")
        result[name] = (path, args, [str(path), *fragments])
    return result


def test_each_malformed_input_gives_a_message_and_exit_code(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, (path, args, fragments) in _bad_inputs(tmp_path).items():
        code, out, err = run_captured(["data", "inspect", str(path), *args], capsys)
        assert code == 2, (name, out, err)
        assert "Traceback" not in err and "[invalid_input]" in err, (name, err)
        flat = " ".join(err.split())  # rich may wrap long lines
        for fragment in fragments:
            assert fragment in flat, (name, fragment, err)


def test_skip_invalid_reports_what_was_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _bad_inputs(tmp_path)["missing field"][0]
    code, out, _ = run_captured(
        ["data", "inspect", str(path), "--format", "debian", "--skip-invalid", "--json"], capsys
    )
    stats = json.loads(out)["total"]
    assert code == 0 and stats["records"] == 1 and stats["skipped"] == 1
    assert "line 2" in stats["skipped_examples"][0]
    code, out, _ = run_captured(
        ["data", "inspect", str(path), "--format", "debian", "--skip-invalid"], capsys
    )
    assert code == 0 and "skipped" in out and "line 2" in " ".join(out.split())


def test_bad_options_and_missing_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_captured(["data", "inspect", str(tmp_path / "nope.jsonl")], capsys)
    assert code == 3 and "[not_found]" in err and "nope.jsonl" in err
    code, _, err = run_captured(["data", "inspect", str(tmp_path), "--map", "document"], capsys)
    assert code == 2 and "--map expects KEY=VALUE" in err
    code, _, err = run_captured(["data", "inspect", str(tmp_path), "--format", "rss"], capsys)
    assert code == 2 and "unknown format 'rss'" in err


def test_console_script_error_in_a_real_process(tmp_path: Path) -> None:
    path = tmp_path / "Posts.xml"
    path.write_text("<posts><row Id='1'", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "tldrlab", "data", "inspect", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "not valid XML" in result.stderr and str(path) in " ".join(result.stderr.split())


def _usage_error(err: str, command: str) -> str:
    """The message of a usage error printed as one `error [usage] ...` line and one help hint naming
    `command` (nothing else: no usage line, no blank line), or an AssertionError."""
    lines = err.splitlines()
    assert len(lines) == 2, err
    named = re.escape(f" {command}" if command else "")
    assert re.fullmatch(rf"Try '[^' ]+(?: -m [^' ]+)?{named} --help' for help\.", lines[1]), err
    assert lines[0].startswith("error [usage] "), err
    return lines[0].removeprefix("error [usage] ")


def test_every_command_answers_an_unknown_option_in_one_line_and_a_hint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Typer's usage errors printed the usage line, the hint, a blank line and "Error: ...": four lines where
    every other error is one. Each command, group or not, answers with one line and the hint, exit 2."""
    for path, _ in _commands():
        code, out, err = run_captured([*path, "--no-such-flag"], capsys)
        assert code == 2 and out == "", (path, code, out, err)
        message = _usage_error(err, " ".join(path))
        assert message.startswith("No such option: --no-such-flag"), (path, err)


def test_every_option_given_without_its_value_is_one_line_and_a_hint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`tldrlab runs logs x --tail` printed the error alone: click raises "requires an argument" without the
    command's context, which the hint is made from. Every command and group (`--threads`) answers alike."""
    checked = []
    for path, command in _commands():
        options = [p for p in command.params if p.param_type_name == "option" and not p.is_flag]
        if not options:
            continue
        name = options[0].opts[0]
        code, out, err = run_captured([*path, name], capsys)
        assert code == 2 and out == "", (path, name, code, out, err)
        assert _usage_error(err, " ".join(path)) == f"Option '{name}' requires an argument.", (path, err)
        checked.append(" ".join(path))
    assert {"", "runs logs", "eval", "elm train", "sweep status"} <= set(checked), checked


@pytest.mark.parametrize(
    ("argv", "command", "message"),
    [
        (["runs", "show"], "runs show", "Missing argument 'RUN_ID'."),
        (["runs", "compare", "--tolerance", "0"], "runs compare", "Missing argument 'IDS'."),
        (["runs", "nope"], "runs", "No such command 'nope'."),
        (["models", "import", "x.gguf", "--dtype", "float16"], "models import",
         "Invalid value for '--dtype': 'float16' is not one of 'float32', 'bfloat16'."),
        (["--threads", "0", "runs", "list"], "", "Invalid value for --threads: must be at least 1, got 0"),
    ],
)  # fmt: skip
def test_usage_errors_are_one_line_and_a_hint(
    argv: list[str], command: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_captured(argv, capsys)
    assert code == 2 and out == ""
    assert _usage_error(err, command) == message


def test_a_missing_argument_is_named_as_help_and_the_docs_show_it(capsys: pytest.CaptureFixture[str]) -> None:
    """Every command missing its required argument names it as `--help` does (usage line and Arguments) and
    docs/cli.md do (`NAME.upper()`): the hand-written ones said `Missing argument 'run_id'.` where the docs
    showed RUN_ID and the generated commands named theirs in capitals (MODEL_RUN, IDS)."""
    checked = []
    for path, command in _commands():
        required = [p for p in command.params if p.param_type_name == "argument" and p.required]
        if _is_group(command) or not required:
            continue
        code, out, err = run_captured(path, capsys)
        message = _usage_error(err, " ".join(path))
        shown = re.fullmatch(r"Missing argument '([^']+)'\.", message)
        assert code == 2 and out == "" and shown, (path, err)
        name = shown[1]
        assert name == name.upper() == (required[0].metavar or required[0].name.upper()), (path, name)
        code, help_text, _ = run_captured([*path, "--help"], capsys)
        usage = " ".join(help_text.split("\n\n")[0].split())
        assert code == 0 and f"{{{name}}}" in usage, (path, usage)
        assert re.search(rf"^  {re.escape(name)}(\.\.\.)? ", help_text, re.MULTILINE), (path, help_text)
        checked.append(" ".join(path))
    assert {"runs show", "runs logs", "runs import", "tokenizer show", "eval"} - set(checked) == {"eval"}


def test_a_usage_error_in_a_real_process_names_the_command_as_typed() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tldrlab", "runs", "show"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "error [usage] Missing argument 'RUN_ID'.",
        "Try 'python -m tldrlab runs show --help' for help.",
    ]


def test_a_group_without_a_command_still_shows_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_captured(["runs"], capsys)
    assert code == 2 and out == "" and "Commands:" in err and "delete" in err
