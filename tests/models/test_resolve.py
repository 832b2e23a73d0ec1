"""Model references: a path, a path under the home (`runs/<run>/model`), a run id or prefix, from anywhere."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch

from cliutil import run_captured
from tldrlab.config import get_settings
from tldrlab.digest.summarizers import build_summarizer
from tldrlab.errors import AmbiguousRunIdError, NotFoundError
from tldrlab.models import build_model, save_model
from tldrlab.models.resolve import resolve_model_ref
from tldrlab.runs import RunStatus, create_run, open_registry
from tldrlab.tokenizers import load_tokenizer, train_tokenizer


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    directory = tmp_path_factory.mktemp("tok")
    corpus = directory / "corpus.txt"
    corpus.write_text((shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:4_000])
    train_tokenizer("char", [corpus], 80, directory / "char")
    return directory / "char"


def run_with_model(tokenizer_dir: Path, kind: str = "train") -> str:
    record = create_run(kind, {"model": "char_lstm"})
    torch.manual_seed(0)
    tokenizer = load_tokenizer(tokenizer_dir)
    model = build_model("char_lstm", {"hidden_dim": 16}, tokenizer)
    save_model(model, tokenizer, Path(record.run_dir) / "model")
    return record.id


def test_every_kind_of_reference_names_the_same_model(
    tokenizer_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = run_with_model(tokenizer_dir)
    model_dir = get_settings().home / "runs" / run_id / "model"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # `runs/<run>/model` must not depend on the working directory

    for ref in (run_id, run_id[:-3], f"runs/{run_id}/model", f"runs/{run_id}", str(model_dir)):
        assert resolve_model_ref(ref).path.resolve() == model_dir.resolve(), ref
    assert resolve_model_ref(run_id).source == "run"
    assert resolve_model_ref(f"runs/{run_id}").source == "home"
    # an existing relative path wins over the home
    for where in (elsewhere / "mine", get_settings().home / "mine"):
        where.mkdir()
        shutil.copytree(model_dir, where / "model")
    found = resolve_model_ref("mine")
    assert (found.source, found.path) == ("path", elsewhere / "mine" / "model")
    # an existing path that holds no model says so
    (elsewhere / "empty").mkdir()
    with pytest.raises(NotFoundError, match="no saved model in"):
        resolve_model_ref("empty")


def test_unknown_and_modelless_references_say_what_was_tried(tokenizer_dir: Path) -> None:
    with pytest.raises(NotFoundError, match=r"no model named 'nope'.*not a run id"):
        resolve_model_ref("nope")
    empty = create_run("ingest", {})
    with pytest.raises(NotFoundError, match=rf"run {empty.id} .* has no saved model"):
        resolve_model_ref(empty.id)


def test_commands_and_summarizers_take_home_relative_paths_and_run_ids(
    tokenizer_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = run_with_model(tokenizer_dir)
    monkeypatch.chdir(tmp_path)
    for ref in (f"runs/{run_id}/model", run_id):
        code, out, err = run_captured(
            ["generate", ref, "-p", "ROMEO:", "--max-new-tokens", "3", "--json"], capsys
        )
        assert code == 0, err
        assert '"outputs"' in out

    model_dir = (get_settings().home / "runs" / run_id / "model").resolve()
    for ref in (f"runs/{run_id}/model", run_id):  # the local summarizer loads through the same resolver
        local = build_summarizer("local", {"model_path": ref})
        assert Path(str(resolve_model_ref(local.model_path))).resolve() == model_dir


def test_a_directory_of_several_gguf_files_asks_for_one(tmp_path: Path) -> None:
    # the message said "expected ... a directory holding exactly one .gguf file" without saying it held two
    folder = tmp_path / "ggufs"
    folder.mkdir()
    for name in ("b.Q8_0.gguf", "a.Q4_1.gguf"):
        (folder / name).write_bytes(b"GGUF")
    message = f"{folder} holds 2 .gguf files (a.Q4_1.gguf, b.Q8_0.gguf): name the one to use, e.g. {folder}/a"
    with pytest.raises(NotFoundError, match=re.escape(message)):
        resolve_model_ref(str(folder))


def test_a_training_run_without_its_model_yet_says_why(tokenizer_dir: Path) -> None:
    # `tldrlab eval RUN` on a run still training, or stopped by Ctrl-C, said only "has no saved model in
    # DIR", which read like a broken run
    registry = open_registry()
    for status, why in (
        (RunStatus.RUNNING, "yet: it saves one when it completes"),
        (RunStatus.QUEUED, "yet: it saves one when it completes"),
        (RunStatus.CANCELLED, "it was stopped before saving one (a resumable run saves it once resumed)"),
    ):
        run = create_run("train", {})
        registry.update(run.id, status=status)
        with pytest.raises(
            NotFoundError, match=rf"run {run.id} \(train, {status.value}\) has no saved model in"
        ):
            resolve_model_ref(run.id)
        with pytest.raises(NotFoundError, match=re.escape(why)):
            resolve_model_ref(run.id)


def test_a_plain_name_is_the_stores_before_the_working_directorys(
    tokenizer_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A directory `./mymodel` beside a process hid the installed model `mymodel` (the API server then
    refused the name as a path outside its read roots, a worker loaded whatever lay beside it). A plain name
    is the store's; `./mymodel` is the directory; a plain name nothing else knows is still found here."""
    run_id = run_with_model(tokenizer_dir)
    model_dir = get_settings().home / "runs" / run_id / "model"
    installed = get_settings().models_dir / "mymodel"
    shutil.copytree(model_dir, installed)
    monkeypatch.chdir(tmp_path)
    for name in ("mymodel", "onlyhere", "train"):
        shutil.copytree(model_dir, tmp_path / name)
    found = resolve_model_ref("mymodel")
    assert (found.source, found.path) == ("installed", installed.absolute())
    assert resolve_model_ref("./mymodel").path == (tmp_path / "mymodel").absolute()
    assert resolve_model_ref("onlyhere").source == "path"
    with pytest.raises(NotFoundError, match="no model named 'onlyhere'"):
        resolve_model_ref("onlyhere", working_dir=False)
    # a run prefix several runs share names no run: the directory of that name is found, as before
    run_with_model(tokenizer_dir)
    assert resolve_model_ref("train").path == (tmp_path / "train").absolute()
    with pytest.raises(AmbiguousRunIdError):
        resolve_model_ref("train", working_dir=False)
