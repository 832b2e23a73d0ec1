"""W&B sweep semantics on Optuna: samplers, parameter distributions and pruners.

    sampler = build_sampler(spec)               # bayes -> TPE, grid -> GridSampler, random -> RandomSampler
    pruner = build_pruner(spec)                 # hyperband -> HyperbandPruner, median -> MedianPruner
    values = suggest_params(trial, spec)        # {dotted name: value} drawn with W&B's distributions

Distributions Optuna has natively are suggested under the parameter's own name. The others are drawn the way
W&B's own sweep engine draws them (sweeps/params.py `ppf`): Optuna suggests an internal variable (a uniform
quantile `NAME@u`, or the un-quantised value `NAME@x`) and the W&B value is computed from it (inverse CDF,
rounding to a multiple of q). Optuna's plots show those internal variables (the importance plot names them
as their parameters: `parameter_name`; the parallel-coordinate plot draws the W&B values);
`trial.user_attrs["params"]` holds the W&B values, which is what `tldrlab sweep status|best|export` show.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from statistics import NormalDist
from typing import Any

import optuna

from tldrlab import logs
from tldrlab.sweep.spec import ParamSpec, SweepSpec, grid_values, quantize

QUANTILE_EPS = 1e-6
"""Normal / log-normal / beta draws use quantiles in [eps, 1 - eps]: normals stay within +-4.75 sigma."""

TPE_STARTUP_TRIALS = 5
"""Random trials before TPE models the results (Optuna's default of 10 is most of a small sweep)."""


PARAMS_ATTR = "params"
"""trial.user_attrs key holding {name: W&B value} of every parameter, constants included."""

_PRIMITIVE = (str, int, float, bool, type(None))


INTERNAL_SUFFIXES = ("@u", "@x")
"""What an internal variable's name adds to its parameter's: a uniform quantile `NAME@u`, a value `NAME@x`."""


def parameter_name(optuna_name: str) -> str:
    """The parameter an Optuna variable stands for, as the sweep file names it (`lr` of `lr@x`)."""
    for suffix in INTERNAL_SUFFIXES:
        if optuna_name.endswith(suffix):
            return optuna_name.removesuffix(suffix)
    return optuna_name


# -- values that Optuna can store ----------------------------------------------------------------------------
def _choices(values: list[Any]) -> tuple[list[Any], bool]:
    """Optuna categorical choices must be None/bool/int/float/str: encode lists and mappings as JSON."""
    if all(isinstance(v, _PRIMITIVE) for v in values):
        return values, False
    return [json.dumps(v, sort_keys=True) for v in values], True


def _quantile(trial: optuna.Trial, name: str) -> float:
    return trial.suggest_float(f"{name}@u", QUANTILE_EPS, 1.0 - QUANTILE_EPS)


def _normal(trial: optuna.Trial, p: ParamSpec) -> float:
    o = p.options
    return NormalDist(o["mu"], o["sigma"]).inv_cdf(_quantile(trial, p.name))


def _beta(trial: optuna.Trial, p: ParamSpec) -> float:
    from scipy.special import betaincinv

    return float(betaincinv(p.options["a"], p.options["b"], _quantile(trial, p.name)))


def _categorical(trial: optuna.Trial, p: ParamSpec) -> Any:
    choices, encoded = _choices(p.options["values"])
    value = trial.suggest_categorical(p.name, choices)
    return json.loads(str(value)) if encoded else value


def _categorical_w_probabilities(trial: optuna.Trial, p: ParamSpec) -> Any:
    # a uniform quantile through the categorical's inverse CDF: value i has probability probabilities[i]
    u = trial.suggest_float(f"{p.name}@u", 0.0, 1.0)
    cumulative = 0.0
    values, probs = p.options["values"], p.options["probabilities"]
    for value, prob in zip(values, probs, strict=True):
        cumulative += prob
        if u < cumulative:
            return value
    return next(v for v, prob in zip(reversed(values), reversed(probs), strict=True) if prob > 0)


def _q_uniform(trial: optuna.Trial, p: ParamSpec) -> float | int:
    o = p.options
    return quantize(trial.suggest_float(f"{p.name}@x", o["min"], o["max"]), o["q"])


def _q_log_uniform(trial: optuna.Trial, p: ParamSpec) -> float | int:
    o = p.options
    x = trial.suggest_float(f"{p.name}@x", math.exp(o["min"]), math.exp(o["max"]), log=True)
    return quantize(x, o["q"])


def _q_log_uniform_values(trial: optuna.Trial, p: ParamSpec) -> float | int:
    o = p.options
    return quantize(trial.suggest_float(f"{p.name}@x", o["min"], o["max"], log=True), o["q"])


SUGGESTERS: dict[str, Callable[[optuna.Trial, ParamSpec], Any]] = {
    "constant": lambda t, p: p.options["value"],
    "categorical": _categorical,
    "categorical_w_probabilities": _categorical_w_probabilities,
    "int_uniform": lambda t, p: t.suggest_int(p.name, p.options["min"], p.options["max"]),
    "uniform": lambda t, p: t.suggest_float(p.name, p.options["min"], p.options["max"]),
    "q_uniform": _q_uniform,
    # W&B log_uniform: exp(U(min, max)), i.e. log-uniform over [e^min, e^max]
    "log_uniform": lambda t, p: t.suggest_float(
        p.name, math.exp(p.options["min"]), math.exp(p.options["max"]), log=True
    ),
    "log_uniform_values": lambda t, p: t.suggest_float(p.name, p.options["min"], p.options["max"], log=True),
    "q_log_uniform": _q_log_uniform,
    "q_log_uniform_values": _q_log_uniform_values,
    # W&B inv_log_uniform: exp(-U(min, max)), i.e. log-uniform over [e^-max, e^-min]
    "inv_log_uniform": lambda t, p: t.suggest_float(
        p.name, math.exp(-p.options["max"]), math.exp(-p.options["min"]), log=True
    ),
    # ln(1/X) uniform over [ln(1/max), ln(1/min)] is the same law as ln(X) uniform over [ln(min), ln(max)]
    "inv_log_uniform_values": lambda t, p: t.suggest_float(
        p.name, p.options["min"], p.options["max"], log=True
    ),
    "normal": _normal,
    "q_normal": lambda t, p: quantize(_normal(t, p), p.options["q"]),
    "log_normal": lambda t, p: math.exp(_normal(t, p)),
    "q_log_normal": lambda t, p: quantize(math.exp(_normal(t, p)), p.options["q"]),
    "beta": _beta,
    "q_beta": lambda t, p: quantize(_beta(t, p), p.options["q"]),
}
"""W&B distribution -> how a trial draws it (see the module docstring and docs/sweeps.md)."""


# -- grid ----------------------------------------------------------------------------------------------------
def grid_search_space(spec: SweepSpec) -> dict[str, list[Any]]:
    """GridSampler's search space (constants left out; non-primitive values JSON-encoded)."""
    space: dict[str, list[Any]] = {}
    for p in spec.parameters.values():
        values = grid_values(p)
        if p.distribution != "constant":
            space[p.name] = _choices(values)[0]
    return space


def grid_size(spec: SweepSpec) -> int:
    return math.prod(len(v) for v in grid_search_space(spec).values())


# -- suggesting a trial's parameters -------------------------------------------------------------------------
def suggest_params(trial: optuna.Trial, spec: SweepSpec) -> dict[str, Any]:
    """Every parameter's W&B value for this trial (also stored as trial.user_attrs['params'])."""
    values: dict[str, Any] = {}
    for p in spec.parameters.values():
        if spec.method == "grid" and p.distribution != "constant":
            choices, encoded = _choices(grid_values(p))
            value = trial.suggest_categorical(p.name, choices)
            values[p.name] = json.loads(str(value)) if encoded else value
        else:
            values[p.name] = SUGGESTERS[p.distribution](trial, p)
    trial.set_user_attr(PARAMS_ATTR, values)
    return values


def quiet_optuna() -> None:
    """Optuna logs every study and trial (and failed ones with a traceback); tldrlab prints its own lines
    (`logs.quiet_optuna`: Optuna's lines reach a `--verbose` console). Called before a study is opened."""
    import warnings

    logs.quiet_optuna()
    # heartbeats and the retry callback are "experimental" in Optuna (since v2.8); they are what resume needs
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def representative_params(spec: SweepSpec) -> dict[str, Any]:
    """One plausible value per parameter (used to validate overrides before any trial runs)."""
    quiet_optuna()  # validating a sweep (the CLI, POST /runs) printed "A new study created in memory"
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    return suggest_params(study.ask(), spec)


_TOPS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "int_uniform": lambda o: o["max"],
    "uniform": lambda o: o["max"],
    "q_uniform": lambda o: quantize(o["max"], o["q"]),
    "log_uniform": lambda o: math.exp(o["max"]),
    "log_uniform_values": lambda o: o["max"],
    "q_log_uniform": lambda o: quantize(math.exp(o["max"]), o["q"]),
    "q_log_uniform_values": lambda o: quantize(o["max"], o["q"]),
    "inv_log_uniform": lambda o: math.exp(-o["min"]),
    "inv_log_uniform_values": lambda o: o["max"],
}
"""The largest value a bounded distribution draws (the normal and beta families have no useful top)."""


def largest_params(spec: SweepSpec) -> dict[str, Any]:
    """Every numeric parameter at the largest value a trial can draw (the others as `representative_params`
    draws them): a config validated with these is the largest model of the sweep, so a search space that
    reaches past the model parameter budget is refused before any trial runs, not trial by trial."""
    values = representative_params(spec)
    for p in spec.parameters.values():
        choices = p.options.get("values") if p.distribution != "constant" else None
        if isinstance(choices, list) and all(_is_number(v) for v in choices):
            values[p.name] = max(choices)
        elif p.distribution in _TOPS and spec.method != "grid":
            values[p.name] = _TOPS[p.distribution](p.options)
        elif spec.method == "grid" and p.distribution != "constant":
            grid = grid_values(p)
            values[p.name] = max(grid) if all(_is_number(v) for v in grid) else values[p.name]
    return values


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# -- samplers and pruners ------------------------------------------------------------------------------------
def build_sampler(spec: SweepSpec, seed: int | None = None) -> optuna.samplers.BaseSampler:
    seed = spec.seed if seed is None else seed
    if spec.method == "grid":
        return optuna.samplers.GridSampler(grid_search_space(spec), seed=seed)
    if spec.method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=TPE_STARTUP_TRIALS)


def hyperband_resources(options: dict[str, Any]) -> tuple[int, int | str, int]:
    """(min_resource, max_resource, reduction_factor) from W&B's min_iter / max_iter / s / eta.

    W&B stops runs at the brackets min_iter * eta^k (k < s), or max_iter / eta^k (1 <= k <= s).
    """
    eta = int(options.get("eta", 3))
    s = options.get("s")
    if "min_iter" in options:
        low = int(options["min_iter"])
        if "max_iter" in options:
            return low, int(options["max_iter"]), eta
        return low, (low * eta**s if s else "auto"), eta
    high = int(options["max_iter"])
    return max(1, high // eta ** (s or 1)), high, eta


def build_pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    et = spec.early_terminate
    if et is None:
        return optuna.pruners.NopPruner()
    if et.type == "hyperband":
        low, high, eta = hyperband_resources(et.options)  # high >= low: `spec.parse_pruner` refuses less
        return optuna.pruners.HyperbandPruner(min_resource=low, max_resource=high, reduction_factor=eta)
    return optuna.pruners.MedianPruner(
        n_startup_trials=int(et.options.get("n_startup_trials", 2)),
        n_warmup_steps=int(et.options.get("min_iter", 1)),
    )


def direction(spec: SweepSpec) -> str:
    return "maximize" if spec.goal == "maximize" else "minimize"
