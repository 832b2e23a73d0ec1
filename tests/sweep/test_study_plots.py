"""A sweep's study plots leave the process's matplotlib style as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import optuna
import pytest

from tldrlab.runs.atomic import append_jsonl
from tldrlab.sweep.report import plot_study
from tldrlab.track.plots import plot_run_metrics

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _sampled_study(extra: dict[str, Any]) -> optuna.Study:
    """Eight random trials drawn through the sweep's own mapping: a quantised log-uniform `lr` and a normal
    `dropout` (the two Optuna keeps under internal names), an integer `layers`, and `extra`."""
    from tldrlab.sweep.mapping import suggest_params
    from tldrlab.sweep.spec import parse_sweep

    parameters: dict[str, Any] = {
        "lr": {"distribution": "q_log_uniform_values", "min": 1e-4, "max": 1e-1, "q": 1e-4},
        "dropout": {"distribution": "normal", "mu": 0.2, "sigma": 0.05},
        "layers": {"min": 1, "max": 4},
        **extra,
    }
    spec = parse_sweep(
        {"method": "random", "program": "p.py", "metric": {"name": "loss"}, "parameters": parameters}
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(8):
        trial = study.ask()
        values = suggest_params(trial, spec)
        study.tell(trial, values["lr"] * 10 + values["dropout"] + values["layers"])
    return study


def test_study_plots_do_not_restyle_the_run_curves_drawn_after_them(tmp_path: Path) -> None:
    # optuna's history and importance plots call plt.style.use("ggplot"): a worker that exported a sweep's
    # plots drew every later run's curves in ggplot's grey frame and colours
    before = dict(matplotlib.rcParams)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: (t.suggest_float("x", -1, 1) - 0.2) ** 2 + t.suggest_int("n", 1, 4), n_trials=8)
    written, _ = plot_study(study, tmp_path / "plots")
    assert {p.name for p in written} >= {"optimization_history.png", "param_importances.png"}
    changed = {
        k for k, v in matplotlib.rcParams.items() if str(v) != str(before.get(k)) and "backend" not in k
    }  # the backend is Agg by plot_study's own choice (files only, no display)
    assert not changed, f"the study plots changed matplotlib settings: {sorted(changed)[:5]}"

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for step in (1, 2, 3):
        append_jsonl(run_dir / "metrics.jsonl", {"step": step, "train_loss": 4.0 / step, "lr": 0.01})
    (lr_png,) = (p for p in plot_run_metrics(run_dir) if p.name == "lr.png")
    from PIL import Image

    with Image.open(lr_png) as image:
        pixels = list(image.convert("RGB").getdata())
    assert pixels.count((0x1F, 0x77, 0xB4)) > 10  # matplotlib's own first colour, not ggplot's red
    assert pixels.count((0xE5, 0xE5, 0xE5)) < len(pixels) // 10  # no ggplot grey panel


def test_the_importance_plot_names_parameters_as_the_sweep_file_does() -> None:
    """Parameters Optuna draws through an internal variable (a quantised `lr@x`, a normal's quantile
    `dropout@u`) were labelled with those names in param_importances.png."""
    import warnings

    import matplotlib.pyplot as plt

    from tldrlab.sweep.report import plot_param_importances

    study = _sampled_study({})
    assert {"lr@x", "dropout@u"} <= set(study.trials[0].params)  # the internal names Optuna keeps
    before = dict(matplotlib.rcParams)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib backend experimental
        axes = plot_param_importances(study)
    labels = {label.get_text() for label in axes.get_yticklabels()}
    plt.close(axes.figure)
    assert labels == {"lr", "dropout", "layers"}, labels
    # drawn alone too, optuna's plt.style.use("ggplot") stays in the plot: it restyled the run curves a
    # worker drew later (tests/track/test_plots.py's single point failed after this test in one process)
    changed = {k for k, v in matplotlib.rcParams.items() if str(v) != str(before.get(k))}
    assert not changed, f"the importance plot changed matplotlib settings: {sorted(changed)[:5]}"


def test_the_parallel_coordinate_plot_shows_the_parameters_values() -> None:
    """Its axes were Optuna's internal variables: `lr@x` (a value before rounding to q) and `dropout@u`, a
    normal's quantile in [0, 1], which reads as a dropout of 0 to 1 where the trials drew 0.1 to 0.3."""
    import warnings

    import matplotlib.pyplot as plt

    from tldrlab.sweep.report import plot_parallel_coordinate

    study = _sampled_study({"shape": {"values": [[1, 2], [3]]}, "seed": {"value": 7}})
    drawn = {name: [t.user_attrs["params"][name] for t in study.trials] for name in ("lr", "dropout")}
    before = dict(matplotlib.rcParams)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna marks its matplotlib backend experimental
        axes = plot_parallel_coordinate(study)
    names = [label.get_text() for label in axes.get_xticklabels()]
    assert names == ["Objective Value", "dropout", "layers", "lr", "shape"], names  # the constant: no axis
    figure = axes.figure
    for name, seen in drawn.items():  # each parameter's axis (a twin of the first) spans the values drawn
        low, high = figure.axes[1 + names.index(name)].get_ylim()
        assert (low, high) == pytest.approx((min(seen), max(seen))), (name, low, high, seen)
    shape = figure.axes[1 + names.index("shape")]
    assert {label.get_text() for label in shape.get_yticklabels()} == {"[1, 2]", "[3]"}
    plt.close(figure)
    assert {k for k, v in matplotlib.rcParams.items() if str(v) != str(before.get(k))} == set()


def test_an_export_over_an_earlier_one_leaves_none_of_its_files_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sweep export` of a study with no complete trial, into the folder an earlier export of another study
    wrote, wrote its trials.csv beside the other study's best.json and four plots: the folder read as if this
    study had that best trial."""
    from cliutil import run_captured
    from tldrlab.sweep.storage import open_storage

    storage = open_storage(None)  # the home's sweeps.db, where `tldrlab sweep` keeps its studies
    done = optuna.create_study(study_name="done", storage=storage, sampler=optuna.samplers.RandomSampler(0))

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0, 1)
        trial.report(x, 1)
        return (x - 0.3) ** 2

    done.optimize(objective, n_trials=3)
    failing = optuna.create_study(study_name="failing", storage=storage)
    failing.tell(failing.ask(), state=optuna.trial.TrialState.FAIL)
    out = tmp_path / "report"
    code, _, err = run_captured(["sweep", "export", "done", "--out", str(out)], capsys)
    assert code == 0 and (out / "best.json").is_file() and len(list(out.glob("plots/*.png"))) == 4, err

    code, said, err = run_captured(["sweep", "export", "failing", "--out", str(out)], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.rglob("*") if p.is_file()) == ["trials.csv", "trials.json"], said
