"""The pretrained-LM experiment end to end on a tiny Llama (every arm, one seed, a few steps), and the
`experiment compress` command; the real CLI, real runs, real files."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from tinylm import CORPUS, save_tiny_model, tiny_chat_tokenizer, tiny_llama
from tldrlab.cli.main import main
from tldrlab.elm.compare_lm import markdown as compare_markdown
from tldrlab.elm.compare_lm import pairwise
from tldrlab.experiments.config import LM_ARMS, LMExperimentConfig
from tldrlab.experiments.lm_results import differences, differences_table, summarize_rows
from tldrlab.runs import RunStatus, open_registry, preempt
from tldrlab.runs.atomic import read_jsonl


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    tokenizer = tiny_chat_tokenizer()
    return save_tiny_model(tiny_llama(tokenizer, layers=4), tokenizer, tmp_path / "tiny")


@pytest.fixture
def pairs(tmp_path: Path) -> Path:
    path = tmp_path / "pairs.jsonl"
    lines = [
        {"document": f"{CORPUS[i % 10]} {CORPUS[(i * 3 + 1) % 10]}", "summary": CORPUS[(i + 4) % 10]}
        for i in range(48)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@pytest.mark.slow
def test_every_arm_on_a_tiny_llama(tiny_model: Path, pairs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tiny = "--budget 4 --eval-every 2 --batch-size 4 --train-limit 32 --eval-size 4 --test-size 3"
    tiny += " --max-source-tokens 24 --max-new-tokens 4 --seeds 1 --calibration-size 4 --wandb-mode offline"
    # charts cost most of a tiny run's time: the end-to-end run draws only PAI's graphs (once, at the end);
    # test_results_tables_and_charts draws the experiment's charts
    tiny += " --no-plots --dendrites.no-graphs-every-eval"
    args = [
        "--data",
        str(pairs),
        "--model",
        str(tiny_model),
        "--wandb-name",
        "tinyexp",
        "--wandb-tags",
        "unit,tiny",
    ]
    main(["experiment", "lm", *args, *tiny.split()])
    out = capsys.readouterr().out
    assert "Lead-1" in out and "vs C (compressed)" in out
    (record,) = open_registry().list(kind="lm_experiment", limit=5)
    assert record.status == RunStatus.COMPLETED
    run_dir = Path(record.run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    rows = {r["arm"]: r for r in results["rows"]}
    assert list(rows) == LM_ARMS
    base = rows["baseline"]["parameters"]
    # the compressed arms share one shape of about half the parameters; dendrites add some back
    for arm in ("compressed", "compressed_random", "compressed_kd"):
        assert abs(rows[arm]["parameters"] / base - 0.5) < 0.02
    assert rows["compressed_pai"]["dendrites"] == 1
    assert rows["compressed_pai"]["parameters"] > rows["compressed"]["parameters"]
    assert rows["compressed_kd"]["teacher_seconds"] > 0
    for row in rows.values():
        assert row["steps"] <= 4 and row["latency_ms"] > 0 and row["train_cpu_seconds"] > 0
        assert all(isinstance(row[m], float) for m in ("rouge1", "rouge2", "rougeL", "bertscore_f1"))
    assert {(d["reference"], d["metric"]) for d in results["differences"]} >= {
        ("baseline", "rougeL"),
        ("compressed", "bertscore_f1"),
        ("lead1", "rouge1"),
    }
    assert not list(run_dir.rglob("comparison.png")) and "comparison.png" not in results["files"]
    assert "gradient descent" in (run_dir / "results.md").read_text()
    # each arm is a child run: its exported model, W&B files with the name and tags asked for
    children = {c.tags["arm"]: c for c in open_registry().list(kind="lm_experiment_arm", limit=10)}
    assert set(children) == set(LM_ARMS) and all(c.parent_id == record.id for c in children.values())
    from transformers import AutoModelForCausalLM

    compressed = Path(children["compressed"].run_dir)
    loaded = AutoModelForCausalLM.from_pretrained(compressed / "model")
    assert sum(p.numel() for p in loaded.parameters()) == rows["compressed"]["parameters"]
    assert json.loads((compressed / "model" / "compression.json").read_text())["init"] == "pretrained"
    # W&B (offline) writes inside the run directory, with the run name and tags asked for
    (wandb_file,) = list((compressed / "wandb").rglob("*.wandb"))
    recorded = wandb_file.read_bytes()
    assert b"tinyexp-compressed-seed1" in recorded and b"unit" in recorded and b"tiny" in recorded
    pai = Path(children["compressed_pai"].run_dir)
    logged = [r for r in read_jsonl(pai / "metrics.jsonl") if "pai/active_dendrites" in r]
    assert len(logged) == 2 and max(r["pai/restructured"] for r in logged) == 1.0
    assert (pai / "pai" / "pai_tracker_state.json").is_file() and list((pai / "pai" / "pai").glob("*.png"))
    # PAI's whole-model pickles duplicate model/ and the checkpoint: gone once the arm is exported
    assert not list((pai / "pai").rglob("*.pt")) and (pai / "model" / "model.safetensors").is_file()
    kinds = {a["kind"] for a in json.loads((pai / "manifest.json").read_text())["artifacts"]}
    assert {"pai", "model"} <= kinds
    assert (Path(children["compressed_kd"].run_dir) / "teacher_topk.safetensors").is_file()


def test_bootstrap_differences_are_paired_over_records() -> None:
    rows = [
        {"arm": "baseline", "seed": 1, "rougeL": 0.3, "per_record": {"rougeL": [0.2, 0.4, 0.3]}},
        {"arm": "baseline", "seed": 2, "rougeL": 0.3, "per_record": {"rougeL": [0.4, 0.2, 0.3]}},
        {"arm": "compressed", "seed": 1, "rougeL": 0.2, "per_record": {"rougeL": [0.2, 0.2, 0.2]}},
    ]
    summary = {s["arm"]: s for s in summarize_rows(rows)}
    assert summary["baseline"]["rougeL_std"] == 0.0 and summary["baseline"]["seeds"] == [1, 2]
    (found,) = [d for d in differences(rows, None) if d["arm"] == "compressed"]
    assert found["difference"] == pytest.approx(-0.1)  # per record: seed means (0.3, 0.3, 0.3) vs 0.2
    assert found["low"] == pytest.approx(-0.1) and found["high"] == pytest.approx(-0.1)


def test_one_record_gives_a_difference_without_an_interval() -> None:
    # resampling one record draws the same difference every time: no interval rather than a zero-width one
    rows = [
        {"arm": "baseline", "seed": 1, "rougeL": 0.3, "per_record": {"rougeL": [0.3]}},
        {"arm": "compressed", "seed": 1, "rougeL": 0.2, "per_record": {"rougeL": [0.2]}},
    ]
    (found,) = [d for d in differences(rows, None) if d["arm"] == "compressed"]
    assert found["difference"] == pytest.approx(-0.1) and found["low"] is None and found["high"] is None
    assert "-0.1000 |" in differences_table([found]) and "[" not in differences_table([found])
    (pair,) = pairwise([{"system": s, "per_record": {"rougeL": [v]}} for s, v in (("a", 0.2), ("b", 0.5))])
    assert pair["difference"] == pytest.approx(0.3) and pair["low"] is None and pair["high"] is None
    assert "+0.3000 |" in compare_markdown([], [pair])


@contextmanager
def stopped_once(condition: Callable[[], bool]) -> Iterator[None]:
    """While the block runs, asks the process to stop (as SIGTERM does) once `condition()` holds, looked at
    every 5 ms from a thread of its own."""
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if condition():
                preempt.request_stop()
                return
            done.wait(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()


@pytest.mark.slow
def test_a_stopped_experiment_resumes_where_it_stopped(tiny_model: Path, pairs: Path) -> None:
    """Preempted right after the PAI arm's restructure (what SIGTERM does), `--resume` keeps the finished
    baseline, continues the PAI arm's own run with its dendrites, and trains compressed_kd from the baseline
    reloaded from its run."""
    tiny = "--budget 8 --eval-every 2 --batch-size 4 --train-limit 32 --eval-size 4 --test-size 3 --seeds 1"
    tiny += " --max-source-tokens 24 --max-new-tokens 4 --calibration-size 4 --wandb-mode disabled --no-plots"
    tiny += " --no-bertscore --no-lead-baseline --dendrites.no-graphs-every-eval"
    tiny += " --arms baseline,compressed_pai,compressed_kd"
    registry = open_registry()

    def restructured() -> bool:
        for child in registry.list(kind="lm_experiment_arm", limit=5):
            metrics = Path(child.run_dir) / "metrics.jsonl"
            if (
                child.tags.get("arm") == "compressed_pai"
                and metrics.exists()
                and any(r.get("pai/restructured") == 1.0 for r in read_jsonl(metrics))
            ):
                return True
        return False

    with stopped_once(restructured), pytest.raises(SystemExit):
        main(["experiment", "lm", "--data", str(pairs), "--model", str(tiny_model), *tiny.split()])
    (record,) = registry.list(kind="lm_experiment", limit=5)
    assert record.status == RunStatus.QUEUED  # preempted: waiting to be resumed
    before = {c.tags["arm"]: c for c in registry.list(kind="lm_experiment_arm", limit=10)}
    assert set(before) == {"baseline", "compressed_pai"}
    assert before["compressed_pai"].status == RunStatus.QUEUED

    main(["experiment", "lm", "--resume", record.id])
    assert registry.get(record.id).status == RunStatus.COMPLETED
    after = registry.list(kind="lm_experiment_arm", limit=10)
    assert sorted(c.tags["arm"] for c in after) == ["baseline", "compressed_kd", "compressed_pai"]
    pai = registry.get(before["compressed_pai"].id)
    assert pai.status == RunStatus.COMPLETED and pai.attempts == 2
    logged = (Path(pai.run_dir) / "log.jsonl").read_text()
    assert "resuming the arm" in logged and "dendrites restored" in logged
    rows = {r["arm"]: r for r in json.loads((Path(record.run_dir) / "results.json").read_text())["rows"]}
    assert rows["compressed_pai"]["dendrites"] == 1 and rows["compressed_kd"]["teacher_seconds"] > 0


def test_a_resume_refuses_data_edited_since_the_experiment_started(
    tiny_model: Path, pairs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--resume` kept the arms an experiment finished and trained the rest on the data as it was now: an
    edited file gave arms trained and scored on other records, compared in one table, silently."""
    from cliutil import run_captured

    tiny = "--budget 4 --eval-every 2 --batch-size 4 --train-limit 32 --eval-size 4 --test-size 3 --seeds 1"
    tiny += " --max-source-tokens 24 --max-new-tokens 4 --calibration-size 4 --wandb-mode disabled --no-plots"
    tiny += " --no-bertscore --no-lead-baseline --arms baseline,compressed"
    registry = open_registry()

    def baseline_done() -> bool:
        experiments = registry.list(kind="lm_experiment")
        return any(Path(r.run_dir, "rows", "seed1-baseline.json").exists() for r in experiments)

    with stopped_once(baseline_done), pytest.raises(SystemExit):
        main(["experiment", "lm", "--data", str(pairs), "--model", str(tiny_model), *tiny.split()])
    preempt.reset()
    (record,) = registry.list(kind="lm_experiment", limit=5)
    assert record.status == RunStatus.QUEUED  # preempted: waiting to be resumed
    pairs.write_text(pairs.read_text().replace("the", "a"))
    capsys.readouterr()
    code, _, err = run_captured(["experiment", "lm", "--resume", record.id], capsys)
    assert code == 4 and f"the data changed since run {record.id} started ({pairs})" in err, err
    assert registry.get(record.id).status == RunStatus.QUEUED  # refused before the run was touched


def test_results_tables_and_charts(tmp_path: Path, pairs: Path) -> None:
    from tldrlab.experiments.lm_results import write_lm_results

    scores = {"baseline": [0.4, 0.5, 0.3], "compressed": [0.3, 0.2, 0.3], "compressed_pai": [0.3, 0.3, 0.2]}
    rows = [
        {
            "arm": arm,
            "seed": seed,
            "parameters": 100 if arm == "baseline" else 50,
            "rougeL": sum(values) / 3,
            "bertscore_f1": sum(values) / 3 + 0.1,
            "per_record": {"rougeL": values, "bertscore_f1": [v + 0.1 for v in values]},
        }
        for arm, values in scores.items()
        for seed in (1, 2)
    ]
    lead = {"arm": "lead1", "rougeL": 0.25, "per_record": {"rougeL": [0.2, 0.3, 0.25]}}
    config = LMExperimentConfig(data=str(pairs), arms=list(scores))
    tables_only = write_lm_results(tmp_path, rows, lead, config, plots=False)
    assert set(tables_only["files"]) == {"results.md", "results.csv"}
    results = write_lm_results(tmp_path, rows, lead, config)
    assert (tmp_path / "comparison.png").stat().st_size > 5000
    assert (tmp_path / "differences.png").stat().st_size > 5000
    (found,) = [d for d in results["differences"] if (d["arm"], d["reference"], d["metric"]) == (
        "compressed", "baseline", "rougeL")]  # fmt: skip
    assert found["difference"] == pytest.approx(-0.4 / 3)
    assert "Lead-1" in (tmp_path / "results.md").read_text()
    assert len((tmp_path / "results.csv").read_text().splitlines()) == 7


def test_compress_command_exports_a_transformers_directory(
    tiny_model: Path, pairs: Path, tmp_path: Path
) -> None:
    out = tmp_path / "half"
    main(
        [
            "experiment",
            "compress",
            str(tiny_model),
            "--ratio",
            "0.5",
            "--compression.num-layers",
            "2",
            "--calibration-data",
            str(pairs),
            "--calibration-size",
            "4",
            "--out",
            str(out),
            "--json",
        ]
    )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.num_hidden_layers == 2
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = torch.tensor([tokenizer.encode(CORPUS[0])])
    assert model(input_ids=ids).logits.shape[-1] == len(tokenizer)
    plan = json.loads((out / "compression.json").read_text())
    assert plan["layers"] == [0, 3] and plan["method"] == "activation"


def test_bad_arm_configs_are_clear_errors(tiny_model: Path, pairs: Path) -> None:
    from tldrlab.errors import ConfigError
    from tldrlab.experiments.lm_experiment import check_arms

    # refused by the config itself (before a run exists, 422 over the API), and by the run's own check
    with pytest.raises(ValidationError, match="unknown arm"):
        LMExperimentConfig(data=str(pairs), arms=["baseline", "pruned"])
    with pytest.raises(ValidationError, match="distils the fine-tuned baseline"):
        LMExperimentConfig(data=str(pairs), arms=["compressed_kd"])
    with pytest.raises(ValidationError, match="at least one arm"):
        LMExperimentConfig(data=str(pairs), seeds=[])
    with pytest.raises(ConfigError, match="unknown arm"):
        check_arms(LMExperimentConfig(data=str(pairs)).model_copy(update={"arms": ["pruned"]}))
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", "compress", str(tiny_model), "--importance", "taylor", "--out", "x"])
    assert exit_info.value.code != 0


def test_eval_data_that_is_the_training_data_is_refused_before_a_run(
    tiny_model: Path, pairs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--eval-data` naming the `--data` file was accepted: every arm was scored on records it trained on."""
    from cliutil import run_captured

    argv = ["experiment", "lm", "--data", str(pairs), "--eval-data", str(pairs), "--model", str(tiny_model)]
    code, _, err = run_captured(argv, capsys)
    assert code == 2 and f"eval_data: {pairs} is also what the arms train on" in err, err
    assert open_registry().list() == []


@pytest.mark.slow
def test_an_empty_instruction_is_kept_by_the_experiment(tiny_model: Path, pairs: Path) -> None:
    """`experiment lm --instruction ""` (ask with the document alone) trained, generated and saved its arms
    with the default instruction, though its config recorded ""; an empty one is kept, as a causal_lm
    training keeps it (`models.chat.instruction_of`); no instruction is still the default."""
    from tldrlab.experiments.lm_experiment import instruction_of_config
    from tldrlab.models.chat import DEFAULT_INSTRUCTION

    tiny = "--budget 2 --eval-every 2 --batch-size 4 --train-limit 16 --eval-size 4 --test-size 2 --seeds 1"
    tiny += " --max-source-tokens 24 --max-new-tokens 2 --wandb-mode disabled --no-plots --no-bertscore"
    tiny += " --no-lead-baseline --arms baseline -q"
    main(
        [
            "experiment",
            "lm",
            "--data",
            str(pairs),
            "--model",
            str(tiny_model),
            "--instruction",
            "",
            *tiny.split(),
        ]
    )
    (arm,) = open_registry().list(kind="lm_experiment_arm", limit=5)
    assert arm.status == RunStatus.COMPLETED and arm.config["instruction"] == ""
    saved = json.loads((Path(arm.run_dir) / "model" / "config.json").read_text())
    assert saved["tldrlab_instruction"] == ""
    default = LMExperimentConfig(data=str(pairs), model=str(tiny_model))
    assert instruction_of_config(default) == DEFAULT_INSTRUCTION


def test_the_dendrite_note_is_written_only_where_a_dendrite_arm_ran(tmp_path: Path, pairs: Path) -> None:
    from tldrlab.experiments.lm_results import write_lm_results

    rows = [
        {"arm": arm, "seed": 1, "parameters": 100, "rougeL": 0.3, "per_record": {"rougeL": [0.2, 0.4]}}
        for arm in ("baseline", "compressed")
    ]
    config = LMExperimentConfig(data=str(pairs), arms=["baseline", "compressed"])
    without = write_lm_results(tmp_path, rows, None, config, plots=False)
    assert "Dendrites trained" not in (tmp_path / "results.md").read_text()
    assert without["note"] is None
    pai_row = {**rows[1], "arm": "compressed_pai", "dendrites": 1}
    with_pai = write_lm_results(tmp_path, [*rows, pai_row], None, config, plots=False)
    assert "Dendrites trained by gradient descent" in (tmp_path / "results.md").read_text()
    assert with_pai["note"] and "Dendrites trained" in with_pai["note"]


def test_a_failed_arm_is_a_row_of_the_table_saying_why(tiny_model: Path, pairs: Path) -> None:
    """The baseline finishes, the dendrite arm fails (PerforatedAI finds no module at the path given): the
    experiment fails, and its results.md said nothing of the arm: a one-row table, read as the experiment."""
    tiny = "--budget 2 --eval-every 2 --batch-size 4 --train-limit 8 --eval-size 2 --test-size 2 --seeds 1"
    tiny += " --max-source-tokens 24 --max-new-tokens 4 --wandb-mode disabled --no-plots --no-bertscore"
    tiny += " --no-lead-baseline --arms baseline,compressed_pai --dendrites.module-ids .no.such.module"
    with pytest.raises(SystemExit):
        main(["experiment", "lm", "--data", str(pairs), "--model", str(tiny_model), *tiny.split()])
    (record,) = open_registry().list(kind="lm_experiment", limit=5)
    assert record.status == RunStatus.FAILED
    table = (Path(record.run_dir) / "results.md").read_text()
    (failed,) = [line for line in table.splitlines() if line.startswith("| compressed_pai |")]
    assert "failed" in failed and "seed 1" in failed and "no module of that path" in failed, table
    assert any(line.startswith("| baseline | 1 |") for line in table.splitlines()), table
