"""Run the real `tldrlab` entry point in-process, as the console script does (importable as `cliutil`)."""

from __future__ import annotations

import pytest

from tldrlab.cli.main import main


def run_cli(argv: list[str]) -> int:
    """`tldrlab *argv` in this process; returns its exit code."""
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def run_captured(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`run_cli`, then what it printed: (exit code, stdout, stderr)."""
    code = run_cli(argv)
    out, err = capsys.readouterr()
    return code, out, err
