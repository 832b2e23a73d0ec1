"""PerforatedAI dendrites on a model, driven by the training loop's evaluations.

    hooks = DendriteHooks(DendriteConfig(), save_dir=run.dir / "pai", best_metric="eval_loss", mode="min")
    model = hooks.perforate(model)                    # wraps the T5 feed-forward blocks
    train(model, task, train_config, run, hooks=hooks)

After each evaluation the hook feeds the validation metric to PAI's tracker (`add_validation_score`); when the
tracker restructures the network (adds a set of dendrites, reloading its best weights first) the hook hands
the new model back to the loop with `rebuild_optimizer=True` (a fresh AdamW for the new parameter set; the
learning-rate schedule is a function of the step, so it continues from the step reached), and when the tracker
says training is complete it stops the loop. Every evaluation also reports `pai/restructured`,
`pai/active_dendrites`, `pai/total_params` and `pai/param_efficiency` (active dendrites / total parameters)
to `metrics_sink` (the run's metrics and W&B).

Resuming: each loop checkpoint gets PAI's tracker state next to it (`pai_tracker.txt`, `pai_events.json`);
`before_resume` rebuilds the dendrites the checkpoint's weights hold (PAI's own `load_net_from_dict` replays
the restructures recorded in the weights) and restores the tracker, so a run stopped after a restructure
continues with its dendrites, its tracker and the optimizer state it had.

The open-source perforatedai package trains dendrites by plain gradient descent together with the rest of
the network; perforated backpropagation (separate dendrite training) is a paid add-on and is
not used here.

PerforatedAI is a global-state library with traps, guarded by `pai_guard`:
- it calls `sys.exit` on some misconfigurations -> a PerforatedAIError (a failed run with a clear message);
- it calls `pdb.set_trace()` on others -> patched to raise PerforatedAIError, stdin is /dev/null meanwhile,
  so nothing ever waits for a debugger prompt;
- it saves under `<cwd>/<save_name>` and reloads an old `<save_name>_config.json` -> every run gets its own
  save directory inside its run directory (the guard changes into it) and a fresh global config.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from tldrlab.errors import ConfigError, DependencyMissingError
from tldrlab.experiments.config import DendriteConfig
from tldrlab.runs.atomic import atomic_write_json, atomic_write_text
from tldrlab.runs.weights import library_writes
from tldrlab.train.loop import EvalDecision, TrainHooks, TrainState

GRADIENT_DESCENT_NOTE = (
    "Dendrites trained by gradient descent (open-source perforatedai 3.2.9); perforated backpropagation, "
    "PerforatedAI's separate dendrite-training phase, is a paid add-on and was not used."
)
SAVE_NAME = "pai"
"""PAI's save_name: its files land in `<save_dir>/pai/` (graphs, csvs, best/latest/switch models)."""
TRACKER_FILE = "pai_tracker.txt"
"""PAI's tracker state (its own `to_string` form), written next to every loop checkpoint."""
EVENTS_FILE = "pai_events.json"
"""The hooks' per-evaluation events, written next to every loop checkpoint and into the save directory."""
TRACKER_BUFFER = "tracker_string"
"""The buffer PAI's `load_net_from_dict` expects to find the tracker state in."""


class PerforatedAIError(ConfigError):
    """PerforatedAI rejected its configuration (it tried to exit or to open a debugger)."""

    code = "perforatedai_failed"


# -- the guard ----------------------------------------------------------------------------------------------
def require_perforatedai() -> tuple[Any, Any]:
    """(GPA, UPA) modules, or a clear error when the optional extra is missing."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints a banner on import
            from perforatedai import globals_perforatedai as GPA
            from perforatedai import utils_perforatedai as UPA
    except ImportError as exc:
        raise DependencyMissingError(
            f"perforatedai is not installed ({exc}); "
            "install the extra: pip install --no-deps 'tldrlab[dendrites]'"
        ) from exc
    if getattr(UPA.load_model_with_weight_tying, "__name__", "") != _load_tied_network.__name__:
        UPA.load_model_with_weight_tying = _load_tied_network
    return GPA, UPA


def _load_tied_network(model: nn.Module, filepath: str) -> nn.Module:
    """PerforatedAI's loader of networks saved with tied weights, made to rebuild the saved structure first.

    PAI reloads a saved network (its best one) into the live one when new dendrites did not help, or when
    training completes; with tied weights (T5, Llama-style LMs with tied embeddings) its own loader loads the
    state dict strictly into the live network, which fails when the live one has more dendrites than the
    saved one. This reads the same file, restores the tied names from its metadata, and loads through PAI's
    `load_net_from_dict`, which sets the dendrite structure from the file before loading the weights."""
    from safetensors import safe_open

    _, UPA = require_perforatedai()
    with safe_open(filepath, framework="pt") as handle:
        metadata = handle.metadata() or {}
        state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (safe_open has no iter)
    for secondary, primary in json.loads(metadata.get("weight_tying", "{}")).items():
        if primary in state:
            state[secondary] = state[primary]
    return UPA.load_net_from_dict(model, state)  # type: ignore[no-any-return]


def _refuse_debugger(*args: Any, **kwargs: Any) -> None:
    raise PerforatedAIError("PerforatedAI hit an internal error and tried to open a debugger")


def _tail(buffer: io.StringIO | None, lines: int = 8) -> str:
    if buffer is None:
        return ""
    text = [line for line in buffer.getvalue().splitlines() if line.strip()][-lines:]
    return ("; it said: " + " | ".join(text)) if text else ""


@contextlib.contextmanager
def pai_traps(what: str, *, silent: bool = True) -> Iterator[None]:
    """Turn PerforatedAI's sys.exit and pdb.set_trace into PerforatedAIError; stdin is /dev/null meanwhile.

    With `silent`, its console output is captured and the last lines go into the error message.
    """
    import pdb

    previous_stdin, previous_trace, previous_breakpoint = sys.stdin, pdb.set_trace, builtins.breakpoint
    previous_hook = os.environ.get("PYTHONBREAKPOINT")
    devnull = open(os.devnull)  # noqa: SIM115 - closed in finally
    buffer = io.StringIO() if silent else None
    os.environ["PYTHONBREAKPOINT"] = "0"
    sys.stdin = devnull
    pdb.set_trace = _refuse_debugger
    builtins.breakpoint = _refuse_debugger
    try:
        with contextlib.redirect_stdout(buffer) if buffer is not None else contextlib.nullcontext():
            yield
    except SystemExit as exc:
        raise PerforatedAIError(
            f"PerforatedAI stopped during {what} (sys.exit({exc.code})): its configuration was rejected; "
            "check module_names / module_ids and output_dimensions "
            "(the shape of the perforated modules' output)" + _tail(buffer)
        ) from None
    except PerforatedAIError as exc:
        raise PerforatedAIError(f"{exc.message} during {what}{_tail(buffer)}") from None
    finally:
        sys.stdin, pdb.set_trace, builtins.breakpoint = previous_stdin, previous_trace, previous_breakpoint
        if previous_hook is None:
            os.environ.pop("PYTHONBREAKPOINT", None)
        else:
            os.environ["PYTHONBREAKPOINT"] = previous_hook
        devnull.close()


@contextlib.contextmanager
def pai_guard(save_dir: Path, what: str, *, silent: bool = True) -> Iterator[None]:
    """`pai_traps` inside `save_dir` (PAI writes to `<cwd>/<save_name>`); what PAI writes there (its best and
    latest models through safetensors' writer, 0600) gets the umask's mode, as every other file of a run."""
    save_dir.mkdir(parents=True, exist_ok=True)
    previous_cwd = Path.cwd()
    os.chdir(save_dir)
    try:
        with library_writes(save_dir), pai_traps(what, silent=silent):
            yield
    finally:
        os.chdir(previous_cwd)


class _LearningRateProbe:
    """Stands in for the optimizer PAI wants to read the learning rate from (the loop owns the real one)."""

    def __init__(self, lr: float) -> None:
        self.param_groups = [{"lr": lr, "weight_decay": 0.0}]

    def zero_grad(self, set_to_none: bool = True) -> None:
        return None


# -- configuring and perforating ----------------------------------------------------------------------------
def configure(config: DendriteConfig, *, maximizing: bool, device: str = "cpu") -> None:
    """A fresh PAI global config set from `config` (nothing carried over from an earlier run)."""
    GPA, _ = require_perforatedai()
    GPA.pc = GPA.PAIConfig()
    pc = GPA.pc
    pc.set_configuration_confirmed(True)  # skip its interactive terminal UI
    pc.set_testing_dendrite_capacity(False)
    pc.set_unwrapped_modules_confirmed(True)
    pc.set_weight_tying_experimental(True)  # T5 ties embedding and lm head: plain safetensors refuses
    pc.set_module_names_to_perforate(list(config.module_names))
    if config.module_ids:
        pc.set_module_ids_to_perforate(list(config.module_ids))
    pc.set_output_dimensions(list(config.output_dimensions))
    if config.switch_mode == "fixed":
        pc.set_switch_mode(pc.DOING_FIXED_SWITCH)
        pc.set_fixed_switch_num(config.switch_every)
        pc.set_first_fixed_switch_num(config.switch_every)
    else:
        pc.set_switch_mode(pc.DOING_HISTORY)
        pc.set_n_epochs_to_switch(config.switch_every)
    pc.set_max_dendrites(config.max_dendrites)
    pc.set_max_dendrite_tries(config.max_dendrite_tries)
    pc.set_candidate_weight_initialization_multiplier(config.candidate_weight_init)
    pc.set_improvement_threshold_raw(config.improvement_threshold_raw)
    pc.set_maximizing_score(maximizing)
    pc.set_silent(config.silent)
    pc.set_verbose(False)
    pc.set_device(torch.device(device))


def pai_parameter_count(model: nn.Module) -> int:
    """PAI's own count: wrapped modules keep hidden copies of their parent that a plain count would add."""
    _, UPA = require_perforatedai()
    return int(UPA.count_params(model))


def dendrite_count(model: nn.Module | None = None) -> int:
    """Dendrite sets added to the network so far (the same for every perforated module)."""
    GPA, _ = require_perforatedai()
    tracker = GPA.pai_tracker
    return int(tracker.member_vars["num_dendrites_added"]) if tracker else 0


def perforated_modules(model: nn.Module) -> list[str]:
    """Names of the modules PAI wrapped (to check that the chosen modules really got dendrites)."""
    return [name for name, module in model.named_modules() if type(module).__name__ == "PAINeuronModule"]


class DendriteHooks(TrainHooks):
    """The tracker loop as training-loop hooks; also saves PAI's state into `save_dir`."""

    def __init__(
        self,
        config: DendriteConfig,
        *,
        save_dir: Path,
        best_metric: str = "eval_loss",
        mode: Literal["min", "max"] = "min",
        lr: float = 1e-3,
        log: Any = None,
        metrics_sink: Callable[[int, dict[str, float]], None] | None = None,
        device: str = "cpu",
    ) -> None:
        self.config = config
        self.save_dir = Path(save_dir).resolve()
        self.best_metric = best_metric
        self.maximizing = mode == "max"
        self.lr = lr
        self.log = log
        self.metrics_sink = metrics_sink
        self.device = device
        self.events: list[dict[str, Any]] = []
        """One entry per evaluation fed to the tracker (step, metric, dendrites, parameters, restructured)."""
        self.completed = False
        self.model: nn.Module | None = None

    def perforate(self, model: nn.Module) -> nn.Module:
        """Configure PAI afresh and wrap the configured modules; raises PerforatedAIError if none match."""
        _, UPA = require_perforatedai()
        present = {f".{name}" for name, _ in model.named_modules()}
        if missing := [module_id for module_id in self.config.module_ids if module_id not in present]:
            # PerforatedAI skips an id that names no module: a mistyped one was trained without its dendrites
            # and nothing said so when module_names matched other modules
            raise PerforatedAIError(f"module_ids {', '.join(missing)}: the model has no module of that path")
        configure(self.config, maximizing=self.maximizing, device=self.device)
        with pai_guard(self.save_dir, "perforate_model", silent=self.config.silent):
            model = UPA.perforate_model(model, save_name=SAVE_NAME, maximizing_score=self.maximizing)
        GPA, _ = require_perforatedai()
        GPA.pai_tracker.making_graphs = self.config.graphs_every_eval
        wrapped = perforated_modules(model)
        if not wrapped:
            raise PerforatedAIError(
                f"no module matched module_names={self.config.module_names} / "
                f"module_ids={self.config.module_ids}: nothing would get dendrites"
            )
        self.model = model
        self._record(step=0, metric=None, restructured=False, model=model)
        self.save_state()
        return model

    def _record(
        self, *, step: int, metric: float | None, restructured: bool, model: nn.Module
    ) -> dict[str, Any]:
        event = {
            "step": step,
            "metric": metric,
            "dendrites": dendrite_count(),
            "parameters": pai_parameter_count(model),
            "restructured": restructured,
        }
        self.events.append(event)
        if self.log is not None:
            self.log("dendrites restructured" if restructured else "dendrite tracker", **event)
        if self.metrics_sink is not None and metric is not None:
            self.metrics_sink(step, pai_metrics(event))
        return event

    def on_eval(self, state: TrainState, metrics: dict[str, float]) -> EvalDecision | None:
        GPA, _ = require_perforatedai()
        if self.completed or self.model is None:
            return EvalDecision(stop=True) if self.completed else None
        value = float(metrics[self.best_metric])
        GPA.pai_tracker.set_optimizer_instance(_LearningRateProbe(self.lr))
        with pai_guard(self.save_dir, "add_validation_score", silent=self.config.silent):
            new_model, restructured, complete = GPA.pai_tracker.add_validation_score(value, self.model)
        restructured = bool(restructured)
        self.completed = bool(complete)
        changed = new_model is not self.model
        self.model = new_model
        self._record(step=state.step, metric=value, restructured=restructured, model=new_model)
        if restructured or self.completed:
            self.save_state()
        if changed or restructured:
            return EvalDecision(model=new_model, rebuild_optimizer=True, stop=self.completed)
        return EvalDecision(stop=True) if self.completed else None

    def on_checkpoint(self, state: TrainState, path: Path) -> None:
        """PAI's tracker state and the events next to the loop checkpoint (what `before_resume` reads)."""
        GPA, _ = require_perforatedai()
        if GPA.pai_tracker is None or self.model is None:
            return
        atomic_write_text(path / TRACKER_FILE, GPA.pai_tracker.to_string())
        atomic_write_json(path / EVENTS_FILE, {"events": self.events, "completed": self.completed})

    def before_resume(self, checkpoint_path: Path, model: nn.Module) -> nn.Module | None:
        """The perforated `model` with the dendrites the checkpoint holds and PAI's tracker as it was."""
        from safetensors.torch import load_file

        GPA, UPA = require_perforatedai()
        tracker_file = checkpoint_path / TRACKER_FILE
        if not tracker_file.is_file():
            raise PerforatedAIError(
                f"checkpoint {checkpoint_path} has no {TRACKER_FILE}: it was not written by a dendrite run"
            )
        text = tracker_file.read_text(encoding="utf-8")
        state = load_file(str(checkpoint_path / "model.safetensors"))
        _restore_tied(state, model)
        had_buffer = TRACKER_BUFFER in state  # PAI adds it to the network when it saves its best model
        state[TRACKER_BUFFER] = UPA.string_to_tensor(text)
        with pai_guard(self.save_dir, "resume", silent=self.config.silent):
            # replays the restructures recorded in the weights (dendrite modules per cycle), loads the weights
            model = UPA.load_net_from_dict(model, state)
            GPA.pai_tracker.reset_module_vector(model, True)
            GPA.pai_tracker.from_string(text)
            GPA.pai_tracker.saved_time = time.time()
            GPA.pai_tracker.loaded = True
        if not had_buffer and TRACKER_BUFFER in model._buffers:
            # the checkpoint was written before PAI gave the network the buffer: the loop loads it as it was
            del model._buffers[TRACKER_BUFFER]
        saved = json.loads((checkpoint_path / EVENTS_FILE).read_text(encoding="utf-8"))
        self.events = list(saved["events"])
        self.completed = bool(saved["completed"])
        self.model = model
        if self.log is not None:
            self.log("dendrites restored", dendrites=dendrite_count(), parameters=pai_parameter_count(model))
        return model

    def draw_graphs(self) -> None:
        """PerforatedAI's PNG graphs and CSVs of the tracker so far, into `<save_dir>/pai/`."""
        GPA, _ = require_perforatedai()
        tracker = GPA.pai_tracker
        if tracker is None or self.model is None:
            return
        try:
            with pai_guard(self.save_dir, "save_graphs", silent=self.config.silent):
                tracker.making_graphs = True
                tracker.save_graphs()
        except Exception as exc:  # PAI's plotting indexes its history loosely; a graph must never end a run
            if self.log is not None:
                self.log(f"PerforatedAI could not draw its graphs: {type(exc).__name__}: {exc}")
        finally:
            tracker.making_graphs = self.config.graphs_every_eval

    def save_state(self) -> None:
        """Tracker state, a settings snapshot and the event log, next to PAI's own graphs."""
        GPA, UPA = require_perforatedai()
        tracker = GPA.pai_tracker
        keep = (
            "num_dendrites_added", "num_dendrites_integrated", "switch_epochs", "param_counts", "accuracies",
            "mode", "num_epochs_run", "global_best_validation_score",
        )  # fmt: skip
        member_vars = tracker.member_vars if tracker else {}
        state = {k: UPA.make_json_serializable(member_vars.get(k)) for k in keep}
        atomic_write_json(self.save_dir / "pai_tracker_state.json", state)
        atomic_write_json(self.save_dir / "pai_globals_snapshot.json", settings_snapshot())
        atomic_write_json(
            self.save_dir / "pai_events.json", {"note": GRADIENT_DESCENT_NOTE, "events": self.events}
        )

    def drop_model_snapshots(self) -> int:
        """Delete PerforatedAI's whole-model pickles (`best_model.pt`, `latest.pt`, one pair per dendrite
        switch) once training is over; the bytes freed. PAI writes them for its own reloads during
        training; afterwards they only duplicate the exported model and the resumable checkpoint, and for
        a 135M-parameter LM they are ~3.5 GB per arm (then copied again by a W&B artifact)."""
        freed = 0
        for path in (self.save_dir / SAVE_NAME).glob("*.pt"):
            freed += path.stat().st_size
            path.unlink()
        return freed


def _restore_tied(state: dict[str, torch.Tensor], model: nn.Module) -> None:
    """Add the names safetensors left out for tied tensors (one copy is stored per shared tensor), so a strict
    load into `model` finds every name."""
    own = model.state_dict()
    by_storage: dict[int, list[str]] = {}
    for name, tensor in own.items():
        by_storage.setdefault(tensor.data_ptr(), []).append(name)
    for names in by_storage.values():
        present = next((n for n in names if n in state), None)
        for name in names:
            if present is not None and name not in state:
                state[name] = state[present]


def pai_metrics(event: dict[str, Any]) -> dict[str, float]:
    """The per-evaluation PAI metrics of one event: restructured (0/1), active dendrite sets, total
    parameters (PAI's count) and param_efficiency = active dendrites / total parameters."""
    total = int(event["parameters"])
    return {
        "pai/restructured": float(bool(event["restructured"])),
        "pai/active_dendrites": float(event["dendrites"]),
        "pai/total_params": float(total),
        "pai/param_efficiency": float(event["dendrites"]) / max(total, 1),
    }


def settings_snapshot() -> dict[str, Any]:
    """Every PAI global setting, JSON-ready (its own extract_gpa_config)."""
    _, UPA = require_perforatedai()
    with contextlib.redirect_stdout(io.StringIO()):
        snapshot = UPA.extract_gpa_config()
    return dict(json.loads(json.dumps(snapshot, default=str)))
