"""Weights & Biases in offline mode: config, metrics, a predictions table and the model artifact, with every
file inside the run directory; disabled mode writes nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cliutil import run_captured
from tldrlab.errors import ConfigError
from tldrlab.runs import open_registry
from tldrlab.runs.run import start_run
from tldrlab.track.wandb_tracker import WandbTracker


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()} if root.exists() else set()


@pytest.mark.slow
def test_offline_mode_keeps_every_file_in_the_run_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_home = tmp_path / "userhome"
    fake_home.mkdir()
    monkeypatch.setenv("HOME", str(fake_home))
    monkeypatch.chdir(tmp_path)
    for key in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    before = _files(tmp_path) - _files(Path(os.environ["TLDRLAB_HOME"]))
    with start_run("train", {"model": "toy"}) as run:
        model_dir = run.dir / "model"
        model_dir.mkdir()
        (model_dir / "weights.bin").write_bytes(b"\x00" * 64)
        tracker = WandbTracker.start(run, mode="offline", config={"lr": 0.1})
        tracker.log(1, {"train_loss": 2.0, "lr": 0.1})
        tracker.log(2, {"train_loss": 1.5, "note": "strings are skipped"})
        tracker.log_table("eval_predictions", [{"id": "a", "prediction": "x", "reference": "y"}], step=2)
        tracker.log_model(model_dir)
        tracker.finish()
    wandb_files = _files(run.dir / "wandb")
    assert any(p.suffix == ".wandb" for p in wandb_files), sorted(map(str, wandb_files))[:20]
    outside = _files(tmp_path) - before - _files(run.dir)
    # the registry database lives in TLDRLAB_HOME, outside the run dir, and is not wandb's
    outside = {p for p in outside if "tldrlab.db" not in p.name}
    assert outside == set(), sorted(map(str, outside))
    assert _files(fake_home) == set()


def test_disabled_mode_writes_nothing_and_bad_mode_is_refused() -> None:
    with start_run("train", {}) as run:
        tracker = WandbTracker.start(run, mode="disabled")
        tracker.log(1, {"loss": 1.0})
        tracker.log_table("t", [{"a": 1}])
        tracker.finish()
        assert not (run.dir / "wandb").exists()
        with pytest.raises(ConfigError, match="wandb mode"):
            WandbTracker.start(run, mode="sometimes")


def test_online_mode_without_an_api_key_is_one_line_saying_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """wandb's UsageError ("No API key configured") ended the run in a traceback; then, refused in one line by
    wandb.init inside the run, it left a failed run behind. It is refused before a run exists, from what wandb
    would read (the environment, the netrc), asking no server: whatever the W&B host, none is reached here."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_IDENTITY_TOKEN_FILE", raising=False)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens: a contact would fail
    netrc = tmp_path / "netrc"
    netrc.write_text("machine example.org login user password other-hosts-key\n")  # none for the W&B host
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HOME", str(tmp_path))
    for argv in (["--wandb", "online"], ["--config", str(_config_file(tmp_path, "wandb: online"))]):
        code, _, err = run_captured(["smoke", "--steps", "1", *argv], capsys)
        assert open_registry().list() == [], [r.status for r in open_registry().list()]
        assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert "invalid_config" in err and "No API key configured" in err and "--wandb offline" in err, err
        assert str(netrc) in err, err
    # the mode from the environment ($WANDB_MODE) where the config names none
    monkeypatch.setenv("WANDB_MODE", "online")
    code, _, err = run_captured(
        ["smoke", "--steps", "1", "--config", str(_config_file(tmp_path, "wandb: null"))], capsys
    )
    assert code == 2 and "No API key configured" in err and open_registry().list() == [], err
    # offline and disabled modes are not checked: they run without a key
    for mode in ("offline", "disabled"):
        code, _, err = run_captured(["smoke", "--steps", "1", "--wandb", mode], capsys)
        assert code == 0, err
    assert [r.status for r in open_registry().list()] == ["completed", "completed"]
    # a key where wandb reads it passes the check (whether W&B accepts it is wandb.init's to find)
    from tldrlab.track.wandb_tracker import check_online_credentials

    netrc.write_text("machine 127.0.0.1:9 login user password a-key\n")
    check_online_credentials("online")
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    monkeypatch.setenv("WANDB_API_KEY", "a-key")
    check_online_credentials("online")


def _config_file(directory: Path, text: str) -> Path:
    path = directory / "smoke.yaml"
    path.write_text(text + "\n")
    return path
