"""`elm optimize`: a tiny study on the Sweeps engine (TPE, median pruner, SQLite), resumed, and its errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import optuna
import pytest

from tldrlab.elm.optimize import optimize_elm
from tldrlab.elm.search import SEARCH_SPACE, sweep_mapping
from tldrlab.elm.train import ElmTrainConfig
from tldrlab.errors import ConfigError, ConflictError, InvalidInputError, NotFoundError
from tldrlab.runs import open_registry
from tldrlab.sweep.spec import parse_sweep


def base_config(data: Path, tokenizer: Path) -> ElmTrainConfig:
    return ElmTrainConfig.model_validate(
        {
            "data": str(data),
            "tokenizer": str(tokenizer),
            "model": {"num_prefix_tokens": 2, "lm_settings": {"dropout": 0.0}},
            "max_steps": 4,
            "eval_interval": 2,
            "eval_samples": 3,
            "max_target_len": 12,
            "train": {"progress": False, "plot": False, "checkpoint_every": 0},
        }
    )


def test_search_space_is_the_seeds_and_parses_on_the_sweeps_engine() -> None:
    spec = parse_sweep(sweep_mapping("s", warmup=2, hidden_dims=[16, 32]))
    assert spec.method == "bayes" and spec.metric == "bertscore_composite" and spec.goal == "maximize"
    assert spec.early_terminate is not None and spec.early_terminate.type == "median"
    assert set(spec.parameters) == set(SEARCH_SPACE)
    assert spec.parameters["model.hidden_dim"].options["values"] == [16, 32]
    assert SEARCH_SPACE["train.lr"] == {"distribution": "log_uniform_values", "min": 1e-5, "max": 5e-3}
    assert SEARCH_SPACE["loss.text_drift_target_similarity"]["min"] == 0.7


@pytest.mark.slow
def test_tiny_study_runs_resumes_and_keeps_finished_trials(
    elm_data: Path, elm_tokenizer: Path, tmp_path: Path
) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    base = base_config(elm_data, elm_tokenizer)
    first = optimize_elm(base, trials=2, storage=storage, study_name="tiny", hidden_dims=[16, 32], quiet=True)
    assert sum(first["trials"].values()) == 2 and first["trials"].get("COMPLETE", 0) >= 1
    best = first["best"]
    assert 0.0 <= best["value"] <= 1.0 and set(best["params"]) == set(SEARCH_SPACE)
    study = optuna.load_study(study_name="tiny", storage=storage)
    before = {t.number: t.params for t in study.trials}

    again = optimize_elm(base, trials=3, storage=storage, study_name="tiny", hidden_dims=[16, 32], quiet=True)
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert len(study.trials) == 3 and sum(again["trials"].values()) == 3
    assert {t.number: t.params for t in study.trials[:2]} == before  # finished trials were kept, not re-run
    trial_runs = [r for r in open_registry().list(kind="elm_train") if r.tags.get("study") == "tiny"]
    assert len(trial_runs) == 3
    # every trial's value is the best composite its run measured
    for trial in study.trials:
        if trial.state == optuna.trial.TrialState.COMPLETE:
            assert trial.value is not None and 0.0 <= trial.value <= 1.0

    with pytest.raises(ConflictError, match="different sweep"):
        optimize_elm(base, trials=3, storage=storage, study_name="tiny", hidden_dims=[64], quiet=True)


def test_the_search_leaves_out_batch_sizes_larger_than_the_training_records(
    elm_data: Path, elm_tokenizer: Path, tmp_path: Path
) -> None:
    # 6 training records: batch sizes 8 and 16 cannot fill one batch, and trials drawing them failed until
    # "3 trials failed in a row" stopped the search
    base = base_config(elm_data, elm_tokenizer).model_copy(update={"limit": 6, "max_steps": 2})
    storage = f"sqlite:///{tmp_path / 'small.db'}"
    summary = optimize_elm(base, trials=2, storage=storage, study_name="small", hidden_dims=[16], quiet=True)
    study = optuna.load_study(study_name="small", storage=storage)
    assert [t.params["train.batch_size"] for t in study.trials] == [4, 4]
    assert "FAIL" not in summary["trials"] and sum(summary["trials"].values()) == 2


def test_too_few_training_records_for_any_batch_size_are_refused_before_a_study(
    elm_data: Path, tmp_path: Path
) -> None:
    base = ElmTrainConfig(data=str(elm_data), limit=3)
    with pytest.raises(InvalidInputError, match="has 3 training records: too few for the smallest searched"):
        optimize_elm(base, trials=1, storage=f"sqlite:///{tmp_path / 's.db'}")
    assert not (tmp_path / "s.db").exists()


def test_missing_data_fails_before_a_study_exists(tmp_path: Path) -> None:
    base = ElmTrainConfig(data=str(tmp_path / "nothing"))
    with pytest.raises(NotFoundError, match="prepare the data first"):
        optimize_elm(base, trials=1, storage=f"sqlite:///{tmp_path / 's.db'}")
    assert not (tmp_path / "s.db").exists()


def test_optimize_cli_runs_a_trial_and_prints_the_best(
    elm_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    from tldrlab.cli.main import main

    # Optuna's own lines stay off the console, `--quiet` or not: `elm optimize --quiet` printed "A new study
    # created in RDB" and, run again, "Using an existing study" (its run opened the study before the sweep
    # quieted Optuna, which a fresh process starts at INFO)
    records: list[logging.LogRecord] = []
    catch = logging.Handler()
    catch.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("optuna").addHandler(catch)
    storage = f"sqlite:///{tmp_path / 'cli.db'}"
    # no training curves: matplotlib drawing three PNGs at the trial's end (~1.3 CPU-s, more with its first
    # import) that nothing here reads; the other tests of this file train with `plot: False` too
    argv = [
        "elm", "optimize", "--data", str(elm_data), "--trials", "1", "--max-steps", "2",
        "--eval-samples", "2", "--limit", "16", "--hidden-dims", "16", "--storage", storage,
        "--study-name", "cli", "--base.train.no-plot",
    ]  # fmt: skip
    try:
        optuna.logging.set_verbosity(optuna.logging.INFO)  # as each fresh process starts
        main(argv)
        out = capsys.readouterr().out
        optuna.logging.set_verbosity(optuna.logging.INFO)
        main([*argv, "--quiet"])  # the study exists: resumed, its one trial finished
    finally:
        logging.getLogger("optuna").removeHandler(catch)
    assert [r.getMessage() for r in records if r.levelno < logging.WARNING] == []
    assert "best: trial 0 bertscore_composite=" in out and "model.hidden_dim" in out
    study = optuna.load_study(study_name="cli", storage=storage)
    assert study.user_attrs["elm_base_config"]["limit"] == 16 and len(study.trials) == 1


@pytest.mark.slow
def test_two_worker_processes_share_one_study(
    elm_data: Path, elm_tokenizer: Path, tmp_path: Path, warm_worker_processes: Callable[..., None]
) -> None:
    warm_worker_processes(
        "tldrlab.service.sweeps",
        "transformers.models.gpt2.modeling_gpt2",
        "bert_score",
        "rouge_score.rouge_scorer",
    )
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    base = base_config(elm_data, elm_tokenizer).model_copy(update={"max_steps": 2})  # one evaluation a trial
    summary = optimize_elm(
        base, trials=2, jobs=2, storage=storage, study_name="pair", hidden_dims=[16], quiet=True
    )
    study = optuna.load_study(study_name="pair", storage=storage)
    assert len(study.trials) >= 2 and sum(summary["trials"].values()) == len(study.trials)
    # the spawned workers rebuilt the trials from the sweep mapping, base config included
    trial_runs = [r for r in open_registry().list(kind="elm_train") if r.tags.get("study") == "pair"]
    assert len(trial_runs) == len(study.trials)
    assert {r.parent_id for r in trial_runs} == {summary["run_id"]}


def test_the_elm_program_is_a_sweep_program_of_its_own() -> None:
    from tldrlab.sweep.trials import TRIAL_PROGRAMS

    spec = parse_sweep({**sweep_mapping("s"), "config": {"data": "data/elm"}})
    assert spec.kind == "elm" and "elm" in TRIAL_PROGRAMS
    assert TRIAL_PROGRAMS["elm"].kind == "elm_train"
    TRIAL_PROGRAMS["elm"].check(spec, {"train.lr": 1e-3, "model.hidden_dim": 64})
    with pytest.raises(ConfigError):
        TRIAL_PROGRAMS["elm"].check(spec, {"model.dropout": 5.0})


def test_a_sweep_trial_keeps_the_elm_train_sections_defaults(
    elm_data: Path, elm_tokenizer: Path, tmp_path: Path
) -> None:
    """A sweep's `config` means what it means to `tldrlab elm train`: a `train:` section given in part keeps
    ELM's loop defaults (batch 8, lr 1e-3, early stopping), not TrainConfig's own (batch 16, lr 3e-4)."""
    from tldrlab.kinds import validate_config
    from tldrlab.runs.run import read_manifest
    from tldrlab.sweep.runner import run_sweep

    base = {
        "data": str(elm_data),
        "tokenizer": str(elm_tokenizer),
        "model": {"num_prefix_tokens": 2, "lm_settings": {"dropout": 0.0}},
        "max_steps": 2,
        "eval_samples": 2,
        "max_target_len": 12,
        "train": {"max_steps": 2, "progress": False, "plot": False, "checkpoint_every": 0},
    }
    sweep = {
        "name": "elm-defaults",
        "program": "tldrlab.elm",
        "method": "grid",
        "metric": {"name": "bertscore_composite", "goal": "maximize"},
        "parameters": {"model.hidden_dim": {"values": [16]}},
        "config": base,
    }
    summary = run_sweep(parse_sweep(sweep), trials=1, storage=f"sqlite:///{tmp_path / 's.db'}", quiet=True)
    (record,) = [r for r in open_registry().list(kind="elm_train") if r.parent_id == summary["run_id"]]
    recorded = read_manifest(record.run_dir)["config"]
    assert (recorded["train"]["batch_size"], recorded["train"]["lr"]) == (8, 1e-3)
    assert recorded["train"]["early_stopping_patience"] == 2
    # exactly what the elm_train kind builds from the same base + parameters (+ the sweep's objective)
    raw = {**base, "model": {**base["model"], "hidden_dim": 16}, "use_bertscore": True}  # type: ignore[dict-item]
    raw["train"] = {**base["train"], "best_metric": "bertscore_composite", "best_mode": "max"}  # type: ignore[dict-item]
    assert recorded == validate_config("elm_train", raw).model_dump(mode="json")
