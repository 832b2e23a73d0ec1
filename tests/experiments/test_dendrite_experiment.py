"""The experiment end to end on real data with a tiny budget: table shape, arms that really differ."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from cliutil import run_cli
from tldrlab.cli.main import main
from tldrlab.experiments.config import EXPERIMENT_ARMS
from tldrlab.experiments.dendrite_experiment import ARMS, ExperimentConfig, train_arm
from tldrlab.experiments.results import markdown_table, summarize_rows
from tldrlab.runs import RunStatus, open_registry

TINY = [
    "--budget", "6", "--eval-every", "2", "--batch-size", "8", "--train-limit", "40", "--eval-size", "8",
    "--test-size", "3", "--max-source-tokens", "32", "--vocab-size", "300",
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.filterwarnings("error:.*past_key_values.*:FutureWarning")  # an API transformers 5.40 removes
def test_three_arms_on_scitldr(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = shared_data / "scitldr" / "scitldr_a.dev.jsonl"
    main(["experiment", "dendrites", "--data", str(data), "--arms", "baseline,compressed,compressed_pai",
          "--seeds", "1", "--max-dendrites", "1", "--dendrites.no-graphs-every-eval", "--json",
          *TINY])  # fmt: skip
    # PerforatedAI's own graphs are drawn once, at the end (test_dendrites.py checks the redraw at every
    # evaluation): here they cost seconds of matplotlib per evaluation and no assertion reads them
    runs = open_registry().list(kind="experiment", limit=5)
    assert len(runs) == 1 and runs[0].status == RunStatus.COMPLETED
    run_dir = Path(runs[0].run_dir)
    results = json.loads((run_dir / "results.json").read_text())
    rows = {r["arm"]: r for r in results["rows"]}
    assert list(rows) == ["baseline", "compressed", "compressed_pai"]
    # each arm really differs: compression removes parameters, PAI adds dendrites (and their parameters)
    assert rows["compressed"]["parameters"] < rows["baseline"]["parameters"]
    assert rows["compressed_pai"]["dendrites"] >= 1
    assert rows["compressed"]["parameters"] < rows["compressed_pai"]["parameters"]
    for row in rows.values():
        for metric in (
            "rouge1",
            "rouge2",
            "rougeL",
            "bertscore_f1",
            "highlight_p_at_3",
            "latency_ms",
            "train_seconds",
        ):
            assert isinstance(row[metric], float), (row["arm"], metric)
        assert row["steps"] <= 6 and row["latency_ms"] > 0
    # the table in three formats and the plot
    table = (run_dir / "results.md").read_text()
    assert table.count("\n| ") == 3 and "Highlight P@3" in table and "gradient descent" in table
    with open(run_dir / "results.csv") as handle:
        assert [r["arm"] for r in csv.DictReader(handle)] == ["baseline", "compressed", "compressed_pai"]
    assert (run_dir / "comparison.png").stat().st_size > 5000
    # each arm is a child run saved in this order: model, PAI state, run_metadata.json
    children = [r for r in open_registry().list(kind="experiment_arm", limit=10) if r.parent_id == runs[0].id]
    assert len(children) == 3
    pai_child = next(c for c in children if c.tags.get("arm") == "compressed_pai")
    final = Path(pai_child.run_dir) / "final"
    metadata = json.loads((final / "run_metadata.json").read_text())
    assert metadata["converted_modules"] and metadata["pai_globals"]["max_dendrites"] == 1
    assert {"model.safetensors", "pai_tracker_state.json", "pai_globals_snapshot.json"} <= set(
        metadata["files"]
    )


@pytest.mark.slow
def test_same_config_same_numbers(shared_data: Path) -> None:
    config = ExperimentConfig(
        data=str(shared_data / "debian_descriptions" / "debian_descriptions.validation.jsonl"),
        train_limit=40, eval_size=8, test_size=3, budget_steps=4, eval_every=2, batch_size=8,
        max_source_tokens=32, vocab_size=300, bertscore=False, highlights=False,
    )  # fmt: skip
    first = train_arm(config, "compressed_random", 3)
    second = train_arm(config, "compressed_random", 3)
    for metric in ("parameters", "eval_loss", "rouge1", "rougeL"):
        assert first[metric] == second[metric], metric
    assert first["run_id"] != second["run_id"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arms", "baseline,nope"], "unknown arm 'nope'; choose one of baseline, compressed"),
        (["--arms", "[]"], "give at least one arm and one seed"),  # (a blank --arms is refused as blank)
        (["--arms", "compressed"], "add 'baseline'"),
        (["--compression.d-model", "64", "--compression.dec-d-model", "32"], "dec_d_model=32 differs"),
        # a seed (or arm) given twice trained the same run twice: "2 seeds", every spread 0
        (["--seeds", "1,1"], "seed 1 given twice: give each seed once"),
        (["--arms", "baseline,baseline"], "arm baseline given twice: give each arm once"),
        # PerforatedAI raised a bare ValueError once the PAI arm perforated its model: a traceback, exit 1
        (["--dendrites.module-ids", "encoder.block.0.layer.1.DenseReluDense"], "module path starts with '.'"),
    ],
)
def test_a_config_that_cannot_run_leaves_no_run(
    args: list[str], message: str, shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # these were checked once the experiment ran: exit 2, but a failed experiment run was left behind
    # (and POST /runs accepted the config)
    data = shared_data / "scitldr" / "scitldr_a.dev.jsonl"
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", "dendrites", "--data", str(data), *args, *TINY])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert open_registry().list(kind="experiment") == []


def test_the_arm_names_the_config_knows_are_the_arms_there_are() -> None:
    assert list(ARMS) == EXPERIMENT_ARMS


def test_bad_input_is_a_clear_cli_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(
            ["experiment", "dendrites", "--data", str(tmp_path / "missing.jsonl"), "--arms", "baseline,nope"]
        )
    assert exit_info.value.code == 2
    assert "unknown arm" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", "dendrites", "--data", str(tmp_path / "missing.jsonl"), "--budget", "soon"])
    assert exit_info.value.code == 2 and "--budget" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", "dendrites", "--data", str(tmp_path / "missing.jsonl"), "--arms", "compressed"])
    assert exit_info.value.code == 2 and "add 'baseline'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", "dendrites", "--data", str(tmp_path / "missing.jsonl")])
    assert exit_info.value.code == 2 and "not found" in capsys.readouterr().err


def test_summary_gives_mean_and_spread_over_seeds() -> None:
    rows = [
        {"arm": "baseline", "seed": 1, "parameters": 100, "rougeL": 0.2},
        {"arm": "baseline", "seed": 2, "parameters": 100, "rougeL": 0.4},
        {"arm": "compressed", "seed": 1, "parameters": 50, "rougeL": 0.1},
    ]
    summary = summarize_rows(rows)
    assert [s["arm"] for s in summary] == ["baseline", "compressed"]
    assert summary[0]["rougeL_mean"] == pytest.approx(0.3)
    assert summary[0]["rougeL_std"] == pytest.approx(0.1414, abs=1e-4)
    assert summary[1]["rougeL_std"] == 0.0
    table = markdown_table(summary)
    assert "0.3000 ± 0.1414" in table and table.count("\n") == 4


def test_arm_registry_matches_the_documented_arms() -> None:
    assert set(ARMS) == {"baseline", "compressed", "compressed_pai", "compressed_random"}


@pytest.mark.slow
def test_quiet_reaches_the_parallel_seed_workers_bars(
    shared_data: Path, capfd: pytest.CaptureFixture[str], warm_worker_processes: Callable[..., None]
) -> None:
    """`--quiet --jobs 2`: the seed workers drew their training bars on the terminal (a fresh interpreter
    starts with bars on; `--quiet` turned them off in the parent only). capfd: the workers write to the
    test's stderr file descriptor, which the forkserver they are forked from inherits."""
    warm_worker_processes(
        "tldrlab.experiments.dendrite_experiment",
        "transformers.models.t5.modeling_t5",
        "rouge_score.rouge_scorer",
        "matplotlib.pyplot",
    )
    data = shared_data / "debian_descriptions" / "debian_descriptions.validation.jsonl"
    argv = [
        *("experiment", "dendrites", "--data", str(data), "--arms", "compressed_random", "--seeds", "1,2"),
        *("--budget", "2", "--eval-every", "2", "--batch-size", "8", "--train-limit", "40", "--eval-size"),
        *("4", "--test-size", "2", "--max-source-tokens", "16", "--vocab-size", "300", "--no-bertscore"),
        *("--no-highlights", "--jobs", "2", "--quiet"),
    ]
    assert run_cli(argv) == 0
    out, err = capfd.readouterr()
    assert "| compressed_random |" in out  # both seeds trained, in the workers
    assert "train:" not in err and "it/s" not in err, err


@pytest.mark.slow
def test_seeds_in_parallel_processes_give_the_sequential_numbers(
    shared_data: Path, warm_worker_processes: Callable[..., None]
) -> None:
    from tldrlab.experiments.dendrite_experiment import run_dendrite_experiment

    warm_worker_processes(
        "tldrlab.experiments.dendrite_experiment",
        "transformers.models.t5.modeling_t5",
        "rouge_score.rouge_scorer",
        "matplotlib.pyplot",
    )

    config = ExperimentConfig(
        data=str(shared_data / "debian_descriptions" / "debian_descriptions.validation.jsonl"),
        arms=["compressed_random"], seeds=[1, 2], train_limit=40, eval_size=8, test_size=3, budget_steps=4,
        eval_every=2, batch_size=8, max_source_tokens=32, vocab_size=300, bertscore=False, highlights=False,
    )  # fmt: skip
    sequential = run_dendrite_experiment(config)
    parallel = run_dendrite_experiment(config.model_copy(update={"jobs": 2}))
    assert [(r["arm"], r["seed"]) for r in parallel["rows"]] == [
        ("compressed_random", 1),
        ("compressed_random", 2),
    ]
    for one, other in zip(sequential["rows"], parallel["rows"], strict=True):
        assert one["parameters"] == other["parameters"]
        # the same seed gives the same model whichever process trains it (one torch thread in both here)
        assert one["eval_loss"] == pytest.approx(other["eval_loss"], rel=1e-5)
    assert sequential["rows"][0]["eval_loss"] != sequential["rows"][1]["eval_loss"]
    children = open_registry().list(kind="experiment_arm", limit=10)
    assert sum(1 for c in children if c.parent_id == parallel["run_id"]) == 2
    assert Path(parallel["files"]["comparison.png"]).exists()


def test_highlight_precision_ranks_sentences_with_the_registry_embedder() -> None:
    """Highlight P@3 ranks a record's sentences with the product's embedder (registry `minilm-onnx`, loaded in
    a fraction of a second), not a second MiniLM on PyTorch that took seconds to load in every process."""
    code = (
        "import sys\n"
        "from tldrlab.data.records import SummaryRecord\n"
        "from tldrlab.experiments.results import highlight_precision_at_k\n"
        "sentences = ['The cat slept on the warm windowsill.', 'Stock markets fell sharply on Monday.',\n"
        "             'A kitten napped beside the old cat.', 'The recipe needs two cups of flour.',\n"
        "             'Heavy rain is expected over the weekend.']\n"
        "labelled = SummaryRecord(id='a', document=' '.join(sentences), sentences=sentences,\n"
        "                         highlight_labels=[1, 0, 1, 0, 0])\n"
        "unlabelled = SummaryRecord(id='b', document='x', sentences=['x'], highlight_labels=[0])\n"
        "print(highlight_precision_at_k([labelled, unlabelled], ['Cats napping by a sunny window.', 'x']))\n"
        "print(highlight_precision_at_k([unlabelled], ['x']))\n"
        "print('sentence_transformers' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    # both cat sentences are in the top 3 (P@3 = 2/3); a record without a labelled highlight is left out
    assert out.stdout.split() == [str(2 / 3), "None", "False"], out.stdout + out.stderr


def test_input_the_run_would_refuse_leaves_no_run(
    tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A char tokenizer on a corpus with no character frequent enough, too few records, data that is not
    there, a directory of test files only: each was refused once the experiment ran, leaving a failed
    experiment run (and POST /runs accepted the last two). The command line refuses all four before a run
    exists, the API the last two (it does not read the whole data at submit)."""
    from fastapi.testclient import TestClient

    from cliutil import run_captured
    from tldrlab.service.app import create_app

    data = tldrlab_home / "data"  # inside the API's data root
    (data / "held").mkdir(parents=True)
    letters = "abcdefghijklmnopqrstuvwx"  # every character once: none occurs min_frequency=2 times
    rows = [{"document": letters[i], "summary": letters[i + 1]} for i in range(0, len(letters), 2)]
    (data / "once.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (data / "held" / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    small = ["--eval-size", "2", "--test-size", "2", "--batch-size", "2", "--seeds", "1"]
    for args, exit_code, message in (
        (["--data", str(data / "once.jsonl"), "--tokenizer-method", "char", "--vocab-size", "100"], 2,
         "no character of the corpus occurs min_frequency=2 times"),
        (["--data", str(data / "once.jsonl"), "--eval-size", "8", "--test-size", "8"], 2,
         "12 usable training records: too few"),
        (["--data", str(data / "missing.jsonl")], 2, "data not found"),
        (["--data", str(data / "held")], 3, "no file for split 'train' (files: test.jsonl)"),
        # accepted: the arms were scored on validation and test records they had trained on
        (["--data", str(data / "once.jsonl"), "--eval-data", str(data / "once.jsonl")], 2,
         f"eval_data: {data / 'once.jsonl'} is also what the arms train on"),
    ):  # fmt: skip
        argv = ["experiment", "dendrites", *small, "--arms", "baseline", *args, "-q"]
        code, _, err = run_captured(argv, capsys)
        assert code == exit_code and message in err and len(err.strip().splitlines()) == 1, (args, err)
    assert open_registry().list() == []
    client = TestClient(create_app())
    refused = client.post("/runs", json={"kind": "experiment", "config": {"data": "held"}})
    assert refused.status_code == 422, refused.text
    assert "no file for split 'train'" in refused.json()["message"], refused.text
    assert open_registry().list() == []


@pytest.mark.slow
def test_a_time_budget_trains_the_arm_until_the_deadline(
    shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `--budget 30m` (docs/dendrites.md) gave the loop 10**9 steps, above TrainConfig's ceiling: every arm
    # failed at setup with a pydantic traceback, exit 1; and results.md said "300 steps per arm (or N min)"
    data = shared_data / "debian_descriptions" / "debian_descriptions.validation.jsonl"
    tiny = [arg for arg in TINY if arg not in ("--budget", "6")]
    main(["experiment", "dendrites", "--data", str(data), "--arms", "baseline", "--seeds", "1",
          "--budget", "0.01m", "--no-bertscore", "--no-highlights", "--json", *tiny])  # fmt: skip
    (run,) = open_registry().list(kind="experiment")
    assert run.status == RunStatus.COMPLETED
    (row,) = json.loads(capsys.readouterr().out)["rows"]
    assert row["arm"] == "baseline" and row["steps"] >= 2  # stopped at an evaluation after the deadline
    assert "Budget: 0.01 min per arm," in (Path(run.run_dir) / "results.md").read_text()


def test_the_dendrite_note_is_written_only_where_a_dendrite_arm_ran(tmp_path: Path) -> None:
    from tldrlab.experiments.results import write_results

    rows = [
        {"arm": "baseline", "seed": 1, "parameters": 100, "rougeL": 0.2},
        {"arm": "compressed", "seed": 1, "parameters": 50, "rougeL": 0.1},
    ]
    config = ExperimentConfig(data="scitldr", arms=["baseline", "compressed"])
    (tmp_path / "without").mkdir()
    without = write_results(tmp_path / "without", rows, config)
    assert "Dendrites trained" not in (tmp_path / "without" / "results.md").read_text()
    assert without["note"] is None
    pai_row = {"arm": "compressed_pai", "seed": 1, "parameters": 60, "rougeL": 0.15, "dendrites": 1}
    (tmp_path / "with").mkdir()
    with_pai = write_results(tmp_path / "with", [*rows, pai_row], config)
    assert "Dendrites trained by gradient descent" in (tmp_path / "with" / "results.md").read_text()
    assert with_pai["note"] and "Dendrites trained" in with_pai["note"]


def test_a_failed_arm_is_a_row_of_the_table_saying_why(shared_data: Path) -> None:
    """The baseline finishes, the dendrite arm fails (PerforatedAI finds no module at the path given): the
    experiment fails, and its results.md said nothing of the arm: a one-row table, read as the experiment."""
    data = shared_data / "scitldr" / "scitldr_a.dev.jsonl"
    tiny = [*TINY, "--no-bertscore", "--no-highlights"]
    with pytest.raises(SystemExit):
        main(["experiment", "dendrites", "--data", str(data), "--arms", "baseline,compressed_pai", "--seeds",
              "1", "--dendrites.module-ids", ".no.such.module", *tiny])  # fmt: skip
    (record,) = open_registry().list(kind="experiment", limit=5)
    assert record.status == RunStatus.FAILED
    table = (Path(record.run_dir) / "results.md").read_text()
    (failed,) = [line for line in table.splitlines() if line.startswith("| compressed_pai |")]
    assert "failed" in failed and "seed 1" in failed and "no module of that path" in failed, table
    assert any(line.startswith("| baseline | 1 |") for line in table.splitlines()), table
