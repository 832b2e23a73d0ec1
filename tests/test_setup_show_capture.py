"""A test's `capsys` / `capfd` hold what it prints after a fixture is set up mid-test
(`request.getfixturevalue`, as the tests choosing a database backend do), under `pytest --setup-show` too:
there the output went past them (tests/conftest.py, `_recapture`), and such tests failed under that option
alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SELF = Path(__file__).resolve()


@pytest.fixture
def set_up_late() -> str:
    return "late"


def test_capsys_holds_what_is_printed_after_a_fixture_set_up_mid_test(
    request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    print("before")
    assert request.getfixturevalue("set_up_late") == "late"
    print("after")
    sys.stderr.write("err\n")
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("before\nafter\n", "err\n")


def test_capfd_holds_what_is_written_after_a_fixture_set_up_mid_test(
    request: pytest.FixtureRequest, capfd: pytest.CaptureFixture[str]
) -> None:
    assert request.getfixturevalue("set_up_late") == "late"
    print("after", flush=True)
    os.write(1, b"fd\n")  # as a child process or a C library writes
    assert capfd.readouterr().out == "after\nfd\n"


@pytest.mark.parametrize(
    "option",
    [
        ["--setup-show"],
        # the conftest's hook reads --setup-show's option, which a run without that plugin does not have
        ["-p", "no:setuponly"],
    ],
)
def test_the_capture_tests_pass_with_setup_show_and_without_its_plugin(
    tmp_path: Path, option: list[str]
) -> None:
    # the option is the caller's, not a test's: the two tests above in a pytest of their own given it
    nested = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *option,
            f"--basetemp={tmp_path / 'nested'}",
            f"{SELF}::test_capsys_holds_what_is_printed_after_a_fixture_set_up_mid_test",
            f"{SELF}::test_capfd_holds_what_is_written_after_a_fixture_set_up_mid_test",
        ],
        cwd=SELF.parents[1],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert nested.returncode == 0, nested.stdout + nested.stderr
    assert "2 passed" in nested.stdout, nested.stdout
    assert ("SETUP    F set_up_late" in nested.stdout) == ("--setup-show" in option), nested.stdout
