"""Settings come from TLDRLAB_* variables, then tldrlab.toml, then defaults: the environment wins."""

from __future__ import annotations

from pathlib import Path

import pytest

from cliutil import run_captured
from tldrlab.config import Settings, default_home, get_settings


def test_defaults_and_home_from_env(tldrlab_home: Path) -> None:
    settings = get_settings()
    assert settings.home == tldrlab_home
    assert settings.resolved_database_url == f"sqlite:///{tldrlab_home / 'tldrlab.db'}"
    assert settings.embedder == "minilm-onnx" and settings.queue_url is None and settings.api_key is None
    assert settings.ensure_home() == tldrlab_home and settings.runs_dir.is_dir()


def test_toml_file_and_environment_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "tldrlab.toml"
    toml.write_text(
        'embedder = "/models/mpnet"\n'
        'database_url = "postgresql://u@localhost/tl"\n'
        "max_body_bytes = 1024\n"
        'api_key = "from-file"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("TLDRLAB_CONFIG", str(toml))
    monkeypatch.setenv("TLDRLAB_MAX_BODY_BYTES", "2048")  # env beats the file
    get_settings.cache_clear()
    settings = get_settings()
    assert settings.embedder == "/models/mpnet"
    assert settings.resolved_database_url == "postgresql://u@localhost/tl"
    assert settings.max_body_bytes == 2048
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "from-file"
    assert "from-file" not in repr(settings)  # secrets never print


def test_toml_in_working_directory_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tldrlab.toml").write_text('queue_url = "redis://localhost:6379/0"\n', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert Settings().queue_url == "redis://localhost:6379/0"
    monkeypatch.setenv("TLDRLAB_QUEUE_URL", "redis://other:1/2")
    assert Settings().queue_url == "redis://other:1/2"


def test_default_home_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_home() == tmp_path / "xdg" / "tldrlab"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_home() == Path.home() / ".local" / "share" / "tldrlab"


def test_bad_value_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("TLDRLAB_MAX_BODY_BYTES", "lots")
    with pytest.raises(ValidationError, match="max_body_bytes"):
        Settings()


@pytest.mark.parametrize(
    ("variable", "toml", "message"),
    [
        (
            "TLDRLAB_THREADS",
            None,
            "threads (TLDRLAB_THREADS or tldrlab.toml): Input should be a valid integer",
        ),
        ("TLDRLAB_RETENTION__KEEP_BEST", None, "retention.keep_best (TLDRLAB_RETENTION__KEEP_BEST or"),
        # a level logging does not know was a ValueError traceback from logging's setLevel
        (
            "TLDRLAB_LOG_LEVEL",
            None,
            "log_level (TLDRLAB_LOG_LEVEL or tldrlab.toml): Input should be 'DEBUG', 'INFO', 'WARNING'",
        ),
        # a list in an environment variable is JSON: pydantic-settings' SettingsError was a traceback
        ("TLDRLAB_RETENTION__KINDS", None, "retention: TLDRLAB_RETENTION__KINDS='abc' is not valid JSON"),
        (None, "threads = 'abc'\n", "threads (TLDRLAB_THREADS or tldrlab.toml)"),
        (None, "home = \n", "tldrlab.toml: not valid TOML"),
        # a URL of another scheme was taken for a relative directory: `runs upload` wrote ./ftp:/host and said
        # "uploaded"
        (
            None,
            "file_store = 'ftp://backup/runs'\n",
            "file_store (TLDRLAB_FILE_STORE or tldrlab.toml): ftp://",
        ),
    ],
)
def test_a_bad_setting_is_a_message_and_exit_2_from_every_command(
    variable: str | None,
    toml: str | None,
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # every command reads the settings first: a bad TLDRLAB_* value or a tldrlab.toml that is not TOML was a
    # pydantic / tomllib traceback from `tldrlab runs list` and everything else
    monkeypatch.chdir(tmp_path)
    if variable:
        monkeypatch.setenv(variable, "abc")
    if toml:
        (tmp_path / "tldrlab.toml").write_text(toml, encoding="utf-8")
    get_settings.cache_clear()
    code, _, err = run_captured(["runs", "list"], capsys)
    get_settings.cache_clear()
    assert code == 2 and "Traceback" not in err and message in " ".join(err.split()), err


def test_a_home_that_cannot_be_made_is_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a home below a file (or anywhere unwritable) was a FileNotFoundError / PermissionError traceback
    (tmp_path / "a-file").write_text("not a directory", encoding="utf-8")
    home = tmp_path / "a-file" / "home"
    code, _, err = run_captured(["--home", str(home), "runs", "list"], capsys)
    assert code == 2 and "Traceback" not in err, err
    assert f"cannot use {home} as the home directory" in " ".join(err.split())


def test_a_home_under_tilde_is_the_users_and_a_blank_home_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`home = "~/tldrlab"` in tldrlab.toml (or a quoted TLDRLAB_HOME) made a directory named "~" in the
    working directory; an empty TLDRLAB_HOME put the home in the working directory itself."""
    workdir, user_home = tmp_path / "work", tmp_path / "me"
    workdir.mkdir()
    user_home.mkdir()
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("HOME", str(user_home))
    monkeypatch.delenv("TLDRLAB_HOME")
    monkeypatch.delenv("TLDRLAB_EMBED_CACHE_DIR", raising=False)
    (workdir / "tldrlab.toml").write_text(
        'home = "~/tldrlab"\nembed_cache_dir = "~/cache"\n', encoding="utf-8"
    )
    get_settings.cache_clear()
    assert get_settings().home == user_home / "tldrlab"
    assert get_settings().embed_cache_dir == user_home / "cache"
    code, _, err = run_captured(["runs", "list"], capsys)
    assert code == 0, err
    assert (user_home / "tldrlab" / "tldrlab.db").is_file() and not (workdir / "~").exists()
    for blank in ("", "  "):
        monkeypatch.setenv("TLDRLAB_HOME", blank)
        get_settings.cache_clear()
        code, _, err = run_captured(["runs", "list"], capsys)
        assert code == 2 and err.count("\n") == 1, err
        assert "home (TLDRLAB_HOME or" in err and "is empty: give a directory" in err, err
    assert sorted(p.name for p in workdir.iterdir()) == ["tldrlab.toml"]  # no home made here
