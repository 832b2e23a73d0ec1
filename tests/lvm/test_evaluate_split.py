"""Which split `lvm evaluate` and `lvm generate --measure` measure: validation unless a test split is named.

Both defaulted to test data (`lvm evaluate` to the in-corpus test and the cross corpus, `--measure` to cross,
else test), so a plain command reported held-out numbers that someone would then choose by. Now no split
means `val`; `--split test` and `--split cross` are measured only when named, and the run's config, result,
files and summary say which split it was. Sequences without a validation split (`lvm sequences --val 0`)
get a one-line error naming `--split`, before any run exists.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from lvm_synthetic import rotating_table

from cliutil import run_captured
from tldrlab.errors import InvalidConfigError
from tldrlab.lvm.baselines import BASELINES
from tldrlab.lvm.sequences import SPLITS, TRAINED_ARTICLES, build_sequences, load_sequences
from tldrlab.lvm.store import ConceptTable
from tldrlab.runs import open_registry


def _uneven_table() -> ConceptTable:
    """Rotating concepts (tests/lvm/lvm_synthetic.py) in 12 articles of 6, 9, 12, ... concepts (at most 30):
    val and test splits of different sizes, so the number of windows scored says which split it was."""
    table = rotating_table(n_articles=12, length=30, dim=16, step=0.6)
    article = np.array([int(key.rsplit("-", 1)[1]) for key in table.article_keys])
    keep = table.positions < 6 + 3 * article
    return ConceptTable(
        ids=table.ids[keep],
        article_keys=[key for key, kept in zip(table.article_keys, keep, strict=True) if kept],
        positions=table.positions[keep],
        vectors=table.vectors[keep],
        embedder=table.embedder,
    )


@pytest.fixture(scope="module")
def sequences(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train / val / test sequences (2 val and 2 test articles of different lengths)."""
    built = build_sequences(_uneven_table(), context=4, seed=0, val_fraction=0.17, test_fraction=0.17)
    return built.save(tmp_path_factory.mktemp("lvm") / "sequences.npz")


@pytest.fixture(scope="module")
def no_val_sequences(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sequences built with `--val 0`: train and test only."""
    built = build_sequences(_uneven_table(), context=4, seed=0, val_fraction=0.0, test_fraction=0.17)
    assert built.split_names() == ["train", "test"]
    return built.save(tmp_path_factory.mktemp("lvm") / "no-val.npz")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained LVM for the sequences' 16-d concepts, saved as a model directory."""
    from tldrlab.lvm.models import LVMConfig, build_lvm, save_lvm

    return save_lvm(
        build_lvm("gru", LVMConfig(dim=16, hidden=8, layers=1, context=4)), tmp_path_factory.mktemp("model")
    )


def _windows(path: Path, split: str) -> int:
    return len(load_sequences(path).split_arrays(split))


def test_evaluate_without_a_split_measures_validation_only(
    sequences: Path, model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    val, test = _windows(sequences, "val"), _windows(sequences, "test")
    assert val != test  # the count below tells the splits apart
    out_dir = tmp_path / "report"
    argv = ["lvm", "evaluate", str(model_dir), "--sequences", str(sequences), "--out", str(out_dir)]
    code, out, err = run_captured(argv, capsys)
    assert code == 0, err
    shown = " ".join(out.split())
    assert f"validation split, {val} sequences" in shown and "test split" not in shown, shown
    # the files name the split (`evaluation.*` is the in-corpus test's, as it always was)
    names = sorted(p.name for p in out_dir.iterdir())
    assert names == ["evaluation_val.json", "evaluation_val.md", "evaluation_val.png"], names
    report = json.loads((out_dir / "evaluation_val.json").read_text())
    assert report["split"] == "val" and [r["name"] for r in report["results"]][: len(BASELINES)] == list(
        BASELINES
    )
    (record,) = open_registry().list(kind="lvm_evaluate")
    assert record.config["split"] == "val"  # the recorded config says what was measured
    result = json.loads((Path(record.run_dir) / "artifacts" / "result.json").read_text())
    assert result["split"] == "val" and [(r["split"], r["sequences"]) for r in result["reports"]] == [
        ("val", val)
    ]
    # summary metrics carry the split's prefix, never the test split's bare names
    assert "val_goal_met" in record.metrics and "val_copy_last_cosine" in record.metrics, record.metrics
    assert "goal_met" not in record.metrics and "copy_last_cosine" not in record.metrics


def test_a_named_test_or_cross_split_is_still_measured(
    sequences: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    test = _windows(sequences, "test")
    argv = ["lvm", "evaluate", "--sequences", str(sequences), "--split", "test", "--out", str(tmp_path)]
    code, out, err = run_captured([*argv, "--baselines", "copy_last,decay"], capsys)
    assert code == 0, err
    assert f"in-corpus test split, {test} sequences" in " ".join(out.split()), out
    report = json.loads((tmp_path / "evaluation.json").read_text())
    assert report["split"] == "test" and [r["name"] for r in report["results"]] == ["copy_last", "decay"]
    (record,) = open_registry().list(kind="lvm_evaluate")
    assert record.config["split"] == "test" and "copy_last_cosine" in record.metrics, record.metrics
    # sequences of one corpus have no cross split: named, it is refused before a run exists
    code, _, err = run_captured(
        ["lvm", "evaluate", "--sequences", str(sequences), "--split", "cross"], capsys
    )
    assert code == 2 and "the cross split of" in err and len(err.strip().splitlines()) == 1, err
    assert len(open_registry().list(kind="lvm_evaluate")) == 1


def test_sequences_without_a_validation_split_say_which_flag_to_use(
    no_val_sequences: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (
        ["lvm", "evaluate", str(model_dir), "--sequences", str(no_val_sequences)],
        ["lvm", "generate", str(model_dir), "--measure", "2", "--sequences", str(no_val_sequences)],
    ):
        code, out, err = run_captured(argv, capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and "Traceback" not in err, (argv, err)
        assert lines[0].startswith("error [invalid_input] the val split of "), lines
        assert "(splits with sequences: train, test)" in lines[0] and "--split test" in lines[0], lines
    assert open_registry().list(kind=("lvm_evaluate", "lvm_generate")) == []  # refused before a run
    # named, the test split is measured (the baselines are tuned on train when there is no val)
    argv = ["lvm", "evaluate", "--sequences", str(no_val_sequences), "--split", "test", "--json"]
    code, out, err = run_captured([*argv, "--baselines", "copy_last,decay"], capsys)
    assert code == 0, err
    assert [r["split"] for r in json.loads(out)["reports"]] == ["test"]


def test_a_config_recorded_with_the_old_unset_split_still_validates_as_the_default() -> None:
    # `split: null` was the default until val became it: a run queued before, then executed, resumed or shown,
    # failed its config's validation
    from tldrlab.kinds import validate_config

    for kind, config in (
        ("lvm_evaluate", {"runs": ["lvm_train-20261121-0101-ab12cd"], "split": None}),
        ("lvm_generate", {"run": "lvm_train-20261121-0101-ab12cd", "split": None}),
    ):
        assert validate_config(kind, config).split == "val", kind
    with pytest.raises(Exception, match="'val', 'test' or 'cross'"):
        validate_config("lvm_evaluate", {"runs": ["x"], "split": "train"})


def test_an_api_submit_on_sequences_without_the_split_is_refused_before_a_run_exists(
    no_val_sequences: Path, tldrlab_home: Path
) -> None:
    # accepted (202) over the API, then a failed run once a worker read the sequences
    import shutil

    from fastapi.testclient import TestClient

    from tldrlab.service.app import create_app

    for place in ("lvm/sequences.npz", "data/no-val.npz"):  # the home's own; one in the data roots
        (tldrlab_home / place).parent.mkdir(parents=True)
        shutil.copy(no_val_sequences, tldrlab_home / place)
    client = TestClient(create_app())
    for config in ({}, {"sequences": "no-val.npz"}):
        refused = client.post("/runs", json={"kind": "lvm_evaluate", "config": config})
        assert refused.status_code == 422, refused.text
        message = refused.json()["message"]
        assert "the val split of" in message and "--split test" in message, message
        assert str(tldrlab_home) not in message  # the server's paths are not shown
    assert open_registry().list() == []
    named = client.post("/runs", json={"kind": "lvm_evaluate", "config": {"split": "test"}})
    assert named.status_code == 202, named.text


def _split_articles(path: Path, split: str) -> set[str]:
    seqs = load_sequences(path)
    return {str(a) for a in seqs.articles[seqs.article_split == SPLITS[split]]}


def test_sequences_built_again_since_training_are_refused_where_they_would_score_trained_articles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lvm sequences` writes its file again in place: built again with another seed (or other articles), the
    held-out split was drawn anew, and `lvm evaluate RUN` scored the model on articles it had trained on."""
    from tldrlab.launch import execute
    from tldrlab.runs import RunStatus, create_run

    path = tmp_path / "sequences.npz"
    build_sequences(_uneven_table(), context=4, seed=0, val_fraction=0.17, test_fraction=0.17).save(path)
    trained = _split_articles(path, "train")
    config = {
        "sequences": str(path),
        "model": "gru",
        "model_settings": {"hidden": 8, "layers": 1},
        "train": {"max_steps": 2, "warmup_steps": 1, "batch_size": 16, "eval_every": 2, "device": "cpu",
                  "progress": False, "plot": False},
    }  # fmt: skip
    lvm = create_run("lvm_train", config)
    execute(lvm.id)
    # the sequences it trained on, or the same split built again, evaluate as before
    build_sequences(_uneven_table(), context=4, seed=0, val_fraction=0.17, test_fraction=0.17).save(path)
    code, _, err = run_captured(["lvm", "evaluate", lvm.id, "--baselines", "copy_last"], capsys)
    assert code == 0, err
    # another seed puts trained articles into validation and test
    build_sequences(_uneven_table(), context=4, seed=3, val_fraction=0.17, test_fraction=0.17).save(path)
    for split in ("val", "test"):
        assert _split_articles(path, split) & trained, split  # what the old evaluation scored
    said = f"{lvm.id} trained on"
    for argv, field in (
        (["lvm", "evaluate", lvm.id], "runs.0"),
        (["lvm", "evaluate", lvm.id, "--split", "test"], "runs.0"),
        (["lvm", "generate", lvm.id, "--measure", "2"], "run"),
    ):
        code, _, err = run_captured(argv, capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and "Traceback" not in err, (argv, err)
        assert f"[invalid_config] {field}: {said}" in lines[0] and str(path) in lines[0], (argv, lines)
    # refused before a run exists: the one evaluation is the one on the sequences it trained with
    assert len(open_registry().list(kind=("lvm_evaluate", "lvm_generate"))) == 1
    # a run submitted where no command line checked it (the API) fails saying so, in the run
    queued = create_run("lvm_evaluate", {"runs": [lvm.id]})
    with pytest.raises(InvalidConfigError, match=said):
        execute(queued.id)
    failed = open_registry().get(queued.id)
    assert failed.status == RunStatus.FAILED and said in (failed.message or ""), failed.message
    # a run that trained before it recorded its articles: the file it read, named the same, changed since
    for place in (Path(lvm.run_dir), Path(lvm.run_dir) / "model"):
        (place / TRAINED_ARTICLES).unlink()
    code, _, err = run_captured(["lvm", "evaluate", lvm.id], capsys)
    assert code == 2 and f"{lvm.id} recorded no articles it trained on, and the sequences {path}" in err, err
