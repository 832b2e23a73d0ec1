"""`tldrlab eval | generate | score` on saved tiny models: a run id or a model directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from cliutil import run_captured, run_cli
from tldrlab.errors import RunCancelledError
from tldrlab.evaluate import EvalConfig, evaluate_model, evaluate_target
from tldrlab.models import build_model, load_model, save_model
from tldrlab.runs import create_run, open_registry, start_run
from tldrlab.tokenizers import load_tokenizer, train_tokenizer


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("data")
    text = directory / "shakespeare.txt"
    text.write_text((shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:8_000])
    source = shared_data / "debian_descriptions" / "debian_descriptions.validation.jsonl"
    pairs = directory / "debian_descriptions.validation.jsonl"
    pairs.write_text("".join(source.read_text(encoding="utf-8").splitlines(keepends=True)[:12]))
    train_tokenizer("bpe", [text, pairs], 320, directory / "tok")
    return {"text": text, "pairs": pairs, "tok": directory / "tok"}


def save_tiny(name: str, data: dict[str, Path], out: Path) -> Path:
    torch.manual_seed(0)
    tokenizer = load_tokenizer(data["tok"])
    settings: dict[str, Any] = {"size": "tiny", "dropout": 0.0} if name != "char_lstm" else {"hidden_dim": 32}
    save_model(build_model(name, settings, tokenizer), tokenizer, out)
    return out


def test_seq2seq_eval_of_a_run_writes_eval_and_samples(data: dict[str, Path]) -> None:
    record = create_run(
        "train",
        {"model": "t5", "data": {"path": str(data["pairs"]), "prefix": "summarize: ", "max_source_len": 64}},
    )
    run_dir = Path(record.run_dir)
    save_tiny("t5", data, run_dir / "model")
    result = evaluate_target(record.id, max_samples=5, generation={"temperature": 0, "max_new_tokens": 8})

    metrics = result["metrics"]
    assert metrics["examples"] == 5
    for key in ("rouge1", "rouge2", "rougeL", "rougeLsum", "bertscore_f1"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["loss"] > 0 and metrics["perplexity"] > 1
    assert metrics["pred_words_mean"] >= 0 and metrics["ref_words_mean"] > 0
    # not the training run's final evaluation: its files go under evaluations/<its run id>/ there
    out_dir = Path(result["out_dir"])
    assert out_dir == run_dir / "evaluations" / result["run_id"] and not (run_dir / "eval.json").exists()
    on_disk = json.loads((out_dir / "eval.json").read_text())
    assert on_disk["metrics"] == pytest.approx(metrics)
    assert on_disk["config"]["prefix"] == "summarize: "
    samples = [json.loads(line) for line in (out_dir / "samples.jsonl").read_text().splitlines()]
    first = json.loads(data["pairs"].read_text().splitlines()[0])
    assert (
        len(samples) == 5 and samples[0]["reference"] == first["summary"] and samples[0]["id"] == first["id"]
    )
    # The evaluation is itself a run whose parent is the evaluated one; seeded greedy output repeats.
    (eval_run,) = open_registry().list(kind="evaluate")
    assert eval_run.parent_id == record.id and eval_run.status.value == "completed"
    again = evaluate_target(record.id, max_samples=5, generation={"temperature": 0, "max_new_tokens": 8})
    assert again["metrics"]["rouge1"] == metrics["rouge1"]


@pytest.mark.parametrize("name", ["gpt2", "char_lstm"])
def test_lm_eval_reports_loss_and_perplexity(name: str, data: dict[str, Path], tmp_path: Path) -> None:
    model_dir = save_tiny(name, data, tmp_path / "model")
    result = evaluate_target(model_dir, data=str(data["text"]), block_size=64, max_samples=4)
    metrics = result["metrics"]
    assert metrics["blocks"] == 4 and metrics["tokens"] == 4 * 63
    assert metrics["perplexity"] == pytest.approx(float(torch.tensor(metrics["loss"]).exp()), rel=1e-5)
    samples = (tmp_path / "samples.jsonl").read_text().splitlines()
    assert len(samples) == 4 and "outputs" in json.loads(samples[0])
    assert (tmp_path / "eval.png").is_file()


def test_cancel_request_stops_an_evaluation(data: dict[str, Path], tmp_path: Path) -> None:
    model_dir = save_tiny("char_lstm", data, tmp_path / "model")
    model, tokenizer, name = load_model(model_dir)
    config = EvalConfig(data=str(data["text"]), block_size=32, batch_size=1, max_samples=8)
    with pytest.raises(RunCancelledError), start_run("eval", {}) as run:
        open_registry().request_cancel(run.id)
        evaluate_model(model, tokenizer, name, config, tmp_path, run=run, progress=False)
    assert open_registry().get(run.id).status.value == "cancelled"
    assert not (tmp_path / "eval.json").exists()


def test_cli_eval_generate_score(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = save_tiny("gpt2", data, tmp_path / "model")
    assert run_cli(["eval", str(model_dir), "--data", str(data["text"]), "--max-samples", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["blocks"] == 2

    argv = [
        "generate",
        str(model_dir),
        "-p",
        "ROMEO:",
        "--seed",
        "3",
        "-n",
        "2",
        "--max-new-tokens",
        "8",
        "--json",
    ]
    assert run_cli(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert run_cli(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["outputs"] == first["outputs"] and len(first["outputs"][0]) == 2

    assert run_cli(["score", str(model_dir), "--text", "To be, or not", "--top-k", "2", "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["num_tokens"] == len(scored["surprisal_bits"]) and len(scored["topk"][0]) == 2
    assert run_cli(["score", str(model_dir), "--text", "To be"]) == 0
    assert "perplexity" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["eval", "no-such-run"], 3, "no model named 'no-such-run'"),
        (["generate", "no-such-run", "-p", "x"], 3, "no model named 'no-such-run'"),
        (["generate", "MODEL", "-p", "x", "--top-p", "1.5"], 2, "top_p"),
        (["eval", "MODEL", "--data", "DATA", "--temperature", "-1"], 2, "temperature"),
        (["eval", "MODEL", "--data", "DATA", "--max-samples", "0"], 2, "max_samples"),
        (["score", "MODEL", "--text", ""], 2, "text: String should have at least 1 character"),
        (["eval", "MODEL"], 2, "pass --data"),
        (["eval", "MODEL", "--data", "/nonexistent/file.jsonl"], 3, "not found"),
    ],
)
def test_cli_errors_are_clear(
    argv: list[str],
    code: int,
    message: str,
    data: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model_dir = save_tiny("char_lstm", data, tmp_path / "model")
    replace = {"MODEL": str(model_dir), "DATA": str(data["text"])}
    argv = [replace.get(a, a) for a in argv]
    assert run_cli(argv) == code
    assert message in capsys.readouterr().err


def test_evaluating_on_forum_threads_is_refused_before_a_run_exists(
    data: dict[str, Path], shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`eval MODEL --data <a Stack Exchange dump>` (threads, not records) was refused by the run's read,
    which stayed behind as a failed evaluate run."""
    model_dir = save_tiny("char_lstm", data, tmp_path / "model")
    capsys.readouterr()
    assert run_cli(["eval", str(model_dir), "--data", str(shared_data / "stackexchange_beer")]) == 2
    err = capsys.readouterr().err
    assert "format 'stackexchange' holds threads, not records" in err and len(err.strip().splitlines()) == 1
    assert open_registry().list(kind="evaluate") == []


@pytest.mark.slow
def test_real_command_prints_no_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tldrlab", "score", str(tmp_path), "--text", "hi"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3 and "no saved model" in proc.stderr and "Traceback" not in proc.stderr


def test_run_on_unsplit_data_is_evaluated_on_its_seeded_holdout(data: dict[str, Path]) -> None:
    import random

    record = create_run(
        "train",
        {"model": "t5", "data": {"path": str(data["pairs"]), "val_fraction": 0.25}, "train": {"seed": 3}},
    )
    save_tiny("t5", data, Path(record.run_dir) / "model")
    result = evaluate_target(record.id, bertscore=False, generation={"temperature": 0, "max_new_tokens": 4})
    ids = [json.loads(line)["id"] for line in data["pairs"].read_text().splitlines()]
    random.Random(3).shuffle(ids)  # the training loop's split: seeded shuffle, first val_fraction held out
    samples = [
        json.loads(line) for line in (Path(result["out_dir"]) / "samples.jsonl").read_text().splitlines()
    ]
    assert [s["id"] for s in samples] == ids[:3]
    assert result["config"]["holdout_seed"] == 3


def test_lm_loss_is_token_weighted_and_ignores_padding(data: dict[str, Path], tmp_path: Path) -> None:
    """Blocks of unequal length evaluated in one padded batch give the loss of each block scored alone:
    the mean over predicted tokens (not over blocks), padding never scored."""
    from tldrlab.evaluate.run_eval import lm_loss

    model, tokenizer, _ = load_model(save_tiny("gpt2", data, tmp_path / "model"))
    text = data["text"].read_text(encoding="utf-8")[:600]
    ids = tokenizer.encode(text, add_special_tokens=False)
    block = 64
    assert len(ids) % block >= 8  # the last block is much shorter than the others: it is padded
    loss, tokens, blocks, _ = lm_loss(
        model, tokenizer, text, EvalConfig(data="-", block_size=block, batch_size=8)
    )
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(ids), block):
            piece = torch.tensor([ids[start : start + block]])
            logits = model(input_ids=piece).logits[0, :-1].float()
            total += float(torch.nn.functional.cross_entropy(logits, piece[0, 1:], reduction="sum"))
            count += piece.shape[1] - 1
    assert (tokens, blocks) == (count, -(-len(ids) // block))
    assert loss == pytest.approx(total / count, rel=1e-4)


def test_a_split_the_data_does_not_have_is_refused(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # --split on one file with no splits read the whole file: for a run trained on it, its training records
    unsplit = tmp_path / "pairs.jsonl"
    unsplit.write_text(data["pairs"].read_text(encoding="utf-8"), encoding="utf-8")
    record = create_run("train", {"model": "t5", "data": {"path": str(unsplit), "val_fraction": 0.25}})
    save_tiny("t5", data, Path(record.run_dir) / "model")
    capsys.readouterr()
    assert run_cli(["eval", record.id, "--split", "validation", "--no-bertscore"]) == 2
    err = capsys.readouterr().err
    assert "pairs.jsonl: no 'validation' split in this single file (it has no splits)" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (Path(record.run_dir) / "eval.json").exists()
    assert run_cli(["data", "inspect", str(unsplit), "--split", "test"]) == 2
    assert "no 'test' split in this single file" in capsys.readouterr().err
    # a file whose name says which split it is, is that split (as in a directory), and only that one
    assert run_cli(["data", "inspect", str(data["pairs"]), "--split", "val", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"]["records"] == 12
    assert run_cli(["data", "inspect", str(data["pairs"]), "--split", "train"]) == 2
    assert "its name makes it the 'validation' split" in capsys.readouterr().err


def test_a_refused_split_leaves_no_run_behind(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a split the data does not have was refused only when the run read its data, after the command line had
    # created it: every refusal left a failed run in the registry
    unsplit = tmp_path / "pairs.jsonl"
    unsplit.write_text(data["pairs"].read_text(encoding="utf-8"), encoding="utf-8")
    record = create_run("train", {"model": "t5", "data": {"path": str(unsplit), "val_fraction": 0.25}})
    save_tiny("t5", data, Path(record.run_dir) / "model")
    on_unsplit = ["--dataset", str(unsplit), "--split", "validation"]
    commands = {
        "evaluate": ["eval", record.id, "--split", "validation", "--no-bertscore"],
        "generate": ["generate", record.id, *on_unsplit],
        "score": ["score", record.id, *on_unsplit],
        "train": ["train", "--model", "t5", "--data", str(unsplit), "--tokenizer", str(data["tok"]),
                  "--val-split", "validation"],
    }  # fmt: skip
    capsys.readouterr()
    for kind, argv in commands.items():
        code, _, err = run_captured(argv, capsys)
        assert code == 2, (kind, err)
        assert "pairs.jsonl: no 'validation' split in this single file (it has no splits)" in err, kind
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        code, out, _ = run_captured(["runs", "list", "--kind", kind, "--json"], capsys)
        listed = [json.loads(line)["id"] for line in out.splitlines()]
        assert code == 0 and listed == ([record.id] if kind == "train" else []), (kind, listed)


def test_a_stop_string_typed_with_backslash_escapes_stops_at_what_they_name(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `--stop "\n\n"` (docs/models.md) reached generation as the four characters \ n \ n, which a model
    # never writes: the output was not cut at the blank line the doc promised
    model = save_tiny("char_lstm", data, tmp_path / "model")
    argv = [
        "generate",
        str(model),
        "-p",
        "ROMEO:",
        "--max-new-tokens",
        "120",
        "--temperature",
        "1.5",
        "--json",
    ]
    for seed in range(20):  # a seed whose output holds a line break to stop at
        code, out, err = run_captured([*argv, "--seed", str(seed)], capsys)
        assert code == 0, err
        whole = json.loads(out)["outputs"][0][0]
        if "\n" in whole:
            break
    assert "\n" in whole, whole
    argv += ["--seed", str(seed)]
    code, out, err = run_captured([*argv, "--stop", "\\n"], capsys)
    assert code == 0, err
    assert json.loads(out)["outputs"][0][0] == whole.split("\n")[0]
    code, out, err = run_captured([*argv, "--stop", "\\\\n"], capsys)  # an escaped backslash stays one
    assert code == 0 and json.loads(out)["outputs"][0][0] == whole.split("\\n")[0], err


def test_a_model_evaluated_on_a_data_set_directory_reads_its_held_out_split(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tldrlab eval MODEL --data DIR` with no --split, for a model that is no run's, read every file of the
    directory, train.jsonl too, and scored them all. It reads the test split (else the validation split)
    and says which; `--split` still reads the split it names."""
    model_dir = save_tiny("t5", data, tmp_path / "model")
    pairs = [json.loads(line) for line in data["pairs"].read_text().splitlines()]
    with_test, with_dev = tmp_path / "with_test", tmp_path / "with_dev"
    for directory, held in ((with_test, "test"), (with_dev, "dev")):
        directory.mkdir()
        for split, rows in (("train", pairs[:6]), (held, pairs[6:9])):
            lines = [json.dumps({**row, "id": f"{split}-{i}"}) for i, row in enumerate(rows)]
            (directory / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    quick = ["--no-bertscore", "--max-new-tokens", "2"]
    argv = ["eval", str(model_dir), "--data", str(with_test), *quick, "--json"]
    code, out, err = run_captured(argv, capsys)
    assert code == 0, err
    result = json.loads(out)
    assert (result["config"]["split"], result["metrics"]["examples"]) == ("test", 3)
    samples = (Path(result["out_dir"]) / "samples.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in samples] == ["test-0", "test-1", "test-2"]
    code, out, err = run_captured(["eval", str(model_dir), "--data", str(with_dev), *quick, "-q"], capsys)
    assert code == 0, err
    assert f"on {with_dev} [dev]; samples in" in out
    argv = ["eval", str(model_dir), "--data", str(with_test), "--split", "train", *quick, "--json"]
    code, out, err = run_captured(argv, capsys)
    assert code == 0, err
    assert json.loads(out)["metrics"]["examples"] == 6


def test_a_run_evaluated_on_what_it_held_out_of_its_training_split_says_so(
    data: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run on a directory of train and test files held out a fraction of train.jsonl: `tldrlab eval RUN`
    evaluates that fraction, but said "[train]" (and eval_summary.json "split": "train"), as if it had
    scored the records the model trained on."""
    from PIL import Image

    pairs = [json.loads(line) for line in data["pairs"].read_text().splitlines()]
    directory = tmp_path / "with_test"
    directory.mkdir()
    for split, rows in (("train", pairs[:8]), ("test", pairs[8:10])):
        lines = [json.dumps({**row, "id": f"{split}-{i}"}) for i, row in enumerate(rows)]
        (directory / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    record = create_run(
        "train", {"model": "t5", "data": {"path": str(directory), "val_fraction": 0.25}, "train": {"seed": 3}}
    )
    save_tiny("t5", data, Path(record.run_dir) / "model")
    argv = ["eval", record.id, "--no-bertscore", "--max-new-tokens", "2", "-q"]
    code, out, err = run_captured(argv, capsys)
    assert code == 0, err
    assert f"on {directory} [train: the 25% held out in training]; samples in" in out
    (evaluation,) = (Path(record.run_dir) / "evaluations").iterdir()
    summary = json.loads((evaluation / "eval_summary.json").read_text())
    assert (summary["split"], summary["val_fraction"], summary["metrics"]["examples"]) == ("train", 0.25, 2)
    # and eval.png's title, which said "[train]" after the report and the summary no longer did
    with Image.open(evaluation / "eval.png") as plot:
        title = plot.info.get("Title")
    assert title is not None and title.endswith("on with_test [train: the 25% held out in training]"), title


def test_a_run_trained_on_a_limit_of_its_records_is_evaluated_on_its_whole_validation_split(
    data: dict[str, Path], tmp_path: Path
) -> None:
    """`data.limit` caps the records a run trains on; its validation split is read whole (up to
    max_val_examples). `tldrlab eval RUN` applied the limit to the validation split too: a run trained with
    limit 2 was evaluated on the first 2 of its 6 validation records, not on what it validated on."""
    pairs = [json.loads(line) for line in data["pairs"].read_text().splitlines()]
    directory = tmp_path / "with_dev"
    directory.mkdir()
    for split, rows in (("train", pairs[:6]), ("dev", pairs[6:12])):
        lines = [json.dumps({**row, "id": f"{split}-{i}"}) for i, row in enumerate(rows)]
        (directory / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    record = create_run("train", {"model": "t5", "data": {"path": str(directory), "limit": 2}})
    save_tiny("t5", data, Path(record.run_dir) / "model")
    result = evaluate_target(record.id, bertscore=False, generation={"temperature": 0, "max_new_tokens": 2})
    assert (result["config"]["split"], result["metrics"]["examples"]) == ("dev", 6)
    # the same split by another of its names (any case): the same records
    named = evaluate_target(
        record.id, split="Validation", bertscore=False, generation={"temperature": 0, "max_new_tokens": 2}
    )
    assert named["metrics"]["examples"] == 6


def _eval_and_training_loss(
    data: dict[str, Path], *, max_target_len: int
) -> tuple[dict[str, Any], float, Any]:
    """`tldrlab eval` of a tiny t5 run's model on the run's records, the eval_loss training's own task gives
    the same model on them, and that task."""
    from tldrlab.data.readers import read_records
    from tldrlab.train.config import DataConfig
    from tldrlab.train.tasks import Seq2SeqTask

    settings = {
        "path": str(data["pairs"]),
        "prefix": "summarize: ",
        "max_source_len": 24,
        "max_target_len": max_target_len,
    }
    record = create_run("train", {"model": "t5", "data": settings})
    model_dir = save_tiny("t5", data, Path(record.run_dir) / "model")
    result = evaluate_target(record.id, bertscore=False, generation={"temperature": 0, "max_new_tokens": 2})
    model, tokenizer, _ = load_model(model_dir)
    records = read_records(data["pairs"])
    task = Seq2SeqTask(records, records, tokenizer, DataConfig(**settings))  # type: ignore[arg-type]
    with torch.no_grad():
        return result, float(task.eval_loss(model.eval())), task


def test_a_seq2seq_run_s_evaluation_loss_is_its_training_evaluation_loss(data: dict[str, Path]) -> None:
    """The training loop feeds every source as its tokens cut to max_source_len, ending with eos (as
    generation and `score` feed it too); `tldrlab eval`'s teacher-forced loss fed the sources without that
    eos, so the same model on the same records had another loss than the run's eval_loss."""
    result, training_eval_loss, task = _eval_and_training_loss(data, max_target_len=512)
    assert result["metrics"]["examples"] == len(task.val_pairs)
    assert result["metrics"]["loss"] == pytest.approx(training_eval_loss, rel=1e-6)


def test_a_seq2seq_run_s_evaluation_loss_cuts_references_as_training_cut_its_targets(
    data: dict[str, Path],
) -> None:
    """Training cuts every target to max_target_len tokens (eos included) for its loss and eval_loss;
    `tldrlab eval` scored the whole references, so a run with max_target_len 4 had another loss there than
    its eval_loss on the same records. ROUGE is still of the whole references (what a summary is for)."""
    result, training_eval_loss, task = _eval_and_training_loss(data, max_target_len=4)
    assert max(len(t) for _, t in task.val_pairs) == 4  # the references are longer: cut
    assert result["metrics"]["loss"] == pytest.approx(training_eval_loss, rel=1e-6)
    out_dir = Path(result["out_dir"])
    assert json.loads((out_dir / "eval.json").read_text())["config"]["max_target_len"] == 4
    samples = [json.loads(line) for line in (out_dir / "samples.jsonl").read_text().splitlines()]
    from tldrlab.data.readers import read_records

    assert [s["reference"] for s in samples] == [r.summary for r in read_records(data["pairs"])]
    assert result["metrics"]["ref_words_mean"] > 4


def test_a_chat_model_s_reference_loss_cuts_answers_as_chat_training_cut_them(tmp_path: Path) -> None:
    """Chat fine-tuning cuts every answer to max_target_len tokens (its end-of-turn included); the
    evaluation's teacher-forced loss took whole answers."""
    from tinylm import save_tiny_model, tiny_chat_tokenizer, tiny_llama
    from tldrlab.data.records import SummaryRecord
    from tldrlab.evaluate.run_eval import chat_reference_loss
    from tldrlab.models.chat import context_limit, instruction_of
    from tldrlab.train.chat_sft import ChatSFTTask
    from tldrlab.train.config import DataConfig

    tokenizer = tiny_chat_tokenizer()
    model_dir = save_tiny_model(tiny_llama(tokenizer), tokenizer, tmp_path / "m")
    model = build_model("causal_lm", {"path": str(model_dir)}, tokenizer).eval()
    records = [
        SummaryRecord(
            id=str(i), document=f"library number {i} for parsing XML files", summaries=[f"an XML library {i}"]
        )
        for i in range(3)
    ]
    data = DataConfig(path="unused", max_source_len=12, max_target_len=4)
    task = ChatSFTTask(records, records, tokenizer, data, instruction_of(model), context_limit(model))
    assert max(len(answer) for _, answer in task.val_pairs) == 4  # the answers are longer: cut
    config = EvalConfig(data="unused", max_source_len=12, max_target_len=4)
    sources, refs = [r.document for r in records], [r.summary for r in records]
    with torch.no_grad():
        loss = chat_reference_loss(model, tokenizer, sources, refs, config)
        assert loss == pytest.approx(task.eval_loss(model), rel=1e-5)
        whole = chat_reference_loss(
            model, tokenizer, sources, refs, config.model_copy(update={"max_target_len": None})
        )
    assert whole != pytest.approx(loss, rel=1e-3)  # the cut is what makes them agree


def test_typed_in_text_gets_a_seq2seq_run_s_training_prefix_as_over_the_api(
    data: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """`generate --dataset`, `score --dataset` and POST /summarize put the run's `data.prefix` before each
    document; `generate --prompt` and `score --source` did not, so the one document was summarised (and
    scored) as another text on the command line than over the API."""
    from tldrlab.evaluate.score import score_text
    from tldrlab.evaluate.summarize import summarize, summarizer_model

    record = create_run(
        "train",
        {"model": "t5", "data": {"path": str(data["pairs"]), "prefix": "summarize: ", "max_source_len": 64}},
    )
    model_dir = save_tiny("t5", data, Path(record.run_dir) / "model")
    document, summary = "A tool to list the files a package installed.", "lists package files"
    argv = ["generate", record.id, "-p", document, "--temperature", "0", "--max-new-tokens", "6", "--json"]
    code, out, err = run_captured(argv, capsys)
    assert code == 0, err
    (over_the_api,) = summarize(summarizer_model(record.id), [document], max_new_tokens=6)
    assert json.loads(out)["outputs"] == [[over_the_api.text]]

    argv = ["score", record.id, "--text", summary, "--source", document, "--json"]
    code, out, err = run_captured(argv, capsys)
    assert code == 0, err
    model, tokenizer, _ = load_model(model_dir)
    with torch.no_grad():
        prefixed = score_text(model.eval(), tokenizer, summary, 0, source="summarize: " + document)
    assert json.loads(out)["loss"] == pytest.approx(prefixed["loss"], rel=1e-6)
