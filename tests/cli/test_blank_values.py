"""A blank model reference, run id, data path or other path is a usage error naming what is blank (one line,
exit 2), never the working directory: Path("") is Path("."), so `tldrlab eval ""` answered "no saved model in
/home/me", `--home ""` put the home in the working directory and `runs show ""` took the only run."""

from __future__ import annotations

from pathlib import Path

import pytest

from cliutil import run_captured

BLANK_COMMANDS = [
    # "" answered pydantic's "String should have at least 1 character", not what " " says
    (["eval", ""], "model_run: is empty: give a model directory, a model name or a run id"),
    (["eval", "  "], "model_run: is empty: give a model directory, a model name or a run id"),
    (["generate", "", "-p", "hi"], "model_run: is empty: give a model directory, a model name or a run id"),
    (["score", "", "--text", "hi"], "model_run: is empty: give a model directory, a model name or a run id"),
    (["eval", "some-run", "--data", ""], "data: is empty: give a file or directory"),
    (["generate", "some-run", "--dataset", " "], "dataset: is empty"),
    (["train", "--data", ""], "data.path: is empty: give a file or directory"),
    (["tokenizer", "train", ""], "corpus.0: is empty"),
    (["ingest", ""], "path: is empty"),
    (["--home", "", "runs", "list"], "--home is empty: give a path"),
    (["eval", "some-run", "--home", " "], "--home is empty: give a path"),
    (["eval", "some-run", "--config", ""], "--config is empty: give a path"),
    (["train", "--resume", ""], "the run id to resume is empty"),
    (["tokenizer", "show", ""], "the tokenizer is empty"),
    (["runs", "show", ""], "the run id is empty"),
    (["runs", "logs", " "], "the run id is empty"),
    (["runs", "delete", ""], "the run id is empty"),
    (["runs", "export", "some-run", "--out", ""], "--out is empty: give a path"),
    (["runs", "import", ""], "ARCHIVE is empty: give a path"),
    # a blank source was refused as "the model reference is empty", naming no argument
    (["models", "import", ""], "source: is empty: give a model directory, a model name or a run id"),
    (["models", "import", " "], "source: is empty: give a model directory, a model name or a run id"),
    # the data commands' options mark their path as the run configs' do (it was a not_found, exit 3)
    (["data", "inspect", " "], "path: is empty: give a file or directory"),
    (["data", "inspect", ""], "path: is empty: give a file or directory"),
    (["data", "register", " "], "path: is empty: give a file or directory"),
    # a blank listing filter was read as no filter (every run listed)
    (["runs", "list", "--kind", ""], "kind: is empty: give a value or leave the filter out"),
    (["runs", "list", "--kind", " "], "kind: is empty"),
    (["runs", "list", "--parent", ""], "parent_id: is empty: give a value or leave the filter out"),
    (["runs", "list", "--parent", " "], "parent_id: is empty"),
    # a list option's blank value was dropped: `runs prune --kind ''` read as no kinds (every kind pruned)
    (["runs", "prune", "--kind", "", "--dry-run"], "--kind is empty: give a value (or [] for none)"),
    (["runs", "prune", "--kind", " , ", "--dry-run"], "--kind is empty"),
]


@pytest.mark.parametrize(("argv", "named"), BLANK_COMMANDS, ids=[" ".join(a) for a, _ in BLANK_COMMANDS])
def test_a_blank_path_or_reference_is_a_one_line_usage_error_naming_it(
    argv: list[str],
    named: str,
    tldrlab_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    workdir = tmp_path / "workdir"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    code, out, err = run_captured(argv, capsys)
    assert code == 2, (code, out, err)
    assert len(err.strip().splitlines()) == 1 and named in err, err
    assert str(workdir) not in err and "Traceback" not in err
    assert not (workdir / "runs").exists()  # no home made in the working directory
