"""The one training loop of tldrlab (Hugging Face Accelerate underneath; no transformers.Trainer).

    result = train(model, task, TrainConfig(max_steps=200), run)

Per optimizer step: `grad_accum_steps` micro-batches (forward under autocast, backward with loss scaling in
fp16), gradient clipping, AdamW step, learning rate from `schedule.lr_at(step)`. Between steps: metrics every
`log_every`, evaluation every `eval_every` (best checkpoint, early stopping, hooks), a resumable checkpoint
every `checkpoint_every`, a heartbeat, a rate-limited cancellation check, the preemption flag and Ctrl-C.

Data order: each epoch is a seeded permutation (seed + epoch) of the dataset, cut into per-process shards and
batches, so the position (epoch, batch index) in a checkpoint is enough to continue with the same batches.
Together with the RNG states, optimizer and scaler in the checkpoint, a resumed run reproduces the losses of
an uninterrupted one (bitwise on CPU).
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from tldrlab.device import loader_settings, resolve_device, resolve_precision
from tldrlab.errors import InvalidInputError, RunCancelledError, RunPreemptedError
from tldrlab.logs import progress_bar, progress_bars_shown
from tldrlab.runs import preempt
from tldrlab.runs.atomic import atomic_write_jsonl, read_jsonl
from tldrlab.runs.run import METRICS, Run
from tldrlab.track.plots import plot_run_metrics
from tldrlab.train import checkpoint as ckpt
from tldrlab.train.config import TrainConfig
from tldrlab.train.schedule import build_optimizer, lr_at, set_lr

CANCEL_CHECK_EVERY_S = 2.0
"""Cancellation is a registry read: check it at most this often."""


@runtime_checkable
class TrainTask(Protocol):
    """What the loop needs from a task: data, batching, a loss and an evaluation."""

    def train_dataset(self) -> torch.utils.data.Dataset[Any]: ...

    def collate(self, items: list[Any]) -> dict[str, torch.Tensor]: ...

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Mean loss of the batch and the number of tokens it trained on: throughput (tokens/s) and MFU
        count these. A decoder-only model counts every non-padding token it ran on, prompt included (each
        costs ~6 FLOPs per parameter whether or not it is a target); a seq2seq model counts its targets."""
        ...

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """Validation metrics; must include the config's `best_metric`, unless the task computes it only at
        some evaluations and names it in an `occasional_metrics` attribute (a set of metric names): an
        evaluation without it then neither improves the best nor counts towards early stopping. A task
        with an `evaluations` counter (which evaluation this is) has it restored on resume."""
        ...


@dataclass
class EvalDecision:
    """What a hook's `on_eval` may ask for after an evaluation."""

    model: nn.Module | None = None
    """A replacement model (e.g. restructured by PerforatedAI); it is re-prepared on the device."""

    rebuild_optimizer: bool = False
    """Build a fresh optimizer (and schedule position) for the model's current parameters."""

    stop: bool = False
    """End training after this evaluation (like early stopping)."""


@dataclass
class TrainState:
    """The loop's position and bookkeeping; everything here goes into checkpoints."""

    step: int = 0
    """Optimizer steps completed."""
    epoch: int = 0
    """Epoch of the next batch."""
    batch_index: int = 0
    """Index of the next batch within its epoch (on this process's shard)."""
    best_value: float | None = None
    """Best `best_metric` so far."""
    best_step: int | None = None
    """Step of the best evaluation."""
    evals_without_improvement: int = 0
    """Early-stopping counter."""
    tokens_seen: int = 0
    """Tokens trained on by this process (as counted by the task's `loss`)."""
    window_loss_sum: float = 0.0
    """Sum of step losses since the last metrics line (so resumed logs average the same steps)."""
    window_steps: int = 0
    """Steps in that sum."""
    last_eval: dict[str, float] = field(default_factory=dict)
    """Metrics of the latest evaluation."""
    evaluations: int = 0
    """Evaluations run so far. A task computing some metrics only at every Nth evaluation counts on it: a
    resumed run must compute them at the same steps as the uninterrupted one."""
    cpu_seconds: float = 0.0
    """Process CPU seconds (all threads) this training has spent in the loop, the calls before a resume
    included: a run's own cost, where the process's CPU time also counts whatever the process ran before."""

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainState:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class TrainHooks:
    """Optional callbacks; subclass and override what you need (every method defaults to doing nothing)."""

    def on_train_start(self, state: TrainState, model: nn.Module) -> None:
        """After setup and resume, before the first step."""

    def on_step_end(self, state: TrainState, loss: float) -> None:
        """After every optimizer step."""

    def log_fields(self, state: TrainState) -> dict[str, Any]:
        """Extra fields for the metrics line being written at this step (e.g. the process id)."""
        return {}

    def on_eval(self, state: TrainState, metrics: dict[str, float]) -> EvalDecision | None:
        """After each evaluation: may replace the model, rebuild the optimizer or stop; may raise."""
        return None

    def on_checkpoint(self, state: TrainState, path: Path) -> None:
        """After a checkpoint was written (main process only); extra files may be added next to it."""

    def before_resume(self, checkpoint_path: Path, model: nn.Module) -> nn.Module | None:
        """Before weights are loaded from a checkpoint: return a model restructured to fit it, or None."""
        return None

    def on_train_end(self, state: TrainState, result: TrainResult) -> None:
        """After the last step, the final evaluation and checkpoint."""


class _HookChain(TrainHooks):
    """Several hooks as one, called in order (see `chain_hooks`)."""

    def __init__(self, hooks: list[TrainHooks]) -> None:
        self.hooks = hooks

    def on_train_start(self, state: TrainState, model: nn.Module) -> None:
        for hook in self.hooks:
            hook.on_train_start(state, model)

    def on_step_end(self, state: TrainState, loss: float) -> None:
        for hook in self.hooks:
            hook.on_step_end(state, loss)

    def log_fields(self, state: TrainState) -> dict[str, Any]:
        return {k: v for hook in self.hooks for k, v in hook.log_fields(state).items()}

    def on_eval(self, state: TrainState, metrics: dict[str, float]) -> EvalDecision | None:
        merged: EvalDecision | None = None
        for hook in self.hooks:
            decision = hook.on_eval(state, metrics)
            if decision is None:
                continue
            merged = merged or EvalDecision()
            merged.model = merged.model or decision.model
            merged.rebuild_optimizer = merged.rebuild_optimizer or decision.rebuild_optimizer
            merged.stop = merged.stop or decision.stop
        return merged

    def on_checkpoint(self, state: TrainState, path: Path) -> None:
        for hook in self.hooks:
            hook.on_checkpoint(state, path)

    def before_resume(self, checkpoint_path: Path, model: nn.Module) -> nn.Module | None:
        for hook in self.hooks:
            restructured = hook.before_resume(checkpoint_path, model)
            if restructured is not None:
                return restructured
        return None

    def on_train_end(self, state: TrainState, result: TrainResult) -> None:
        for hook in self.hooks:
            hook.on_train_end(state, result)


def chain_hooks(hooks: list[TrainHooks]) -> TrainHooks:
    """One TrainHooks calling each of `hooks` in order; `on_eval` decisions merge (the first replacement
    model wins, any hook may ask for a fresh optimizer or a stop)."""
    return hooks[0] if len(hooks) == 1 else _HookChain(hooks)


@dataclass
class TrainResult:
    """What `train` returns."""

    model: nn.Module
    """The trained model (unwrapped from any distributed wrapper), in its final state."""
    steps: int
    """Optimizer steps completed in total (including those before a resume)."""
    metrics: dict[str, float]
    """The last evaluation's metrics."""
    best_value: float | None
    """Best value of the config's best_metric."""
    best_step: int | None
    """Step of that best evaluation."""
    best_checkpoint: Path | None
    """Checkpoint holding the best model's weights (None when no run directory or save_best is off)."""
    stopped_early: bool
    """True when early stopping or a hook ended training before max_steps."""
    resumed_from: int | None
    """Step of the checkpoint this call resumed from."""
    seconds: float
    """Wall time of this call's training, its evaluations and checkpoints included."""
    tokens_per_s: float
    """Tokens trained on per second of this call's training steps (all processes); its evaluations and
    checkpoints are left out, as in the metrics lines."""
    cpu_seconds: float = 0.0
    """Process CPU seconds of this training, resumed calls included (`TrainState.cpu_seconds`)."""
    warnings: list[str] = field(default_factory=list)
    """What the run's report should point out (a best_metric no evaluation computed)."""


# -- data order ---------------------------------------------------------------------------------------------
def epoch_batches(
    n_items: int, batch_size: int, *, seed: int, epoch: int, rank: int = 0, world_size: int = 1
) -> list[list[int]]:
    """This process's batches for one epoch: a seeded permutation, sharded across processes, full batches."""
    order = torch.randperm(n_items, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
    shard = order[rank::world_size][: n_items // world_size]
    n_batches = len(shard) // batch_size
    return [shard[i * batch_size : (i + 1) * batch_size] for i in range(n_batches)]


def _batches(
    dataset: torch.utils.data.Dataset[Any],
    task: TrainTask,
    config: TrainConfig,
    state: TrainState,
    *,
    rank: int,
    world_size: int,
    device: str,
) -> Iterator[dict[str, torch.Tensor]]:
    """Endless micro-batches from `state`'s position on; advances state.epoch / state.batch_index."""
    n_items = len(dataset)  # type: ignore[arg-type]
    if n_items // world_size < config.batch_size:
        raise InvalidInputError(
            f"the training data has {n_items} examples: too few for batch_size {config.batch_size}"
            + (f" on {world_size} processes" if world_size > 1 else "")
        )
    loader_opts = loader_settings(device)
    while True:
        batches = epoch_batches(
            n_items, config.batch_size, seed=config.seed, epoch=state.epoch, rank=rank, world_size=world_size
        )
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=batches[state.batch_index :],
            collate_fn=task.collate,
            num_workers=loader_opts.num_workers,
            pin_memory=loader_opts.pin_memory,
            # A private generator: creating a loader iterator must not draw from the global RNG, or a resumed
            # run (which creates one mid-epoch) would see different dropout masks.
            generator=torch.Generator().manual_seed(config.seed),
        )
        for batch in loader:
            state.batch_index += 1
            yield batch
        state.epoch += 1
        state.batch_index = 0


# -- Ctrl-C -------------------------------------------------------------------------------------------------
class _InterruptFlag:
    """First Ctrl-C asks the loop to checkpoint and stop after the current step; a second one aborts."""

    def __init__(self) -> None:
        self.set = False
        self._previous: Any = None

    def __enter__(self) -> _InterruptFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.set:
            raise KeyboardInterrupt
        self.set = True

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


# -- helpers ------------------------------------------------------------------------------------------------
def _new_accelerator(config: TrainConfig, device: str, precision: str) -> Any:
    import os

    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        # Several train() calls in one process (tests, sweeps) may use different precisions or accumulation:
        # accelerate keeps those in process-wide singletons, so start them afresh.
        AcceleratorState._reset_state(reset_partial_state=False)
        GradientState._reset_state()
    mixed = {"fp32": "no", "fp16": "fp16", "bf16": "bf16"}[precision]
    return Accelerator(
        mixed_precision=mixed, gradient_accumulation_steps=config.grad_accum_steps, cpu=device == "cpu"
    )


def _improved(value: float, best: float | None, mode: str) -> bool:
    if best is None or math.isnan(best):
        return not math.isnan(value)
    return value < best if mode == "min" else value > best


def _truncate_metrics(run: Run, step: int) -> int:
    """On resume, drop metric lines written after the checkpoint (the resumed run writes them again); returns
    how many were dropped."""
    path = run.dir / METRICS
    if not path.exists():
        return 0
    rows = read_jsonl(path)
    kept = [r for r in rows if int(r.get("step", 0)) <= step]
    if len(kept) < len(rows):
        atomic_write_jsonl(path, kept)
    return len(rows) - len(kept)


PLOT_INTERVAL_S = 60.0
"""Curves are redrawn at an evaluation at most this often (and always at the end): matplotlib takes about a
second per figure on a small CPU, which at frequent evaluations cost more than the training steps."""


def _plot(run: Run | None, config: TrainConfig) -> None:
    if run is None or not config.plot:
        return

    try:
        plot_run_metrics(run.dir)
    except Exception as exc:  # a plot must never end a training run
        run.log(f"plotting failed: {type(exc).__name__}: {exc}")


# -- throughput -------------------------------------------------------------------------------------------
PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10": 125.0,
               "V100": 125.0, "T4": 65.0, "RTX 4090": 165.0, "RTX 3090": 71.0}  # fmt: skip
"""Dense fp16/bf16 tensor-core peaks (TFLOPS) by GPU name, for model FLOPs utilisation (MFU)."""


def peak_flops(device: torch.device, precision: str) -> float | None:
    """The device's peak FLOPS at this precision when known (CUDA, fp16/bf16), else None (e.g. CPU)."""
    if device.type != "cuda" or precision not in ("fp16", "bf16"):
        return None
    name = torch.cuda.get_device_name(device)
    return next((tflops * 1e12 for gpu, tflops in PEAK_TFLOPS.items() if gpu in name), None)


def model_flops_per_token(model: nn.Module) -> float:
    """Training FLOPs per token, as in the scaling papers: 2 per parameter forward, 2 backward for the
    activations' gradients, and 2 more for the weight gradients of trainable parameters only (6 per parameter
    in full training; a LoRA model's frozen base costs 4)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return 4.0 * total + 2.0 * trainable


# -- the loop -----------------------------------------------------------------------------------------------
class _Loop:
    """One call of `train`: its state and its phases (setup/resume, step, log, evaluate, checkpoint,
    between-steps checks, finish), each a method so that `train` reads top to bottom."""

    def __init__(
        self,
        model: nn.Module,
        task: TrainTask,
        config: TrainConfig,
        run: Run | None,
        hooks: TrainHooks,
        tracker: Any | None,
    ) -> None:
        self.model, self.task, self.config, self.run = model, task, config, run
        self.hooks, self.tracker = hooks, tracker
        self.state = TrainState()
        self.resumed_from: int | None = None
        self.stopped_early = False
        self.progress_bar: Any = None
        self.plotted_at: float | None = None
        self.best_replaced_at: int | None = None
        """Step of a `best` checkpoint of an abandoned attempt that setup removed (see
        `drop_best_of_an_abandoned_attempt`)."""
        self.clip_params: list[nn.Parameter] = []
        """The model's parameters in `model.parameters()` order, listed whenever the model is prepared:
        walking a LoRA model's ~2,500 modules for them cost ~6 ms a step (of ~190 ms on this CPU), host
        time that a launch-bound GPU step pays in full; the clipped gradients and their order are the same."""

    # -- setup / resume -------------------------------------------------------------------------------------
    def setup(self, resume: bool) -> None:
        config, run = self.config, self.run
        device = resolve_device(config.device)
        self.precision = resolve_precision(config.precision, device)
        self.accelerator = accelerator = _new_accelerator(config, device, self.precision)
        self.is_main = accelerator.is_main_process
        self.rank, self.world_size = accelerator.process_index, accelerator.num_processes
        self.ckpt_dir = run.checkpoints_dir if run is not None else None
        if self.world_size > 1:
            from accelerate.utils import broadcast_object_list

            # Every process resumes from the main process's checkpoints (a shared file system is assumed).
            self.ckpt_dir = broadcast_object_list([self.ckpt_dir])[0]
        if run is not None and self.is_main:
            run.set_environment(
                device=str(accelerator.device), precision=self.precision, world_size=self.world_size
            )

        optimizer_state = scaler_state = None
        if resume and self.ckpt_dir is not None and ckpt.list_checkpoints(self.ckpt_dir):
            newest = ckpt.list_checkpoints(self.ckpt_dir)[-1]
            self.model = self.hooks.before_resume(newest, self.model) or self.model
            loaded = ckpt.load_latest(self.ckpt_dir, self.model)
            if loaded is not None:
                self.state = TrainState.from_json(loaded.state)
                if hasattr(self.task, "evaluations"):
                    # the task's own count restarted at 0 in this process: which evaluations generate
                    # (seq2seq ROUGE every `generate_every`) would shift against the uninterrupted run
                    self.task.evaluations = self.state.evaluations
                optimizer_state, scaler_state = loaded.optimizer_state, loaded.scaler_state
                self.resumed_from = loaded.step
                if run is not None and self.is_main:
                    _truncate_metrics(run, loaded.step)
                    run.log("resumed from checkpoint", step=loaded.step, path=str(loaded.path))
        # an earlier attempt stopped before its first checkpoint (killed or failed in its first steps): this
        # one trains from the start, and that attempt's metric lines stood beside its own, twice a step
        if (
            resume
            and self.resumed_from is None
            and run is not None
            and self.is_main
            and _truncate_metrics(run, 0)
        ):
            run.log("no checkpoint to resume from: training again from the start")
        self.best_replaced_at = self.drop_best_of_an_abandoned_attempt()

        self.flops_per_token = model_flops_per_token(self.model)
        self.peak_flops = peak_flops(accelerator.device, self.precision)
        optimizer = build_optimizer(self.model, config)
        self.model, self.optimizer = accelerator.prepare(self.model, optimizer)
        self.clip_params = list(self.model.parameters())
        if optimizer_state is not None:
            self.optimizer.load_state_dict(optimizer_state)
        if scaler_state is not None and accelerator.scaler is not None:
            accelerator.scaler.load_state_dict(scaler_state)

        dataset = self.task.train_dataset()
        self.batches = _batches(
            dataset,
            self.task,
            config,
            self.state,
            rank=self.rank,
            world_size=self.world_size,
            device=accelerator.device.type,
        )
        self.cancel_checked = time.monotonic()
        self.tokens_at_start = self.state.tokens_seen
        self.step_at_start = self.state.step
        self.started = time.perf_counter()
        self.window_started, self.window_tokens = self.started, 0
        self.off_the_clock_s = 0.0
        """Seconds this call spent off the clock (`off_the_clock`): the closing line's rates and the
        progress bar's tokens/s leave them out too."""
        # the steps of this window this process timed: a resumed window's `state.window_steps` also counts
        # those before the checkpoint (its loss averages them), which the process that stopped timed
        self.window_timed_steps = 0
        self.cpu_started, self.cpu_before = time.process_time(), self.state.cpu_seconds
        if config.progress and self.is_main and progress_bars_shown():
            self.progress_bar = progress_bar(
                total=config.max_steps, initial=self.state.step, desc="train", unit="step"
            )
        if run is not None and self.is_main:
            run.set_phase("training", progress=self.state.step / config.max_steps)
        self.hooks.on_train_start(self.state, accelerator.unwrap_model(self.model))
        self.model.train()

    def drop_best_of_an_abandoned_attempt(self) -> int | None:
        """Remove a `best` checkpoint written after the step this call starts from; returns its step.

        An attempt that stopped without checkpointing (killed, out of memory) may have written a new best
        after its last checkpoint. This call trains those steps again from the checkpoint's state, whose best
        is older, and drops that attempt's metric lines; its evaluations need not be the same ones (not
        bitwise on a GPU). Kept, that best was compared with nothing and exported as the best evaluation's
        weights, while the run's best step and value were another evaluation's."""
        if self.ckpt_dir is None or not self.is_main:
            return None
        best = self.ckpt_dir / ckpt.BEST
        step = ckpt.checkpoint_step(best) if best.is_dir() else None
        if step is None or step <= self.state.step:
            return None
        shutil.rmtree(best)
        if self.run is not None:
            self.run.log(
                f"the best checkpoint of step {step} is from after step {self.state.step}, where this attempt"
                " starts: removed, this attempt evaluates those steps again",
                step=self.state.step,
            )
        return step

    # -- one optimizer step ---------------------------------------------------------------------------------
    def step(self) -> float:
        """`grad_accum_steps` micro-batches (autocast forward, backward, clipping, AdamW); the step's loss."""
        config, state, accelerator, model = self.config, self.state, self.accelerator, self.model
        set_lr(self.optimizer, lr_at(state.step, config))
        step_loss, step_tokens = 0.0, 0
        for _ in range(config.grad_accum_steps):
            batch = {k: v.to(accelerator.device) for k, v in next(self.batches).items()}
            with accelerator.accumulate(model), accelerator.autocast():
                loss, n_tokens = self.task.loss(model, batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.max_grad_norm is not None:
                    accelerator.clip_grad_norm_(self.clip_params, config.max_grad_norm)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            step_loss += float(loss.detach()) / config.grad_accum_steps
            step_tokens += int(n_tokens)
        if not math.isfinite(step_loss) and self.precision != "fp16":
            # clipping is on by default (max_grad_norm 1.0): "enable gradient clipping" sent users looking for
            # a switch that was already on
            clip = (
                f"a lower max_grad_norm (now {config.max_grad_norm:g})"
                if config.max_grad_norm is not None
                else "gradient clipping (max_grad_norm, e.g. 1.0)"
            )
            raise InvalidInputError(
                f"training diverged: loss is {step_loss} at step {state.step + 1}; "
                f"lower the learning rate (now {config.lr:g}) or try {clip}"
            )
        state.step += 1
        state.tokens_seen += step_tokens
        state.window_loss_sum += step_loss
        state.window_steps += 1
        self.window_tokens += step_tokens
        self.window_timed_steps += 1
        self.hooks.on_step_end(state, step_loss)
        return step_loss

    # -- logging --------------------------------------------------------------------------------------------
    def mfu(self, tokens_per_s: float) -> float | None:
        """Model FLOPs utilisation: achieved training FLOPS over the devices' peak (None when unknown)."""
        if self.peak_flops is None:
            return None
        return tokens_per_s * self.flops_per_token / (self.peak_flops * self.world_size)

    def log(self, step_loss: float) -> None:
        """Every `log_every` steps a metrics line (loss, lr, tokens/s, MFU); the progress bar; a heartbeat."""
        config, state, run = self.config, self.state, self.run
        if state.step % config.log_every == 0 or state.step == config.max_steps:
            self.write_window()
        expected = self.expected_steps()
        if self.progress_bar is not None:
            # the training's rate, as the metrics lines and the closing line give it: a slow evaluation (or
            # checkpoint) counted here made the bar read several times slower than the steps ran
            training_s = max(time.perf_counter() - self.started - self.off_the_clock_s, 1e-9)
            tok_s = (state.tokens_seen - self.tokens_at_start) * self.world_size / training_s
            self.progress_bar.set_postfix(loss=f"{step_loss:.4f}", tok_s=f"{tok_s:,.0f}", refresh=False)
            self.progress_bar.total = expected
            self.progress_bar.update(1)
        if run is not None and self.is_main:
            run.heartbeat(progress=state.step / expected)

    def write_window(self) -> None:
        """The metrics line of the steps since the last one (mean loss, lr, tokens/s, steps/s, MFU)."""
        config, state, run = self.config, self.state, self.run
        now = time.perf_counter()
        elapsed = max(now - self.window_started, 1e-9)
        line: dict[str, Any] = {
            "train_loss": state.window_loss_sum / state.window_steps,
            "lr": lr_at(state.step - 1, config),
            "tokens_per_s": self.window_tokens * self.world_size / elapsed,
            "steps_per_s": self.window_timed_steps / elapsed,
        }
        mfu = self.mfu(line["tokens_per_s"])
        if mfu is not None:
            line["mfu"] = mfu
        line.update(self.hooks.log_fields(state))
        if run is not None and self.is_main:
            run.log_metrics(state.step, **line)
        if self.tracker is not None and self.is_main:
            self.tracker.log(state.step, line)
        state.window_loss_sum, state.window_steps = 0.0, 0
        self.window_started, self.window_tokens, self.window_timed_steps = now, 0, 0

    @contextlib.contextmanager
    def off_the_clock(self) -> Iterator[None]:
        """An evaluation or checkpoint between steps: left out of the metrics window, whose rates (tokens/s,
        steps/s, MFU) are the training's. Logged before them, the next line's window counted them: every line
        after an evaluation read several times slower when log_every was eval_every."""
        paused = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - paused
            self.window_started += spent
            self.off_the_clock_s += spent

    def expected_steps(self) -> int:
        """The step the run is expected to end at: `max_steps`, or sooner when the `max_minutes` budget will
        end it first (at this process's pace so far), so that the bar's total and ETA and the run's progress
        follow the budget (`--max-steps 20000 --max-minutes 20` counted to 20,000, read 29 % at the end)."""
        config, step = self.config, self.state.step
        minutes, done = config.max_minutes, step - self.step_at_start
        elapsed = time.perf_counter() - self.started
        if minutes is None or done <= 0 or elapsed <= 0:
            return config.max_steps
        left = max(0.0, minutes * 60 - elapsed)
        return max(step, min(config.max_steps, step + int(done / elapsed * left)))

    # -- evaluation -----------------------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        """Validation metrics; the best one so far is checkpointed as `best`."""
        config, state, run, accelerator = self.config, self.state, self.run, self.accelerator
        # the phase messages are heartbeats that restart the wait before the next step's: they carry the
        # progress, or a run evaluating more often than every 2 s never showed any
        progress = state.step / self.expected_steps()
        if run is not None and self.is_main:
            run.set_phase("evaluating", progress=progress)
        self.model.eval()
        state.evaluations += 1
        with torch.no_grad(), accelerator.autocast():
            metrics = {
                k: float(v) for k, v in self.task.evaluate(accelerator.unwrap_model(self.model)).items()
            }
        self.model.train()
        if run is not None and self.is_main:
            run.set_phase("training", progress=progress)
        value = metrics.get(config.best_metric)
        if value is None and config.best_metric not in getattr(self.task, "occasional_metrics", ()):
            raise InvalidInputError(
                f"best_metric {config.best_metric!r} is not among the evaluation metrics {sorted(metrics)}"
            )
        state.last_eval = metrics
        # an evaluation that did not compute an occasional best_metric (seq2seq ROUGE between generating
        # evaluations) says nothing about it: no new best, no step towards early stopping
        improved = value is not None and _improved(value, state.best_value, config.best_mode)
        if value is not None and improved:
            state.best_value, state.best_step = value, state.step
            state.evals_without_improvement = 0
        elif value is not None:
            state.evals_without_improvement += 1
        if run is not None and self.is_main:
            run.log_metrics(state.step, **metrics, best=improved)
            run.log("evaluation", step=state.step, metrics=metrics)
        if self.tracker is not None and self.is_main:
            self.tracker.log(state.step, metrics)
        if improved and config.save_best:
            self.checkpoint(ckpt.BEST)
        now = time.perf_counter()
        if now - (self.plotted_at if self.plotted_at is not None else self.started) >= PLOT_INTERVAL_S:
            _plot(run if self.is_main else None, config)
            self.plotted_at = now
        return metrics

    def evaluate_and_decide(self) -> None:
        """Evaluate, then apply the hooks' decision (new model, fresh optimizer, stop) and early stopping."""
        metrics = self.evaluate()
        decision = self.hooks.on_eval(self.state, metrics)
        if decision is not None:
            if decision.model is not None or decision.rebuild_optimizer:
                new_model = decision.model or self.accelerator.unwrap_model(self.model)
                optimizer = build_optimizer(new_model, self.config)
                self.model, self.optimizer = self.accelerator.prepare(new_model, optimizer)
                self.clip_params = list(self.model.parameters())
                self.model.train()
            self.stopped_early = self.stopped_early or decision.stop
        patience = self.config.early_stopping_patience
        if patience is not None and self.state.evals_without_improvement >= patience:
            self.stopped_early = True
            if self.run is not None and self.is_main:
                self.run.log("early stopping", step=self.state.step, best_step=self.state.best_step)

    # -- checkpoints ----------------------------------------------------------------------------------------
    def checkpoint(self, name: str | None = None) -> Path | None:
        """A resumable checkpoint (main process; named ones such as `best` are kept apart from pruning)."""
        accelerator, state = self.accelerator, self.state
        if self.ckpt_dir is None or not self.is_main:
            accelerator.wait_for_everyone()
            return None
        state.cpu_seconds = self.cpu_seconds()
        path = ckpt.save_checkpoint(
            self.ckpt_dir,
            step=state.step,
            model=accelerator.unwrap_model(self.model),
            optimizer=self.optimizer,
            state=state.to_json(),
            scaler=accelerator.scaler,
            name=name,
        )
        if name is None:
            ckpt.prune_checkpoints(self.ckpt_dir, self.config.keep_checkpoints)
            if self.run is not None:
                self.run.log("checkpoint written", step=state.step, path=str(path))
        self.hooks.on_checkpoint(state, path)
        accelerator.wait_for_everyone()
        return path

    # -- between steps --------------------------------------------------------------------------------------
    def between_steps(self, interrupted: _InterruptFlag) -> None:
        """Cancellation (a rate-limited registry read), preemption and Ctrl-C: checkpoint, then raise."""
        run, state = self.run, self.state
        if run is not None and time.monotonic() - self.cancel_checked >= CANCEL_CHECK_EVERY_S:
            self.cancel_checked = time.monotonic()
            try:
                run.check_cancelled()
            except RunCancelledError:
                self.checkpoint_to_stop()
                raise
        if preempt.stop_requested():
            self.checkpoint_to_stop()
            raise RunPreemptedError(f"preempted (stop requested): checkpointed at step {state.step}")
        if interrupted.set:
            self.checkpoint_to_stop()
            raise RunCancelledError(f"interrupted (Ctrl-C): checkpointed at step {state.step}")

    def checkpoint_to_stop(self) -> None:
        """The checkpoint a stopping run resumes from, and its step as the run's progress: the last
        (rate-limited) heartbeat's was up to 2 s of steps behind, and a run stopped at step 122 of 3,000
        read 3 % (step 100) in `runs list` for good."""
        self.checkpoint()
        if self.run is not None and self.is_main:
            self.run.heartbeat(progress=self.state.step / self.expected_steps(), every_s=0.0)

    def cpu_seconds(self) -> float:
        """This training's process CPU seconds so far (`TrainState.cpu_seconds`)."""
        return self.cpu_before + time.process_time() - self.cpu_started

    def out_of_time(self) -> bool:
        minutes = self.config.max_minutes
        return minutes is not None and time.perf_counter() - self.started >= minutes * 60

    # -- finish ---------------------------------------------------------------------------------------------
    def finish(self) -> TrainResult:
        """The final checkpoint and plot, the result, the run summary and the throughput line."""
        config, state, run, accelerator = self.config, self.state, self.run, self.accelerator
        if state.window_steps:
            # a run ended by early stopping or its time budget between two `log_every` steps: the steps
            # since the last line were trained on, and their loss was never written
            self.write_window()
        with self.off_the_clock():
            self.checkpoint()
            _plot(run if self.is_main else None, config)
        seconds = time.perf_counter() - self.started
        # the rates are the training's, as in every metrics line: the evaluations and checkpoints (a run's
        # generating evaluations can take longer than its steps) count in the wall time only
        training_s = max(seconds - self.off_the_clock_s, 1e-9)
        state.cpu_seconds = self.cpu_seconds()
        best_path = (
            self.ckpt_dir / ckpt.BEST
            if self.ckpt_dir is not None and (self.ckpt_dir / ckpt.BEST).is_dir()
            else None
        )
        tokens_per_s = (state.tokens_seen - self.tokens_at_start) * self.world_size / training_s
        warnings = []
        if state.best_value is None and state.evaluations:
            # an occasional best_metric (seq2seq ROUGE at every `generate_every`-th evaluation) that no
            # evaluation up to max_steps computed: no best was picked, and the last weights go out silently
            warnings.append(
                f"best_metric {config.best_metric} was never computed ({state.evaluations} evaluations up to"
                f" step {state.step}): no best evaluation was picked, the model exported is the last step's"
            )
        if self.best_replaced_at is not None and best_path is None and state.best_value is not None:
            # the best's weights were overwritten by the attempt whose best was dropped at setup, and no
            # evaluation since beat it
            start = (
                f"step {self.resumed_from} where this one resumed"
                if self.resumed_from is not None
                else "step 0 where this one started"
            )
            warnings.append(
                f"the best evaluation ({config.best_metric} {state.best_value:g} at step {state.best_step})"
                " has no checkpoint: an attempt that stopped without checkpointing replaced it with a best of"
                f" step {self.best_replaced_at}, after {start}; the model exported is the last step's"
            )
        result = TrainResult(
            model=accelerator.unwrap_model(self.model),
            steps=state.step,
            metrics=state.last_eval,
            best_value=state.best_value,
            best_step=state.best_step,
            best_checkpoint=best_path,
            stopped_early=self.stopped_early,
            resumed_from=self.resumed_from,
            seconds=seconds,
            tokens_per_s=tokens_per_s,
            cpu_seconds=state.cpu_seconds,
            warnings=warnings,
        )
        if run is not None and self.is_main:
            for warning in warnings:
                run.log(warning, level=logging.WARNING)
            summary: dict[str, Any] = {f"final_{k}": v for k, v in state.last_eval.items()}
            if state.best_value is not None:
                summary[f"best_{config.best_metric}"] = state.best_value
                summary["best_step"] = state.best_step
            run.set_summary(steps=state.step, **summary)
            mfu = self.mfu(tokens_per_s)
            run.log(
                f"trained to step {state.step} in {seconds:.1f}s ({training_s:.1f}s of training steps, the"
                f" evaluations and checkpoints aside): {tokens_per_s:,.0f} tokens/s"
                + (f", MFU {100 * mfu:.1f}%" if mfu is not None else ""),
                tokens_per_s=tokens_per_s,
                mfu=mfu,
                training_seconds=training_s,
            )
        self.hooks.on_train_end(state, result)
        return result


def train(
    model: nn.Module,
    task: TrainTask,
    config: TrainConfig,
    run: Run | None,
    *,
    hooks: TrainHooks | None = None,
    resume: bool = True,
    tracker: Any | None = None,
) -> TrainResult:
    """Train `model` on `task` for `config.max_steps` optimizer steps, reporting into `run`.

    `resume=True` continues from the newest good checkpoint in `run.checkpoints_dir` (falling back past
    corrupt ones). `run` may be None on non-main processes of a distributed job: only the main process
    writes run files. `tracker` (tldrlab.track.wandb_tracker.WandbTracker) also receives the metrics.
    Raises RunCancelledError (cancel requested or Ctrl-C) and RunPreemptedError (stop requested) after
    writing a checkpoint, so the run can be resumed.
    """
    loop = _Loop(model, task, config, run, hooks or TrainHooks(), tracker)
    loop.setup(resume)
    with _InterruptFlag() as interrupted:
        try:
            while loop.state.step < config.max_steps:
                step_loss = loop.step()
                loop.log(step_loss)
                out_of_time = loop.out_of_time()
                at_end = loop.state.step == config.max_steps or out_of_time
                if (config.eval_every and loop.state.step % config.eval_every == 0) or at_end:
                    with loop.off_the_clock():
                        loop.evaluate_and_decide()
                if out_of_time and run is not None and loop.is_main:
                    run.log("time budget reached", step=loop.state.step, max_minutes=config.max_minutes)
                if loop.stopped_early or out_of_time:
                    break
                if config.checkpoint_every and loop.state.step % config.checkpoint_every == 0 and not at_end:
                    with loop.off_the_clock():
                        loop.checkpoint()
                loop.between_steps(interrupted)
        finally:
            if loop.progress_bar is not None:
                loop.progress_bar.close()
    return loop.finish()
