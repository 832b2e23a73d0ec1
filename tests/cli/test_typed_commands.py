"""Hand-written commands whose options are typed classes (`options.config_command`): their bounds and choices
are checked before anything runs, with a clear message and exit code 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from cliutil import run_captured
from tldrlab.errors import NotFoundError


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--log-level", "loud"], "'loud' is not one of 'critical', 'error', 'warning'"),
        (["serve", "--port", "70000"], "less than or equal to 65535"),
        (["serve", "--workers", "-1"], "greater than or equal to 0"),
        (["elm", "compare", "--data", "pairs.jsonl", "--minutes", "0"], "greater than 0"),
        (["elm", "compare", "--minutes", "5"], "data: Field required"),
        (["elm", "generate", "--model", "m", "--text", "a", "--temperature", "-1"], "greater than or equal"),
        (["elm", "generate", "--model", "m", "--text", "a", "--limit", "0"], "greater than or equal to 1"),
    ],
)
def test_bad_values_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_captured(argv, capsys)
    assert code == 2 and message in " ".join(err.split()) and "Traceback" not in out + err


def test_elm_compare_passes_its_settings_through(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-such-pairs"
    code, _, err = run_captured(["elm", "compare", "--data", str(missing), "--out", str(tmp_path)], capsys)
    assert code == NotFoundError.exit_code and f"data not found: {missing}" in err
