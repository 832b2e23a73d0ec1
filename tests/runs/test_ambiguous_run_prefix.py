"""A run id prefix that several runs share is reported as ambiguous wherever a run is looked up by prefix,
never turned into "no such run" (which hides that a longer prefix would pick one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cliutil import run_captured
from tldrlab.config import get_settings
from tldrlab.elm.model import lm_source, resolve_elm_dir
from tldrlab.errors import AmbiguousRunIdError, ConflictError, InvalidConfigError, NotFoundError
from tldrlab.lvm.models import find_lvm
from tldrlab.runs import open_registry
from tldrlab.runs.aliases import promote
from tldrlab.runs.registry import RunRecord, RunStatus
from tldrlab.service.confine import resolve_model


@pytest.fixture
def three_tokenizer_runs(tmp_path: Path) -> None:
    registry = open_registry()
    for i in range(3):
        run_dir = tmp_path / f"tokenizer-2026-{i}"
        run_dir.mkdir()
        registry.insert(
            RunRecord(
                id=f"tokenizer-2026-{i}",
                kind="tokenizer",
                status=RunStatus.COMPLETED,
                config={},
                run_dir=str(run_dir),
                created_at=float(i),
            )
        )


def test_tokenizer_show_says_the_prefix_is_ambiguous(
    three_tokenizer_runs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_captured(["tokenizer", "show", "tokenizer-2026"], capsys)
    assert code == 3
    (line,) = err.strip().splitlines()  # one line, no traceback
    # the runs are named, so the user can retype one (it said only how many matched)
    assert line.endswith(
        "run id prefix 'tokenizer-2026' is ambiguous "
        "(3 runs match: tokenizer-2026-0, tokenizer-2026-1, tokenizer-2026-2)"
    ), line
    # a real miss is still "not found"
    code, _, err = run_captured(["tokenizer", "show", "tokenizer-1999"], capsys)
    assert code == 3 and "no tokenizer directory or run named 'tokenizer-1999'" in err


def test_other_prefix_lookups_let_the_ambiguity_through(three_tokenizer_runs: None) -> None:
    for lookup in (resolve_elm_dir, find_lvm, lm_source):
        with pytest.raises(AmbiguousRunIdError, match=r"is ambiguous \(3 runs match: tokenizer-2026-0, "):
            lookup("tokenizer-2026")
    with pytest.raises(NotFoundError, match="no ELM directory or run named 'tokenizer-1999'"):
        resolve_elm_dir("tokenizer-1999")
    # over the API: a 422 naming the field and the ambiguity (not "no model ... in the data roots")
    with pytest.raises(InvalidConfigError, match=r"^model: run id prefix 'tokenizer-2026' is ambiguous"):
        resolve_model("tokenizer-2026", "model", get_settings())
    # an alias that is the start of several run ids could never be reached by `find`: refused as a clash
    with pytest.raises(ConflictError, match="is \\(the start of\\) a run id"):
        promote("tokenizer-2026-0", "tokenizer-2026")
