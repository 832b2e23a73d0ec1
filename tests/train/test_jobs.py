"""Training jobs end to end on real data and real tiny models: char_lstm, gpt2, t5, via the CLI and jobs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cliutil import run_captured, run_cli
from tldrlab.cli.main import app
from tldrlab.runs.registry import RunStatus, open_registry
from tldrlab.runs.run import create_run, start_run
from tldrlab.train.jobs import parse_job_config, run_training, train_job

FAST = {"batch_size": 4, "device": "cpu", "progress": False, "log_every": 2, "lr": 3e-3}


@pytest.fixture
def shakespeare(shared_data: Path, tmp_path: Path) -> Path:
    """The first ~600 lines of tinyshakespeare (enough for a char LM to learn something in seconds)."""
    lines = (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8").splitlines()[:600]
    path = tmp_path / "shakespeare.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.slow
def test_char_lstm_job_learns_and_saves_a_loadable_model(shakespeare: Path) -> None:
    from tldrlab.evaluate import GenerateOptions
    from tldrlab.evaluate.generate import generate
    from tldrlab.models import load_model

    job = parse_job_config(
        {
            "model": "char_lstm",
            "model_settings": {"embedding_dim": 32, "hidden_dim": 64, "num_layers": 1},
            "data": {"path": str(shakespeare), "block_size": 64, "val_fraction": 0.1},
            "tokenizer": {"method": "char", "vocab_size": 100},
            "train": {**FAST, "max_steps": 40, "eval_every": 10, "checkpoint_every": 20, "lr": 1e-2},
            "wandb": "disabled",
        }
    )
    run_id = create_run("train", job).id
    from tldrlab.runs.run import execute_run

    with execute_run(run_id) as run:
        out = train_job(run, job)
    evals = [r["eval_perplexity"] for r in run.metrics() if "eval_perplexity" in r]
    assert len(evals) == 4 and evals == sorted(evals, reverse=True) and evals[-1] < evals[0] * 0.85, evals
    model, tokenizer, name = load_model(run.dir / "model")
    assert name == "char_lstm" and out["steps"] == 40
    text = generate(model, tokenizer, ["ROMEO:"], GenerateOptions(max_new_tokens=20, seed=1))[0][0]
    assert len(text) > 0
    manifest = json.loads((run.dir / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["metrics"]["best_eval_loss"] > 0
    assert any(a["path"].startswith("model/") for a in manifest["artifacts"])
    assert (run.dir / "plots" / "eval.png").exists()


@pytest.fixture
def debian_head(shared_data: Path, tmp_path: Path) -> Path:
    """The debian_descriptions directory with the first 300 train and 16 validation records: the job reads no
    more than that, and its tokenizer trains on the whole train file (19,293 records: 2.3 of the test's 5
    CPU-s)."""
    folder = tmp_path / "debian_descriptions"
    folder.mkdir()
    for split, n in (("train", 300), ("validation", 16)):
        name = f"debian_descriptions.{split}.jsonl"
        rows = (shared_data / "debian_descriptions" / name).read_text(encoding="utf-8").splitlines(True)
        (folder / name).write_text("".join(rows[:n]), encoding="utf-8")
    return folder


@pytest.mark.slow
def test_t5_job_on_debian_descriptions_reports_rouge_and_saves_hf_model(debian_head: Path) -> None:
    from transformers import T5ForConditionalGeneration

    job = parse_job_config(
        {
            "model": "t5",
            "model_settings": {
                "d_model": 32,
                "d_ff": 64,
                "num_layers": 1,
                "num_decoder_layers": 1,
                "num_heads": 2,
                "d_kv": 16,
            },
            "data": {
                "path": str(debian_head),
                "limit": 300,
                "max_val_examples": 16,
                "max_source_len": 48,
                "max_target_len": 16,
                "generate_every": 1,
                "generate_examples": 4,
            },
            "tokenizer": {"method": "bpe", "vocab_size": 400},
            "train": {**FAST, "max_steps": 6, "eval_every": 3, "checkpoint_every": 3},
            "wandb": "disabled",
        }
    )
    with start_run("train", job) as run:
        result = run_training(run, job)
    assert {"eval_loss", "eval_rouge1", "eval_rouge2", "eval_rougeL"} <= set(result.metrics)
    # the data has its own splits: validation came from the validation file, the tokenizer from train only
    manifest = json.loads((run.dir / "tokenizer" / "tokenizer_manifest.json").read_text())
    assert "validation" not in json.dumps(manifest.get("corpus")) and "train" in json.dumps(
        manifest["corpus"]
    )
    model = T5ForConditionalGeneration.from_pretrained(str(run.dir / "model"))
    assert model.config.d_model == 32
    assert json.loads((run.dir / "model" / "tldrlab_model.json").read_text())["name"] == "t5"


def test_gpt2_job_with_grad_accumulation_and_bf16(shakespeare: Path) -> None:
    from transformers import GPT2LMHeadModel

    job = parse_job_config(
        {
            "model": "gpt2",
            "model_settings": {"n_embd": 32, "n_layer": 1, "n_head": 2, "n_positions": 64},
            "data": {"path": str(shakespeare), "block_size": 128},  # clamped to n_positions
            "tokenizer": {"method": "bpe", "vocab_size": 300},
            "train": {
                **FAST,
                "max_steps": 4,
                "eval_every": 2,
                "checkpoint_every": 2,
                "grad_accum_steps": 2,
                "precision": "bf16",
            },
            "wandb": "disabled",
        }
    )
    with start_run("train", job) as run:
        result = run_training(run, job)
    assert result.steps == 4 and result.metrics["eval_perplexity"] > 1
    assert json.loads((run.dir / "manifest.json").read_text())["precision"] == "bf16"
    assert GPT2LMHeadModel.from_pretrained(str(run.dir / "model")).config.n_positions == 64


def test_cli_errors_are_clear_and_create_no_run(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    runner = CliRunner()
    missing = runner.invoke(app, ["train", "--model", "t5", "--data", str(tmp_path / "nope.jsonl")])
    assert missing.exit_code != 0
    bad_model = runner.invoke(app, ["train", "--model", "bert", "--data", str(tmp_path)])
    assert bad_model.exit_code != 0
    # a precision this machine cannot run failed once the run had started, leaving it failed
    text = tmp_path / "text.txt"
    text.write_text("To be, or not to be.\n" * 20)
    assert run_cli(["train", "--data", str(text), "--device", "cpu", "--precision", "fp16"]) == 2
    assert open_registry().list() == []
    cfg = tmp_path / "job.yaml"
    cfg.write_text("train: [1, 2]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "tldrlab", "train", "--config", str(cfg), "--data", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ,
    )
    assert proc.returncode == 2 and "invalid train config" in proc.stderr and "Traceback" not in proc.stderr


def test_a_char_tokenizer_the_corpus_cannot_give_is_refused_before_a_run_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tldrlab train` with a char tokenizer on a corpus where no character occurs min_frequency times was
    refused once the run trained the tokenizer, leaving a failed run: refused before a run exists now, with
    the advice the run gave, whether the method is named or the model family's own (char_lstm)."""
    text = tmp_path / "once.txt"
    text.write_text("abcdefghij\nklmnopqrst\n")  # every character once
    for method in (["--tokenizer-method", "char"], []):
        argv = ["train", "--model", "char_lstm", "--data", str(text), "--max-steps", "2", "-q", *method]
        code, _, err = run_captured(argv, capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert "no character of the corpus occurs min_frequency=2 times" in err
        assert "give it as --tokenizer DIR" in err
    assert open_registry().list() == []


def test_forum_threads_given_to_train_on_are_refused_before_a_run_exists(
    shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Stack Exchange dump (threads, not records) was refused by the run's read, which stayed behind as a
    failed train run."""
    argv = ["train", "--data", str(shared_data / "stackexchange_beer"), "--max-steps", "1", "-q"]
    code, _, err = run_captured(argv, capsys)
    assert code == 2 and "format 'stackexchange' holds threads, not records" in err, err
    assert len(err.strip().splitlines()) == 1 and open_registry().list() == []


def test_a_format_named_that_the_file_does_not_hold_is_refused_before_a_run_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`train --format scitldr input.txt` (and `ingest --format stackexchange` of a thread JSON) were refused
    by the run's read, which stayed behind as a failed run."""
    text = tmp_path / "input.txt"
    text.write_text("To be, or not to be, that is the question.\n" * 20)
    thread = tmp_path / "thread.json"
    thread.write_text(json.dumps({"id": "t1", "title": "Dates", "posts": [{"id": "p1", "text": "Which?"}]}))
    for argv, said in (
        (["train", "--format", "scitldr", "--data", str(text), "--max-steps", "1", "-q"],
         "not valid JSON (Expecting value at column 1) (read as format 'scitldr'; it looks like 'text')"),
        (["ingest", "--format", "stackexchange", str(thread)], "not a Stack Exchange Posts.xml"),
    ):  # fmt: skip
        code, _, err = run_captured(argv, capsys)
        assert code == 2 and said in err and len(err.strip().splitlines()) == 1, (argv, err)
    assert open_registry().list() == []


def test_a_tokenizer_that_is_not_there_is_refused_before_a_run_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tldrlab train --tokenizer X` naming no tokenizer (a typo, an empty directory, a file of another kind)
    was found out by the run, which stayed behind as a failed run."""
    text = tmp_path / "text.txt"
    text.write_text("To be, or not to be.\n" * 20)
    empty = tmp_path / "empty"
    empty.mkdir()
    for tokenizer, said in (
        (tmp_path / "nope", "no tokenizer directory or run named"),
        (empty, f"no tokenizer.json in {empty}"),
        (text, f"{text} is not a tokenizer"),
    ):
        argv = ["train", "--data", str(text), "--tokenizer", str(tokenizer), "--max-steps", "1", "-q"]
        code, _, err = run_captured(argv, capsys)
        assert code == 3 and "not_found" in err and said in err and len(err.strip().splitlines()) == 1, err
    assert open_registry().list() == []


@pytest.mark.slow
def test_cli_ctrl_c_checkpoints_cancels_and_resume_finishes(
    shakespeare: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "job.json"
    cfg.write_text(
        json.dumps(
            {
                "model": "char_lstm",
                "model_settings": {"embedding_dim": 16, "hidden_dim": 32, "num_layers": 1},
                "tokenizer": {"method": "char", "vocab_size": 100},
                "data": {"block_size": 32, "max_val_examples": 20},
                "train": {**FAST, "max_steps": 150, "eval_every": 50, "checkpoint_every": 10},
            }
        )
    )
    cmd = [
        sys.executable,
        "-m",
        "tldrlab",
        "train",
        "--config",
        str(cfg),
        "--data",
        str(shakespeare),
        "--wandb",
        "disabled",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ)
    home = Path(os.environ["TLDRLAB_HOME"])
    deadline = time.monotonic() + 120
    while not list(home.glob("runs/*/checkpoints/step-*/index.json")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Ctrl-C" in err and "Traceback" not in err
    (record,) = open_registry().list()
    assert record.status == RunStatus.CANCELLED

    # the resume: the same command line, here (only the interrupted run needs a process of its own)
    code, _, err = run_captured(["train", "--resume", record.id, "--quiet"], capsys)
    assert code == 0, err
    record = open_registry().get(record.id)
    assert record.status == RunStatus.COMPLETED
    steps = [
        r["step"]
        for r in json.loads(
            "[" + ",".join((Path(record.run_dir) / "metrics.jsonl").read_text().splitlines()) + "]"
        )
        if "train_loss" in r
    ]
    assert steps == sorted(set(steps)) and steps[-1] == 150
    assert "resumed from checkpoint" in (Path(record.run_dir) / "log.jsonl").read_text()


def _preempted_at_step_2(shakespeare: Path) -> tuple[Any, Any]:
    """A tiny char_lstm training run of 4 steps preempted after step 2 (waiting for --resume), and its job."""
    from tldrlab.errors import RunPreemptedError
    from tldrlab.runs import preempt
    from tldrlab.train.jobs import TRAIN
    from tldrlab.train.loop import TrainHooks, TrainState
    from tldrlab.train.recipe import run_recipe

    class PreemptAt2(TrainHooks):
        def on_step_end(self, state: TrainState, loss: float) -> None:
            if state.step == 2:
                preempt.request_stop()

    job = parse_job_config(
        {
            "model": "char_lstm",
            "model_settings": {"embedding_dim": 8, "hidden_dim": 16, "num_layers": 1},
            "data": {"path": str(shakespeare), "block_size": 16},
            "tokenizer": {"method": "char", "vocab_size": 80},
            "train": {"max_steps": 4, "batch_size": 4, "eval_every": 0, "progress": False, "plot": False},
            "wandb": "disabled",
            "final_eval": {"enabled": False},
        }
    )
    try:
        with pytest.raises(RunPreemptedError), start_run("train", job) as run:
            run_recipe(run, TRAIN, job, extra_hooks=(PreemptAt2(),))
    finally:
        preempt.reset()
    return run, job


def test_resume_refuses_data_that_changed_or_went_and_the_run_stays_resumable(
    shakespeare: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `--resume` after the data file was edited trained on the new text from the checkpointed position
    # (not the run it continued); after it was removed, the waiting run became a failed one
    from tldrlab.runs.run import execute_run

    run, job = _preempted_at_step_2(shakespeare)
    original = shakespeare.read_text()
    shakespeare.unlink()
    code, _, err = run_captured(["train", "--resume", run.id], capsys)
    assert code == 2 and "data not found" in err
    assert open_registry().get(run.id).status == RunStatus.QUEUED  # still the preempted run, waiting
    shakespeare.write_text(original[: len(original) // 2])
    # refused, the run is exactly as it was: the check ran in the recipe's setup, after the resume had
    # marked the run running, so it became a failed run (another attempt counted, its manifest rewritten)
    waiting, run_dir = open_registry().get(run.id), Path(run.dir)
    files_before = {p: p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}
    code, _, err = run_captured(["train", "--resume", run.id], capsys)
    assert code == 4 and "the data changed since run" in err and str(shakespeare) in err
    assert open_registry().get(run.id) == waiting
    assert {p: p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()} == files_before
    shakespeare.write_text(original)
    with execute_run(run.id) as resumed:
        assert run_training(resumed, job).steps == 4


def test_resume_of_a_run_whose_directory_is_gone_says_so(
    shakespeare: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It was `[os_error] No such file or directory: <run_dir>/.run.lock`, naming a lock file, not the run."""
    import shutil

    run, _ = _preempted_at_step_2(shakespeare)
    shutil.rmtree(run.dir)
    waiting = open_registry().get(run.id)
    code, out, err = run_captured(["train", "--resume", run.id], capsys)
    said = f"run {run.id} cannot be resumed: its directory {run.dir} is gone, and it has no archive"
    assert code == 3 and out == "" and said in " ".join(err.split()) and ".run.lock" not in err
    assert open_registry().get(run.id) == waiting and not Path(run.dir).exists()


def test_resume_compares_the_files_the_run_reads_not_a_test_file_it_never_read(
    shakespeare: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run on train.txt + test.txt recorded both in data_files.json, and a resume was refused when only
    test.txt changed, though the run never reads it. It records and compares its training (and validation)
    files; a run recorded so before keeps test.txt in its record, which is not compared (nor told as gone)."""
    from tldrlab.runs.run import execute_run
    from tldrlab.train.same_data import DATA_FILES, _fingerprints

    data = tmp_path / "data"
    data.mkdir()
    train, test = data / "train.txt", data / "test.txt"
    train.write_text(shakespeare.read_text())
    test.write_text("ROMEO: a held-out line.\n")
    run, job = _preempted_at_step_2(data)
    recorded = Path(run.dir) / DATA_FILES
    assert list(json.loads(recorded.read_text())) == [str(train)]
    # a change to the file it trains on is still refused
    original = train.read_text()
    train.write_text(original[: len(original) // 2])
    code, _, err = run_captured(["train", "--resume", run.id], capsys)
    assert code == 4 and f"the data changed since run {run.id} started ({train})" in err
    train.write_text(original)
    # recorded as before (every file of the directory): the test file changes, then goes; not refused
    recorded.write_text(json.dumps(_fingerprints([test, train])))
    test.write_text("ROMEO: another held-out line.\n")
    code, _, err = run_captured(["train", "--resume", run.id, "-q"], capsys)
    assert code == 0, err
    assert open_registry().get(run.id).status == RunStatus.COMPLETED
    with execute_run(run.id) as again:  # the recipe's own check (a worker's resume) agrees
        test.unlink()
        assert run_training(again, job).steps == 4


# A real `save_model` of a tiny char_lstm into DIR/model that stops (its writer holding its lock, its
# temporary directory half written) until it is killed: atomic_write_json, its last step, blocks.
STUCK_WRITER = """
import sys, time
import tldrlab.models.io as io
from tldrlab.models.char_lstm import CharLSTM
from tldrlab.models.char_lstm_config import CharLSTMConfig

def stuck(*args, **kwargs):
    print("writing", flush=True)
    time.sleep(600)

io.atomic_write_json = stuck
model = CharLSTM(CharLSTMConfig(vocab_size=10, embedding_dim=4, hidden_dim=4, num_layers=1))
io.save_model(model, None, sys.argv[1], name="char_lstm")
"""


# The same write stopped earlier: its lock file taken, its temporary directory not made yet.
EARLY_STUCK_WRITER = STUCK_WRITER.replace(
    "io.atomic_write_json = stuck",
    "make_dir = io.Path.mkdir\n"
    "io.Path.mkdir = lambda self, *a, **k: stuck() if '.tmp-' in self.name else make_dir(self, *a, **k)",
)


def _stuck_writer(model_dir: Path, program: str = STUCK_WRITER) -> subprocess.Popen[str]:
    writer = subprocess.Popen(
        [sys.executable, "-c", program, str(model_dir)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None and writer.stdout.readline() == "writing\n"
    return writer


def _writes(run_dir: Path) -> set[str]:
    return {p.name for p in run_dir.iterdir() if ".tmp-" in p.name}


def test_a_resumed_run_removes_the_model_export_its_killed_process_left(shakespeare: Path) -> None:
    # a run killed while exporting its model left `.model.tmp-*` (and its lock file) in its run directory for
    # good: only the models store was ever cleaned
    from tldrlab.runs.run import execute_run

    run, job = _preempted_at_step_2(shakespeare)
    run_dir = Path(run.dir)
    killed = _stuck_writer(run_dir / "model")
    abandoned = _writes(run_dir)
    killed.kill()
    killed.wait(timeout=10)
    assert len(abandoned) == 2  # `.model.tmp-TOKEN` and its lock file
    live = _stuck_writer(run_dir / "model")  # another writer, still writing: never touched
    try:
        in_progress = _writes(run_dir) - abandoned
        with execute_run(run.id) as resumed:
            assert run_training(resumed, job).steps == 4
        assert _writes(run_dir) == in_progress and len(in_progress) == 2
        assert (run_dir / "model" / "tldrlab_model.json").is_file()  # its export
    finally:
        live.kill()
        live.wait(timeout=10)


def test_exporting_a_model_again_removes_an_earlier_killed_export(tmp_path: Path) -> None:
    from tldrlab.models import load_model
    from tldrlab.models.char_lstm import CharLSTM
    from tldrlab.models.char_lstm_config import CharLSTMConfig
    from tldrlab.models.io import save_model

    killed = _stuck_writer(tmp_path / "model")
    killed.kill()
    killed.wait(timeout=10)
    assert len(_writes(tmp_path)) == 2
    model = CharLSTM(CharLSTMConfig(vocab_size=10, embedding_dim=4, hidden_dim=4, num_layers=1))
    save_model(model, None, tmp_path / "model", name="char_lstm")
    assert _writes(tmp_path) == set() and load_model(tmp_path / "model")[2] == "char_lstm"


def test_a_model_write_killed_before_its_directory_leaves_no_lock_file_after_the_next_write(
    tmp_path: Path,
) -> None:
    # a writer killed after taking its lock file but before making its temporary directory left
    # `.model.tmp-TOKEN.lock` alone: the cleanup looked only for directories, so every later write (a resume's
    # export) and every export archive of the run kept that file for good
    from tldrlab.models.char_lstm import CharLSTM
    from tldrlab.models.char_lstm_config import CharLSTMConfig
    from tldrlab.models.io import save_model

    killed = _stuck_writer(tmp_path / "model", EARLY_STUCK_WRITER)
    killed.kill()
    killed.wait(timeout=10)
    (lock,) = _writes(tmp_path)
    assert lock.endswith(".lock") and (tmp_path / lock).is_file()
    live = _stuck_writer(tmp_path / "model", EARLY_STUCK_WRITER)  # alive, its lock held: never touched
    try:
        (live_lock,) = _writes(tmp_path) - {lock}
        model = CharLSTM(CharLSTMConfig(vocab_size=10, embedding_dim=4, hidden_dim=4, num_layers=1))
        save_model(model, None, tmp_path / "model", name="char_lstm")
        assert _writes(tmp_path) == {live_lock}
    finally:
        live.kill()
        live.wait(timeout=10)


@pytest.mark.slow
def test_train_and_test_files_without_a_dev_file_train_on_train_and_evaluate_its_holdout(
    shared_data: Path, tmp_path: Path
) -> None:
    """A directory of train.jsonl + test.jsonl and no dev file had no splits: the run read every file, so it
    trained on the test records and held out a seeded fraction of the mixture, and its evaluation read every
    file too. The run trains on the train file only, its tokenizer too, and is evaluated on its holdout."""
    from itertools import islice

    from tldrlab.evaluate.run_eval import _seq2seq_records, eval_config_for
    from tldrlab.launch import launch_run
    from tldrlab.tokenizers import load_tokenizer
    from tldrlab.train.tasks import build_task

    source = shared_data / "debian_descriptions" / "debian_descriptions.train.jsonl"
    with source.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in islice(handle, 60)]
    folder = tmp_path / "pairs"
    folder.mkdir()
    for name, part in (("train", rows[:40]), ("test", rows[40:])):
        lines = [json.dumps({**row, "id": f"{name}-{row['id']}"}) + "\n" for row in part]
        (folder / f"{name}.jsonl").write_text("".join(lines), encoding="utf-8")
    launched = launch_run(
        "train",
        {
            "model": "t5",
            "model_settings": {"d_model": 16, "d_ff": 32, "num_layers": 1, "num_decoder_layers": 1,
                               "num_heads": 2, "d_kv": 8},
            "data": {"path": str(folder), "val_fraction": 0.25, "max_source_len": 32, "max_target_len": 8},
            "tokenizer": {"method": "char", "vocab_size": 200},
            "train": {**FAST, "max_steps": 2, "eval_every": 0, "seed": 5, "plot": False},
            "final_eval": {"max_new_tokens": 4},
            "wandb": "disabled",
        },
    )  # fmt: skip
    record = launched.record
    assert record.config["data"]["train_split"] == "train" and record.config["data"]["val_split"] is None
    tokenizer_dir = Path(record.run_dir) / "tokenizer"
    corpus = json.dumps(json.loads((tokenizer_dir / "tokenizer_manifest.json").read_text())["corpus"])
    assert "test.jsonl" not in corpus and "train.jsonl" in corpus

    # what the run trained on and held out: the 40 train records, 10 of them held out; no test record
    job = parse_job_config(record.config)
    task = build_task(job, load_tokenizer(tokenizer_dir), object(), "seq2seq")  # type: ignore[arg-type]
    held_out = [r.id for r in task.val_records]
    assert (len(task.train_pairs), len(held_out)) == (30, 10)
    assert all(i.startswith("train-") for i in held_out)
    # an evaluation of the run reads exactly that holdout, as its final evaluation did
    config, _, _ = eval_config_for(record.id)
    assert [r.id for r in _seq2seq_records(config.model_copy(update={"max_samples": 100}))] == held_out
    (evaluation,) = open_registry().list(kind="evaluate")
    samples = (Path(evaluation.run_dir) / "samples.jsonl").read_text(encoding="utf-8").splitlines()
    evaluated = [json.loads(line)["id"] for line in samples]
    assert evaluated and evaluated == held_out[: len(evaluated)]


def test_a_run_resumed_without_a_checkpoint_keeps_one_metrics_line_a_step(
    shakespeare: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run that stopped before its first checkpoint (killed, or failed, in its first steps) trains again
    from step 1 when resumed: the lines its first attempt wrote stayed in metrics.jsonl, so steps 1-3 were
    there twice (curves drawn back over themselves, `runs compare` reading the earlier attempt's loss)."""
    from tldrlab.train.jobs import TRAIN
    from tldrlab.train.loop import TrainHooks, TrainState
    from tldrlab.train.recipe import run_recipe

    class FailAt3(TrainHooks):
        def on_step_end(self, state: TrainState, loss: float) -> None:
            if state.step == 3:
                raise RuntimeError("the machine ran out of memory")

    job = parse_job_config(
        {
            "model": "char_lstm",
            "model_settings": {"embedding_dim": 8, "hidden_dim": 16, "num_layers": 1},
            "data": {"path": str(shakespeare), "block_size": 16},
            "tokenizer": {"method": "char", "vocab_size": 80},
            "train": {**FAST, "max_steps": 5, "log_every": 1, "eval_every": 0, "checkpoint_every": 100},
            "wandb": "disabled",
            "final_eval": {"enabled": False},
        }
    )
    with pytest.raises(RuntimeError), start_run("train", job) as run:
        run_recipe(run, TRAIN, job, extra_hooks=(FailAt3(),))
    assert not list(run.checkpoints_dir.glob("step-*"))  # it stopped before any checkpoint

    code, _, err = run_captured(["train", "--resume", run.id, "--quiet"], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in (run.dir / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows if "train_loss" in row] == [1, 2, 3, 4, 5], rows
    assert "no checkpoint to resume from" in (run.dir / "log.jsonl").read_text()
