"""A Weights & Biases sweep file, parsed and checked: `load_sweep(path) -> SweepSpec`.

The format is W&B's (https://docs.wandb.ai/guides/sweeps/sweep-config-keys): `method`, `metric`,
`parameters` (nested `parameters:` blocks flatten to dotted names), `early_terminate`, `program`, `command`,
`run_cap`, `name`. tldrlab adds two keys:

    program: tldrlab.train          # or tldrlab.experiment; anything else is a script run by `command`
    config: job.yaml                # the base config of a tldrlab program: a mapping or a file path

Every problem raises ConfigError naming the key (`parameters.lr.distribution`) and the allowed values, placed
at that key (`ConfigError.at`: its `errors` entry's `loc`, a parameter's dotted name one key of `parameters`),
so the API answers a `sweep` run's spec refused at `["sweep", "parameters", "lr", "distribution"]`.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tldrlab.choices import choose_one_of, unknown_choice
from tldrlab.config import load_yaml
from tldrlab.errors import ConfigError, NotFoundError, refused_at, yaml_problem
from tldrlab.runs.paths import SEED_MAX

METHODS = ("bayes", "grid", "random")
"""W&B search methods (mapped to TPE, GridSampler and RandomSampler)."""

GOALS = ("minimize", "maximize")

DISTRIBUTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    # name: (required keys, optional keys with W&B's defaults)
    "constant": (("value",), {}),
    "categorical": (("values",), {}),
    "categorical_w_probabilities": (("values", "probabilities"), {}),
    "int_uniform": (("min", "max"), {}),
    "uniform": (("min", "max"), {}),
    "q_uniform": (("min", "max"), {"q": 1.0}),
    "log_uniform": (("min", "max"), {}),
    "log_uniform_values": (("min", "max"), {}),
    "q_log_uniform": (("min", "max"), {"q": 1.0}),
    "q_log_uniform_values": (("min", "max"), {"q": 1.0}),
    "inv_log_uniform": (("min", "max"), {}),
    "inv_log_uniform_values": (("min", "max"), {}),
    "normal": ((), {"mu": 0.0, "sigma": 1.0}),
    "q_normal": ((), {"mu": 0.0, "sigma": 1.0, "q": 1.0}),
    "log_normal": ((), {"mu": 0.0, "sigma": 1.0}),
    "q_log_normal": ((), {"mu": 0.0, "sigma": 1.0, "q": 1.0}),
    "beta": ((), {"a": 1.0, "b": 1.0}),
    "q_beta": ((), {"a": 1.0, "b": 1.0, "q": 1.0}),
}
"""Every W&B distribution with the keys it needs and the defaults W&B fills in."""

POSITIVE_MIN = ("log_uniform_values", "q_log_uniform_values", "inv_log_uniform_values")
"""Distributions whose min/max are values on a log scale (so min must be > 0)."""

PRUNERS: dict[str, tuple[str, ...]] = {
    "hyperband": ("min_iter", "max_iter", "s", "eta", "strict"),
    "median": ("min_iter", "n_startup_trials"),
}
"""early_terminate types and their keys (`median` is a tldrlab addition: Optuna's MedianPruner)."""

TLDRLAB_PROGRAMS = ("tldrlab.train", "tldrlab.experiment", "tldrlab.elm", "tldrlab.lvm")
"""`program` values that run tldrlab itself in-process instead of a command line."""

TOP_LEVEL_KEYS = (
    "name", "description", "program", "command", "method", "metric", "parameters", "early_terminate",
    "run_cap", "config", "project", "entity", "seed",
)  # fmt: skip

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


@dataclass
class ParamSpec:
    """One searched (or constant) parameter, with W&B's defaults filled in."""

    name: str
    """Dotted name: a nested `parameters` block `optim: {parameters: {lr: ...}}` gives `optim.lr`."""
    distribution: str
    """One of DISTRIBUTIONS (inferred like W&B when the file leaves it out)."""
    options: dict[str, Any]
    """The distribution's keys: value, values, probabilities, min, max, q, mu, sigma, a, b."""


@dataclass
class PrunerSpec:
    """`early_terminate`: hyperband (W&B) or median (Optuna)."""

    type: str
    """hyperband or median."""
    options: dict[str, Any] = field(default_factory=dict)
    """min_iter, max_iter, s, eta (hyperband); min_iter, n_startup_trials (median)."""


@dataclass
class SweepSpec:
    """A validated sweep file."""

    name: str
    """Default study name: the file's `name`, else the file name without extension."""
    method: str
    """bayes, grid or random."""
    metric: str
    """The metric to optimise, as the trials report it (e.g. eval_loss)."""
    goal: str
    """minimize or maximize."""
    parameters: dict[str, ParamSpec]
    """Parameters by dotted name, in file order."""
    program: str | None = None
    """tldrlab.train, tldrlab.experiment, or a script path for `${program}`."""
    command: list[str] | None = None
    """Command line with W&B macros (${env} ${interpreter} ${program} ${args} ...); None: W&B's default."""
    config: dict[str, Any] = field(default_factory=dict)
    """Base config of a tldrlab program (parameters override its dotted keys)."""
    early_terminate: PrunerSpec | None = None
    """Pruning of trials by their intermediate metric values."""
    run_cap: int | None = None
    """Most trials in the study (W&B's run_cap); --trials wins when both are given."""
    target: float | None = None
    """metric.target: stop starting trials once a trial reaches it."""
    seed: int | None = None
    """Seed of the sampler (tldrlab addition, for reproducible searches)."""
    source: str | None = None
    """Where the spec came from (a file path), for messages."""
    raw: dict[str, Any] = field(default_factory=dict)
    """The file's mapping as read (stored with the study so other workers can rebuild the spec)."""

    @property
    def kind(self) -> str:
        """train, experiment, elm, lvm or command."""
        if self.program in TLDRLAB_PROGRAMS:
            return self.program.split(".", 1)[1]
        return "command"


def _allowed(values: tuple[str, ...] | list[str]) -> str:
    return ", ".join(values)


def _number(key: tuple[str, ...], value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError.at(key, f"must be a number; got {value!r}")
    if not math.isfinite(value):
        raise ConfigError.at(key, f"must be finite; got {value!r}")
    return value


def infer_distribution(key: tuple[str, ...], options: dict[str, Any]) -> str:
    """W&B's inference: value -> constant, values -> categorical, int min/max -> int_uniform, else uniform."""
    if "value" in options:
        return "constant"
    if "values" in options:
        return "categorical_w_probabilities" if "probabilities" in options else "categorical"
    if "min" in options and "max" in options:
        both_int = all(
            isinstance(options[k], int) and not isinstance(options[k], bool) for k in ("min", "max")
        )
        return "int_uniform" if both_int else "uniform"
    raise ConfigError.at(
        key,
        f"give `value`, `values`, `min`/`max` or a `distribution` (one of {_allowed(list(DISTRIBUTIONS))})",
    )


def parse_parameter(name: str, raw: Any) -> ParamSpec:
    """Check one parameter block and fill in W&B's defaults."""
    key = ("parameters", name)
    if not isinstance(raw, dict):
        raise ConfigError.at(
            key, f"must be a mapping such as {{values: [...]}} or {{min: 0, max: 1}}; got {raw!r}"
        )
    options = dict(raw)
    dist = options.pop("distribution", None)
    if dist is None:
        dist = infer_distribution(key, options)
    if dist not in DISTRIBUTIONS:
        raise ConfigError.at((*key, "distribution"), unknown_choice("distribution", dist, DISTRIBUTIONS))
    required, defaults = DISTRIBUTIONS[dist]
    allowed = (*required, *defaults)
    for option in options:
        if option not in allowed:
            raise ConfigError.at((*key, option), unknown_choice(f"key of {dist}", option, allowed))
    for option in required:
        if option not in options:
            raise ConfigError.at((*key, option), f"required by distribution {dist}")
    filled = {**defaults, **options}
    for option in ("min", "max", "q", "mu", "sigma", "a", "b"):
        if option in filled:
            _number((*key, option), filled[option])
    if "values" in filled:
        values = filled["values"]
        if not isinstance(values, list) or not values:
            raise ConfigError.at((*key, "values"), f"must be a non-empty list; got {values!r}")
    # a trial given inf or nan would only be refused by its program's config when it starts
    chosen = [("value", filled["value"])] if "value" in filled else []
    chosen += [(f"values.{i}", v) for i, v in enumerate(filled.get("values") or [])]
    for option, value in chosen:
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError.at((*key, option), f"must be finite; got {value!r}")
    if dist == "categorical_w_probabilities":
        probs = filled["probabilities"]
        if not isinstance(probs, list) or len(probs) != len(filled["values"]):
            raise ConfigError.at(
                (*key, "probabilities"), f"must be a list as long as values ({len(filled['values'])})"
            )
        if any(_number((*key, "probabilities"), p) < 0 for p in probs) or abs(sum(probs) - 1.0) > 1e-6:
            raise ConfigError.at((*key, "probabilities"), f"must be >= 0 and sum to 1; got {probs}")
    if dist == "int_uniform":
        for option in ("min", "max"):
            if not isinstance(filled[option], int) or isinstance(filled[option], bool):
                raise ConfigError.at((*key, option), f"int_uniform needs integers; got {filled[option]!r}")
    if "min" in filled and filled["min"] > filled["max"]:
        raise ConfigError.at((*key, "min"), f"{filled['min']} is greater than max {filled['max']}")
    if dist in POSITIVE_MIN and filled["min"] <= 0:
        raise ConfigError.at(
            (*key, "min"), f"{dist} needs min > 0 (values on a log scale); got {filled['min']}"
        )
    for option in ("q", "sigma"):
        if option in filled and filled[option] <= 0:
            raise ConfigError.at((*key, option), f"must be > 0; got {filled[option]}")
    for option in ("a", "b"):
        if option in filled and filled[option] <= 0:
            raise ConfigError.at((*key, option), f"beta shape must be > 0; got {filled[option]}")
    return ParamSpec(name=name, distribution=dist, options=filled)


def flatten_parameters(raw: Any, prefix: str = "") -> dict[str, ParamSpec]:
    """`parameters` with nested `{parameters: {...}}` blocks flattened to dotted names."""
    where = ("parameters", prefix[:-1], "parameters") if prefix else ("parameters",)
    if not isinstance(raw, dict) or not raw:
        raise ConfigError.at(where, "must be a non-empty mapping of parameter name -> settings")
    out: dict[str, ParamSpec] = {}
    for name, block in raw.items():
        full = f"{prefix}{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError.at(
                ("parameters", full), "invalid name (letters, digits, _ . - ; not starting with a digit)"
            )
        if isinstance(block, dict) and set(block) == {"parameters"}:
            out.update(flatten_parameters(block["parameters"], f"{full}."))
        else:
            out[full] = parse_parameter(full, block)
    return out


def parse_pruner(raw: Any) -> PrunerSpec | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or "type" not in raw:
        raise ConfigError.at("early_terminate", f"must be a mapping with a type ({_allowed(list(PRUNERS))})")
    options = dict(raw)
    kind = options.pop("type")
    if kind not in PRUNERS:
        raise ConfigError.at(("early_terminate", "type"), unknown_choice("type", kind, PRUNERS))
    for option, value in options.items():
        if option not in PRUNERS[kind]:
            raise ConfigError.at(
                ("early_terminate", option), unknown_choice(f"key of {kind}", option, PRUNERS[kind])
            )
        if option == "strict":
            if not isinstance(value, bool):
                raise ConfigError.at(("early_terminate", option), f"must be true or false; got {value!r}")
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < (2 if option == "eta" else 1):
            low = 2 if option == "eta" else 1
            raise ConfigError.at(("early_terminate", option), f"must be an integer >= {low}; got {value!r}")
    if kind == "hyperband" and "min_iter" not in options and "max_iter" not in options:
        raise ConfigError.at("early_terminate", "hyperband needs min_iter or max_iter")
    min_iter, max_iter = options.get("min_iter"), options.get("max_iter")
    if min_iter is not None and max_iter is not None and max_iter < min_iter:
        # no bracket fits: refused only once the sweep's run built its pruner, a failed run left behind (over
        # the API a queued one, which failed in the worker)
        raise ConfigError.at(
            ("early_terminate", "max_iter"),
            f"{max_iter} is below min_iter {min_iter}: give a max_iter of at least {min_iter}",
        )
    return PrunerSpec(type=kind, options=options)


def _base_config(raw: Any, base_dir: Path | None) -> dict[str, Any]:
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        if base_dir is None:
            # only a sweep file's own mapping names a file (`load_sweep` reads it and stores it inline): a
            # mapping given as such (a run's config, a submit) was read relative to whatever directory the
            # process ran in, a server's file read to validate a config
            raise ConfigError.at(
                "config",
                "give the program's base config here as a mapping; a file name is read only from a sweep "
                f"file (`tldrlab sweep run FILE` stores it inline); got {raw!r}",
            )
        path = Path(raw)
        if not path.is_absolute():
            path = base_dir / path
        if not path.is_file():
            raise NotFoundError(f"config: file not found: {path}")
        with refused_at("config"):
            return read_mapping(path)
    raise ConfigError.at("config", f"must be a mapping or a path to a YAML/JSON file; got {raw!r}")


def read_mapping(path: Path) -> dict[str, Any]:
    """A YAML (or JSON, which is YAML) file that must hold a mapping."""
    import yaml

    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {yaml_problem(exc)}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must hold a mapping of keys (method, metric, parameters, ...)")
    return data


def resolve_program(spec: SweepSpec) -> None:
    """A relative script `program` is taken relative to the sweep file when it exists there."""
    if spec.kind != "command" or not spec.program or not spec.source:
        return
    candidate = Path(spec.source).resolve().parent / spec.program
    if not Path(spec.program).is_absolute() and not Path(spec.program).exists() and candidate.exists():
        spec.program = str(candidate)
        spec.raw = {**spec.raw, "program": spec.program}


def parse_sweep(raw: dict[str, Any], *, source: str | None = None, base_dir: Path | None = None) -> SweepSpec:
    """Validate a sweep mapping (as read from YAML) into a SweepSpec. `base_dir`: the sweep file's directory,
    where a `config` given as a file name is read (`load_sweep`); without it such a name is refused unread."""
    for key in raw:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError.at(str(key), unknown_choice("top-level key", key, TOP_LEVEL_KEYS))
    method = raw.get("method")
    if method not in METHODS:
        refusal = (
            f"required; {choose_one_of(METHODS)}"
            if method is None
            else unknown_choice("method", method, METHODS)
        )
        raise ConfigError.at("method", refusal)
    metric = raw.get("metric")
    if metric is None:
        if method == "bayes" or raw.get("early_terminate"):
            raise ConfigError.at(
                "metric", "required for bayes and early_terminate (name: ..., goal: minimize|maximize)"
            )
        metric = {"name": "eval_loss"}
    if not isinstance(metric, dict) or not isinstance(metric.get("name"), str) or not metric["name"]:
        raise ConfigError.at(("metric", "name"), "required (the metric your trials report, e.g. eval_loss)")
    for key in metric:
        if key not in ("name", "goal", "target"):
            raise ConfigError.at(("metric", str(key)), unknown_choice("key", key, ("name", "goal", "target")))
    goal = metric.get("goal", "minimize")
    if goal not in GOALS:
        raise ConfigError.at(("metric", "goal"), unknown_choice("goal", goal, GOALS))
    target = metric.get("target")
    if target is not None:
        target = _number(("metric", "target"), target)
    if "parameters" not in raw:
        raise ConfigError.at("parameters", "required (a mapping of parameter name -> values / distribution)")
    parameters = flatten_parameters(raw["parameters"])
    program = raw.get("program")
    if program is not None and not isinstance(program, str):
        raise ConfigError.at("program", f"must be a string; got {program!r}")
    command = raw.get("command")
    if command is not None and (
        not isinstance(command, list) or not all(isinstance(c, str) for c in command)
    ):
        raise ConfigError.at(
            "command", "must be a list of strings, e.g. [${env}, ${interpreter}, ${program}, ${args}]"
        )
    if program is None and command is None:
        raise ConfigError.at(
            "program", f"required ({_allowed(TLDRLAB_PROGRAMS)}, or a script with `command`)"
        )
    if program in TLDRLAB_PROGRAMS and command is not None:
        raise ConfigError.at("command", f"not used with program {program}; remove it or use a script program")
    if raw.get("config") is not None and program not in TLDRLAB_PROGRAMS:
        raise ConfigError.at("config", f"only used with program {' or '.join(TLDRLAB_PROGRAMS)}")
    run_cap = raw.get("run_cap")
    if run_cap is not None and (not isinstance(run_cap, int) or isinstance(run_cap, bool) or run_cap < 1):
        raise ConfigError.at("run_cap", f"must be an integer >= 1; got {run_cap!r}")
    seed = raw.get("seed")
    if seed is not None and (
        not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= SEED_MAX
    ):
        raise ConfigError.at("seed", f"must be an integer from 0 to {SEED_MAX}; got {seed!r}")
    name = raw.get("name") or (Path(source).stem if source else "sweep")
    if not isinstance(name, str):
        raise ConfigError.at("name", f"must be a string; got {name!r}")
    spec = SweepSpec(
        name=name,
        method=method,
        metric=metric["name"],
        goal=goal,
        parameters=parameters,
        program=program,
        command=command,
        config=_base_config(raw.get("config"), base_dir),
        early_terminate=parse_pruner(raw.get("early_terminate")),
        run_cap=run_cap,
        target=target,
        seed=seed,
        source=source,
        raw=raw,
    )
    if method == "grid":
        for p in spec.parameters.values():
            grid_values(p)  # raises naming a parameter a grid cannot enumerate
    return spec


# -- grids (no optuna) ------------------------------------------------------------------------------------
GRID_DISTRIBUTIONS = ("constant", "categorical", "categorical_w_probabilities", "int_uniform", "q_uniform")
"""What method: grid can enumerate (W&B's grid takes the same)."""


def quantize(value: float, q: float) -> float | int:
    """W&B's rounding: round(x / q) * q, an int when q is an int."""
    steps = round(value / q)
    if isinstance(q, int) and not isinstance(q, bool):
        return int(steps * q)
    return float(round(steps * q, 12))  # drop float noise such as 0.30000000000000004


def grid_values(p: ParamSpec) -> list[Any]:
    """Every value a grid visits for one parameter (raises for continuous distributions)."""
    o = p.options
    if p.distribution == "constant":
        return [o["value"]]
    if p.distribution in ("categorical", "categorical_w_probabilities"):
        return list(o["values"])
    if p.distribution == "int_uniform":
        return list(range(o["min"], o["max"] + 1))
    if p.distribution == "q_uniform":
        low, high = math.ceil(o["min"] / o["q"] - 1e-9), math.floor(o["max"] / o["q"] + 1e-9)
        values = [quantize(k * o["q"], o["q"]) for k in range(low, high + 1)]
        if not values:
            raise ConfigError.at(
                ("parameters", p.name), f"no multiple of q={o['q']} lies in [{o['min']}, {o['max']}]"
            )
        return values
    span = f" from {o['min']} to {o['max']}" if "min" in o and "max" in o else ""
    raise ConfigError.at(
        ("parameters", p.name),
        "method grid tries every value of every parameter, but this one is a "
        f"continuous range ({p.distribution}{span}) with no list of values to try; list the values to try "
        "(`values: [...]`; a uniform range of integers, or with a step `q`, is listed for you), or use "
        "method random or bayes, which sample a range",
    )


def load_sweep(path: Path | str) -> SweepSpec:
    """Read and validate a sweep YAML file (errors say `file: key: problem`, and what to choose from)."""
    if not str(path).strip():  # Path("") is the working directory
        raise ConfigError("the sweep file is empty: give a YAML or JSON file")
    path = Path(path)
    if path.is_dir():  # "not found" misled: it is there, as a directory
        raise ConfigError(f"{path} is a directory: give a sweep file (YAML or JSON)")
    if not path.is_file():
        raise NotFoundError(f"sweep file not found: {path}")
    raw = read_mapping(path)
    try:
        spec = parse_sweep(raw, source=str(path), base_dir=path.resolve().parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc.message}") from None
    # a config file given by path is stored inline, so workers elsewhere need only the study
    spec.raw = {**raw, "config": spec.config} if spec.config else raw
    return spec


def sweep_file_settings(path: Path | str) -> dict[str, Any]:
    """A sweep file as settings of a `sweep` run (SweepConfig): its mapping and where it came from."""
    spec = load_sweep(path)
    return {"sweep": spec.raw, "source": spec.source}


BEST_FOLLOWS_METRIC = ("train", "lvm")
"""The sweep programs whose trials keep the checkpoint best on the sweep's metric (`best_follows_metric`)."""


def best_follows_metric(raw: dict[str, Any], spec: SweepSpec) -> dict[str, Any]:
    """A trial's training config `raw` with its kept checkpoint following the sweep's metric
    (`train.best_metric` and `best_mode`, unless the base config sets them): what a train or LVM trial trains
    by, and what an API sweep's config is checked with at submit, so a metric the trials' evaluations do not
    compute is refused there and not at every trial's first evaluation."""
    train = raw.setdefault("train", {})
    if not isinstance(train, dict):
        raise ConfigError.at(("config", "train"), "must be a mapping of loop settings")
    if "best_metric" not in train:
        # the mode goes with the metric: a base config's own best_metric keeps the mode of its name
        # (TrainConfig), not the sweep's goal (`val_cosine` under an `eval_loss` sweep was judged by `min`)
        train["best_metric"] = spec.metric
        train.setdefault("best_mode", "max" if spec.goal == "maximize" else "min")
    return raw


def apply_overrides(base: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of `base` with every dotted parameter name set to its value (a trial's config)."""
    out = copy.deepcopy(base)
    for name, value in params.items():
        node = out
        *parents, leaf = name.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError.at(
                    ("parameters", name), f"{part!r} is a {type(child).__name__} in config, not a section"
                )
            node = child
        node[leaf] = value
    return out
