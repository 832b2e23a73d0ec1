"""The W&B sweep format on Optuna: every distribution sampled for real, grids, pruners, malformed files."""

from __future__ import annotations

import itertools
import math
import statistics
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from tldrlab.cli.main import main
from tldrlab.errors import ConfigError, InvalidInputError
from tldrlab.sweep.mapping import build_pruner, build_sampler, grid_size, suggest_params
from tldrlab.sweep.spec import DISTRIBUTIONS, load_sweep, parse_sweep

N = 400


def _spec(parameters: dict[str, Any], **extra: Any) -> Any:
    raw = {"method": "random", "program": "train.py", "metric": {"name": "loss"}, "parameters": parameters}
    return parse_sweep({**raw, **extra})


def _draw(parameters: dict[str, Any], n: int = N) -> dict[str, list[Any]]:
    spec = _spec(parameters)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    draws: dict[str, list[Any]] = {name: [] for name in spec.parameters}
    for _ in range(n):
        trial = study.ask()
        for name, value in suggest_params(trial, spec).items():
            draws[name].append(value)
        study.tell(trial, 0.0)
    return draws


def _is_multiple(value: float, q: float) -> bool:
    return abs(value / q - round(value / q)) < 1e-6


def test_every_distribution_is_mapped() -> None:
    from tldrlab.sweep.mapping import SUGGESTERS

    assert set(SUGGESTERS) == set(DISTRIBUTIONS)


def test_constant_categorical_and_int_uniform() -> None:
    d = _draw(
        {
            "c": {"value": "adam"},
            "cat": {"values": [16, 32, 64]},
            "nested": {"values": [[1, 2], {"a": 1}]},
            "i": {"min": 2, "max": 5},  # ints: W&B infers int_uniform
        }
    )
    assert set(d["c"]) == {"adam"}
    assert set(d["cat"]) == {16, 32, 64} and all(d["cat"].count(v) > N / 6 for v in (16, 32, 64))
    assert {str(v) for v in d["nested"]} == {"[1, 2]", "{'a': 1}"}  # lists / dicts survive the round trip
    assert set(d["i"]) == {2, 3, 4, 5} and all(isinstance(v, int) for v in d["i"])


def test_categorical_with_probabilities_follows_the_weights() -> None:
    d = _draw({"opt": {"values": ["a", "b", "c"], "probabilities": [0.7, 0.3, 0.0]}}, n=600)
    share_a = d["opt"].count("a") / 600
    assert 0.62 < share_a < 0.78 and "c" not in d["opt"] and "b" in d["opt"]


def test_uniform_and_quantised_uniform() -> None:
    d = _draw(
        {
            "u": {"min": 0.5, "max": 1.5},  # floats: W&B infers uniform
            "qu": {"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 0.25},
            "qi": {"distribution": "q_uniform", "min": 0, "max": 100, "q": 10},
        }
    )
    assert all(0.5 <= v <= 1.5 for v in d["u"]) and 0.4 < statistics.mean(d["u"]) - 0.5 < 0.6
    assert set(d["qu"]) == {0.0, 0.25, 0.5, 0.75, 1.0}
    # round(U/q)*q puts half the weight of the inner values on each end
    assert d["qu"].count(0.0) < d["qu"].count(0.5)
    assert all(isinstance(v, int) and v % 10 == 0 and 0 <= v <= 100 for v in d["qi"])


def test_log_uniform_variants_are_uniform_in_log_space() -> None:
    d = _draw(
        {
            "lv": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-1},
            "l": {"distribution": "log_uniform", "min": math.log(1e-5), "max": math.log(1e-1)},
            "inv": {"distribution": "inv_log_uniform_values", "min": 1e-5, "max": 1e-1},
            "invl": {"distribution": "inv_log_uniform", "min": math.log(10), "max": math.log(1e5)},
            "qlv": {"distribution": "q_log_uniform_values", "min": 1, "max": 1000, "q": 1},
            "ql": {"distribution": "q_log_uniform", "min": 0.0, "max": math.log(1000), "q": 5},
        }
    )
    for name in ("lv", "l", "inv", "invl"):
        values = d[name]
        assert all(1e-5 * 0.999 <= v <= 1e-1 * 1.001 for v in values), name
        # geometric midpoint 1e-3 splits log-uniform draws in half (a uniform law would put ~99% above it)
        below = sum(v < 1e-3 for v in values) / len(values)
        assert 0.4 < below < 0.6, (name, below)
        decades = {math.floor(math.log10(v)) for v in values}
        assert decades >= {-5, -4, -3, -2}, (name, decades)
    assert all(isinstance(v, int) and 1 <= v <= 1000 for v in d["qlv"])
    assert sum(v < 32 for v in d["qlv"]) / N > 0.35  # sqrt(1000) ~ 31.6 is the log-midpoint
    assert all(v % 5 == 0 and 0 <= v <= 1000 for v in d["ql"])


def test_normal_family_through_the_inverse_cdf() -> None:
    d = _draw(
        {
            "n": {"distribution": "normal", "mu": 3.0, "sigma": 2.0},
            "qn": {"distribution": "q_normal", "mu": 0.0, "sigma": 4.0, "q": 2},
            "ln": {"distribution": "log_normal", "mu": 0.0, "sigma": 0.5},
            "qln": {"distribution": "q_log_normal", "mu": 2.0, "sigma": 0.3, "q": 0.5},
            "default": {"distribution": "normal"},  # W&B defaults: mu 0, sigma 1
        },
        n=800,
    )
    assert 2.7 < statistics.mean(d["n"]) < 3.3 and 1.8 < statistics.stdev(d["n"]) < 2.2
    assert min(d["n"]) < 0 < 6 < max(d["n"])  # unbounded law, not clipped to a box
    assert all(isinstance(v, int) and v % 2 == 0 for v in d["qn"]) and 3.5 < statistics.stdev(d["qn"]) < 4.5
    logs = [math.log(v) for v in d["ln"]]
    assert (
        all(v > 0 for v in d["ln"])
        and abs(statistics.mean(logs)) < 0.06
        and 0.45 < statistics.stdev(logs) < 0.55
    )
    assert all(_is_multiple(v, 0.5) and v > 0 for v in d["qln"])
    assert 7.0 < statistics.median(d["qln"]) < 7.8  # e^2 ~ 7.39
    assert abs(statistics.mean(d["default"])) < 0.12 and 0.9 < statistics.stdev(d["default"]) < 1.1


def test_beta_family() -> None:
    d = _draw({"b": {"distribution": "beta", "a": 2.0, "b": 5.0}, "qb": {"distribution": "q_beta", "q": 0.1}})
    assert all(0 <= v <= 1 for v in d["b"]) and 0.26 < statistics.mean(d["b"]) < 0.31  # a / (a + b) = 0.2857
    assert all(_is_multiple(v, 0.1) and 0 <= v <= 1 for v in d["qb"])


def test_nested_parameters_flatten_to_dotted_names() -> None:
    spec = _spec({"train": {"parameters": {"lr": {"values": [0.1]}, "batch_size": {"value": 8}}}})
    assert list(spec.parameters) == ["train.lr", "train.batch_size"]


def test_grid_enumerates_every_combination_once() -> None:
    spec = _spec(
        {
            "ratio": {"values": [0.6, 0.75, 0.9]},
            "pai": {"values": [True, False]},
            "layers": {"distribution": "int_uniform", "min": 1, "max": 2},
            "drop": {"distribution": "q_uniform", "min": 0.0, "max": 0.2, "q": 0.1},
            "fixed": {"value": "x"},
        },
        method="grid",
    )
    assert grid_size(spec) == 3 * 2 * 2 * 3
    study = optuna.create_study(sampler=build_sampler(spec))
    seen = []
    study.optimize(lambda t: (seen.append(tuple(suggest_params(t, spec).values())), 0.0)[1], n_trials=36)
    expected = set(itertools.product([0.6, 0.75, 0.9], [True, False], [1, 2], [0.0, 0.1, 0.2], ["x"]))
    assert len(seen) == 36 and set(seen) == expected


def test_samplers_and_pruners() -> None:
    bayes = _spec({"x": {"min": 0.0, "max": 1.0}}, method="bayes", seed=3)
    assert isinstance(build_sampler(bayes), optuna.samplers.TPESampler)
    assert isinstance(build_sampler(_spec({"x": {"values": [1]}})), optuna.samplers.RandomSampler)
    hb = _spec({"x": {"values": [1]}}, early_terminate={"type": "hyperband", "min_iter": 1, "s": 2, "eta": 3})
    pruner = build_pruner(hb)
    assert isinstance(pruner, optuna.pruners.HyperbandPruner)
    assert (pruner._min_resource, pruner._max_resource, pruner._reduction_factor) == (1, 9, 3)
    median = build_pruner(_spec({"x": {"values": [1]}}, early_terminate={"type": "median", "min_iter": 3}))
    assert isinstance(median, optuna.pruners.MedianPruner) and median._n_warmup_steps == 3
    assert isinstance(build_pruner(_spec({"x": {"values": [1]}})), optuna.pruners.NopPruner)


BASE = {
    "method": "random",
    "program": "train.py",
    "metric": {"name": "loss"},
    "parameters": {"x": {"values": [1]}},
}

MALFORMED = [
    ({"method": "bayesian"}, "method", "bayes, grid, random"),
    ({"metric": {"name": "loss", "goal": "up"}}, "metric.goal", "minimize, maximize"),
    (
        {"parameters": {"x": {"distribution": "gaussian", "min": 0}}},
        "parameters.x.distribution",
        "log_uniform",
    ),
    ({"parameters": {"x": {"distribution": "uniform", "min": 0}}}, "parameters.x.max", "required"),
    ({"parameters": {"x": {"distribution": "normal", "min": 0}}}, "parameters.x.min", "mu, sigma"),
    ({"parameters": {"x": {"min": 2, "max": 1}}}, "parameters.x.min", "greater than max"),
    (
        {"parameters": {"x": {"distribution": "log_uniform_values", "min": 0, "max": 1}}},
        "parameters.x.min",
        "> 0",
    ),
    ({"parameters": {"x": {"values": []}}}, "parameters.x.values", "non-empty"),
    (
        {"parameters": {"x": {"values": [1, 2], "probabilities": [0.2, 0.2]}}},
        "parameters.x.probabilities",
        "sum",
    ),
    (
        {"parameters": {"x": {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0}}},
        "parameters.x.q",
        "> 0",
    ),
    (
        {"method": "grid", "parameters": {"x": {"min": 0.0, "max": 1.0}}},
        "parameters.x",
        "list the values to try",
    ),
    ({"early_terminate": {"type": "asha"}}, "early_terminate.type", "hyperband, median"),
    ({"early_terminate": {"type": "hyperband", "eta": 3}}, "early_terminate", "min_iter or max_iter"),
    ({"early_terminate": {"type": "hyperband", "min_iter": 0}}, "early_terminate.min_iter", ">= 1"),
    ({"paramters": {}}, "paramters", "parameters"),
    ({"run_cap": -1}, "run_cap", ">= 1"),
    ({"seed": 2**64}, "seed", "from 0 to 4294967295"),  # Optuna's samplers failed on it once the sweep ran
    ({"program": None}, "program", "tldrlab.train"),
    ({"program": "tldrlab.train", "command": ["x"]}, "command", "not used"),
    ({"config": {"a": 1}}, "config", "tldrlab.train"),
]


@pytest.mark.parametrize(("change", "key", "allowed"), MALFORMED, ids=[m[1] for m in MALFORMED])
def test_malformed_sweep_names_the_key_and_allowed_values(
    change: dict[str, Any], key: str, allowed: str
) -> None:
    raw = {**BASE, **change}
    if change.get("program", "") is None:
        raw.pop("program")
    with pytest.raises(ConfigError) as err:
        parse_sweep(raw)
    assert err.value.message.startswith(f"{key}:") or f" {key}:" in err.value.message, err.value.message
    assert allowed in err.value.message


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out + err


def test_cli_reports_malformed_files_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**BASE, "parameters": {"lr": {"distribution": "loguniform", "min": 1}}}))
    code, output = _main(["sweep", "run", str(bad)], capsys)
    assert code == 2
    assert "parameters.lr.distribution" in output and "log_uniform_values" in output
    assert "Traceback" not in output
    not_yaml = tmp_path / "broken.yaml"
    not_yaml.write_text("method: [grid\n")
    code, output = _main(["sweep", "run", str(not_yaml)], capsys)
    assert code == 2 and "not valid YAML" in output
    code, output = _main(["sweep", "run", str(tmp_path / "nope.yaml")], capsys)
    assert code == 3 and "not found" in output
    code, output = _main(["sweep", "status", "nothing-here"], capsys)
    assert code == 3 and "no study 'nothing-here'" in output


def test_shipped_examples_parse() -> None:
    from tldrlab.sweep import examples_dir

    files = sorted(examples_dir().glob("*.yaml"))
    assert len(files) >= 3
    for path in files:
        spec = load_sweep(path)
        assert spec.parameters and spec.kind in ("train", "experiment", "command"), path


def test_program_configs_take_dotted_overrides(shared_data: Path) -> None:
    from tldrlab.sweep.runner import check_spec
    from tldrlab.sweep.trials import experiment_config, train_job_config

    exp = parse_sweep(
        {
            "method": "random",
            "program": "tldrlab.experiment",
            "metric": {"name": "highlight_p_at_3", "goal": "maximize"},
            "parameters": {"arm": {"values": ["compressed"]}, "dendrites.switch_every": {"values": [5]}},
            "config": {"data": str(shared_data / "scitldr"), "budget_steps": 10},
        }
    )
    check_spec(exp)
    config, arm, seed = experiment_config(exp, {"arm": "compressed", "dendrites.switch_every": 5, "seed": 4})
    assert (arm, seed, config.dendrites.switch_every, config.budget_steps) == ("compressed", 4, 5, 10)
    # what such a trial trains, named so that command-line trials load no torch
    from tldrlab.experiments.dendrite_experiment import train_arm
    from tldrlab.sweep.trials import EXPERIMENT_ARM
    from tldrlab.targets import load_target

    assert load_target(EXPERIMENT_ARM) is train_arm
    with pytest.raises(ConfigError, match=r"parameters\.arm: unknown arm 'pai'"):
        check_spec(parse_sweep({**exp.raw, "parameters": {"arm": {"value": "pai"}}}))
    with pytest.raises(ConfigError, match="dropout"):
        check_spec(parse_sweep({**exp.raw, "parameters": {"dropout": {"value": 2.0}}}))

    train = parse_sweep(
        {
            "method": "grid",
            "program": "tldrlab.train",
            "metric": {"name": "eval_rouge1", "goal": "maximize"},
            "parameters": {"train.lr": {"values": [0.01]}, "model_settings.d_model": {"values": [32]}},
            "config": {
                "model": "t5",
                "data": {"path": str(shared_data / "debian_descriptions"), "generate_every": 1},
            },
        }
    )
    check_spec(train)
    job = train_job_config(train, {"train.lr": 0.01, "model_settings.d_model": 32})
    assert job.train.lr == 0.01 and job.model_settings == {"d_model": 32}
    assert (job.train.best_metric, job.train.best_mode) == ("eval_rouge1", "max")  # follows the sweep metric
    with pytest.raises(ConfigError, match="d_modle"):
        check_spec(parse_sweep({**train.raw, "parameters": {"model_settings.d_modle": {"value": 8}}}))
    with pytest.raises(ConfigError, match=r"train\.lr"):
        check_spec(parse_sweep({**train.raw, "parameters": {"train.lr": {"value": -1.0}}}))
    # the config's class refuses an unknown model; the train kind's own check, data that is not there
    with pytest.raises(ConfigError, match=r"model: unknown model 't6'"):
        check_spec(parse_sweep({**train.raw, "config": {**train.config, "model": "t6"}}))
    with pytest.raises(InvalidInputError, match="data not found"):
        check_spec(
            parse_sweep(
                {
                    **train.raw,
                    "config": {
                        **train.config,
                        "data": {**train.config["data"], "path": str(shared_data / "no")},
                    },
                }
            )
        )


def test_a_sweep_file_with_a_bad_config_leaves_no_failed_sweep_run(
    tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command line checks the program's config before it creates the sweep run, as for any kind."""
    from tldrlab.runs import open_registry

    sweep = {
        "method": "grid",
        "program": "tldrlab.train",
        "metric": {"name": "eval_loss"},
        "parameters": {"train.lr": {"values": [0.01]}},
        "config": {"model": "t6", "data": {"path": str(shared_data / "debian_descriptions")}},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    code, output = _main(["sweep", "run", str(path)], capsys)
    assert code == 2 and "model: unknown model 't6'" in output, output
    assert open_registry().list(kind="sweep") == []


def test_a_hyperband_max_iter_below_min_iter_is_refused_before_a_sweep_run_exists(
    tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tldrlab sweep run` read the file, created the sweep run and only then built the pruner, which refused
    max_iter 2 below min_iter 5: exit 2, but a failed sweep run left behind. The file's check refuses it now,
    in one line naming the key, and no run is created."""
    from tldrlab.runs import open_registry

    sweep = {
        "method": "random",
        "program": "tldrlab.train",
        "metric": {"name": "eval_loss"},
        "parameters": {"train.lr": {"min": 1e-3, "max": 1e-2}},
        "early_terminate": {"type": "hyperband", "min_iter": 5, "max_iter": 2},
        "config": {"model": "char_lstm", "data": {"path": str(shared_data / "debian_descriptions")}},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    code, output = _main(["sweep", "run", str(path), "--trials", "1"], capsys)
    assert code == 2, output
    assert f"{path}: early_terminate.max_iter: 2 is below min_iter 5" in output, output
    assert "Traceback" not in output
    assert open_registry().list() == []


def test_a_continuous_range_under_grid_says_what_is_wrong_and_what_to_do() -> None:
    """It said `parameters.lr.distribution: method grid cannot enumerate uniform; allowed with grid:
    constant, categorical, ...`: a distribution the user never wrote (min/max of floats infer it), and a list
    of internal names instead of what to change."""
    with pytest.raises(ConfigError) as caught:
        _spec({"lr": {"min": 1e-4, "max": 1e-2}}, method="grid")
    message = caught.value.message
    assert message.startswith("parameters.lr: method grid tries every value of every parameter"), message
    assert "continuous range (uniform from 0.0001 to 0.01)" in message
    assert "list the values to try (`values: [...]`" in message and "use method random or bayes" in message
    assert "allowed with grid" not in message


def test_a_sweep_config_names_no_file_to_read_but_a_sweep_files_own_mapping_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`SweepConfig` (a run's config, what a worker validates) read a `config` given as a file name relative
    to the process's working directory: validating a config read a file of whatever machine validated it,
    and a missing one was a NotFoundError, not a validation error at its key."""
    from pydantic import ValidationError

    from tldrlab.sweep.config import SweepConfig

    (tmp_path / "base.yaml").write_text("model: char_lstm\n")
    monkeypatch.chdir(tmp_path)
    lr = {"train.lr": {"values": [0.001, 0.002]}}
    for named in ("base.yaml", str(tmp_path / "base.yaml"), "missing.yaml"):
        sweep = {"program": "tldrlab.train", "method": "grid", "config": named, "parameters": lr}
        with pytest.raises(ValidationError) as refused:
            SweepConfig(sweep=sweep)
        (error,) = refused.value.errors()
        assert error["loc"] == ("sweep", "config") and "as a mapping" in error["msg"], error
    # the sweep file's own name is read beside it, and stored inline for the run
    spec_file = tmp_path / "s.yaml"
    named_in_file = {"program": "tldrlab.train", "method": "grid", "config": "base.yaml", "parameters": lr}
    spec_file.write_text(yaml.safe_dump(named_in_file))
    monkeypatch.chdir("/")
    stored = load_sweep(spec_file).raw
    assert stored["config"] == {"model": "char_lstm"}
    assert SweepConfig(sweep=stored).sweep["config"] == {"model": "char_lstm"}
