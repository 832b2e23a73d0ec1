"""Training an LVM through the Trainer core loop: the `LVMTask` and the `lvm_train` run kind.

The loop (tldrlab.train.train) brings resume from checkpoints, mixed precision, cancellation, progress and
metrics; this module only says what a batch is (context vectors, mask, target vector), what the loss is and
how validation is scored. After training, the best evaluation's weights are saved as `model/` in the run.
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError
from torch import nn

from tldrlab.budget import ReadDimension, within_budget_as_read
from tldrlab.errors import ConfigError, InvalidConfigError, error_message
from tldrlab.lvm.config import LVMConfig, LVMTrainJobConfig, lvm_parameter_count
from tldrlab.lvm.losses import LossBatch, combined_loss, mask_context, uses_bank
from tldrlab.lvm.models import build_lvm, count_parameters, save_lvm
from tldrlab.lvm.sequences import (
    TRAINED_ARTICLES,
    SequenceSet,
    SplitArrays,
    load_sequences,
    trained_articles,
)
from tldrlab.runs.atomic import atomic_write_json
from tldrlab.runs.run import Run
from tldrlab.train.loop import TrainHooks, TrainResult
from tldrlab.train.recipe import Recipe, RecipeExport, RecipeSetup, Tracking, run_recipe
from tldrlab.train.same_data import check_same_data

MODEL_DIR = "model"


@dataclass
class ConceptBank:
    """Unit-norm concept vectors of some articles and their ids: the softmax of the `corpus` loss and the
    candidates of validation retrieval."""

    vectors: torch.Tensor
    """(M, d) float32, unit norm."""
    ids: np.ndarray
    """(M,) concept ids, row-aligned with `vectors`."""

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Bank row of each concept id (any shape); -1 for padding (-1) and ids not in the bank."""
        order = np.argsort(self.ids, kind="stable")
        found = np.clip(np.searchsorted(self.ids[order], ids), 0, max(len(order) - 1, 0))
        rows = order[found] if len(order) else np.zeros_like(ids)
        return np.where((ids >= 0) & (self.ids[rows] == ids), rows, -1).astype(np.int64)


def concept_bank(sequences: SequenceSet, split: str) -> ConceptBank:
    rows = sequences.candidate_rows(split)
    vectors = torch.nn.functional.normalize(torch.from_numpy(sequences.vectors[rows]).float(), dim=-1)
    return ConceptBank(vectors=vectors, ids=sequences.concept_ids[rows])


class LVMTask:
    """Next-concept prediction as a TrainTask: batches of (contexts, mask, target, bank rows)."""

    def __init__(
        self,
        train: SplitArrays,
        val: SplitArrays,
        loss: str,
        temperature: float,
        group: int = 1,
        *,
        train_bank: ConceptBank | None = None,
        val_bank: ConceptBank | None = None,
    ) -> None:
        self.train = train
        self.val = val
        self.group = group
        self.temperature = temperature
        self.loss_fn = combined_loss(loss)
        self.train_bank = train_bank
        self.val_bank = val_bank

    def train_dataset(self) -> torch.utils.data.Dataset[Any]:
        return GroupedWindows(self.train, self.group, self.train_bank)

    def collate(self, items: list[Any]) -> dict[str, torch.Tensor]:
        names = ("contexts", "mask", "targets", "target_rows", "context_rows", "context_tmd")
        return {name: torch.cat(parts) for name, parts in zip(names, zip(*items, strict=True), strict=True)}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        pred = model(batch["contexts"], batch["mask"], _tmd_input(model, batch["context_tmd"]))
        bank = self.train_bank.vectors.to(pred.device) if self.train_bank is not None else None
        inputs = LossBatch(
            batch["targets"], self.temperature, bank, batch["target_rows"], batch["context_rows"]
        )
        return self.loss_fn(pred, inputs), len(pred)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """eval_loss (the training loss on fixed chunks of 256), cosine, MSE and, with a bank, retrieval
        top-1 with the context excluded (`val_top1_excl`) on the validation split."""
        device = next(model.parameters()).device
        preds = predict(model, self.val.contexts, self.val.mask, device=device, tmd=self.val.context_tmd)
        targets = torch.from_numpy(self.val.targets)
        bank = self.val_bank
        target_rows = torch.from_numpy(bank.rows(self.val.target_ids)) if bank is not None else None
        context_rows = torch.from_numpy(bank.rows(self.val.context_ids)) if bank is not None else None
        losses, sizes = [], []
        for start in range(0, len(preds), 256):
            chunk = slice(start, start + 256)
            if len(preds[chunk]) < 2:  # InfoNCE needs other targets in the chunk
                continue
            inputs = LossBatch(
                targets[chunk],
                self.temperature,
                bank.vectors if bank is not None else None,
                target_rows[chunk] if target_rows is not None else None,
                context_rows[chunk] if context_rows is not None else None,
            )
            losses.append(float(self.loss_fn(preds[chunk], inputs)))
            sizes.append(len(preds[chunk]))
        cosine = torch.nn.functional.cosine_similarity(preds, targets, dim=-1)
        metrics = {
            "eval_loss": float(np.average(losses, weights=sizes)) if losses else float("nan"),
            "val_cosine": float(cosine.mean()),
            "val_mse": float(((preds - targets) ** 2).mean()),
        }
        if bank is not None and target_rows is not None and context_rows is not None:
            scores = torch.nn.functional.normalize(preds, dim=-1) @ bank.vectors.T
            best = mask_context(scores, context_rows).argmax(1)
            metrics["val_top1_excl"] = float((best == target_rows).float().mean())
        return metrics


class GroupedWindows(torch.utils.data.Dataset[tuple[torch.Tensor, ...]]):
    """Item i = up to `group` consecutive windows of one article (windows are stored in article order),
    with the bank rows of their targets and context concepts (-1 without a bank)."""

    def __init__(self, split: SplitArrays, group: int, bank: ConceptBank | None = None) -> None:
        self.contexts = torch.from_numpy(split.contexts)
        self.mask = torch.from_numpy(split.mask)
        self.targets = torch.from_numpy(split.targets)
        if bank is not None:
            self.target_rows = torch.from_numpy(bank.rows(split.target_ids))
            self.context_rows = torch.from_numpy(bank.rows(split.context_ids))
        else:
            self.target_rows = torch.full((len(split),), -1, dtype=torch.long)
            self.context_rows = torch.full(split.context_ids.shape, -1, dtype=torch.long)
        # (n, N, TMD_DIM) labels, or (n, N, 0) when the sequences carry none
        tmd = split.context_tmd if split.context_tmd is not None else np.zeros((*split.mask.shape, 0))
        self.context_tmd = torch.from_numpy(np.asarray(tmd, dtype=np.float32))
        starts = np.flatnonzero(np.r_[True, split.article[1:] != split.article[:-1]])
        ends = np.r_[starts[1:], len(split.article)]
        self.groups = [
            (begin, min(begin + group, end))
            for s, end in zip(starts, ends, strict=True)
            for begin in range(s, end, group)
        ]

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        begin, end = self.groups[i]
        span = slice(begin, end)
        return (
            self.contexts[span],
            self.mask[span],
            self.targets[span],
            self.target_rows[span],
            self.context_rows[span],
            self.context_tmd[span],
        )


def _tmd_input(model: nn.Module, tmd: torch.Tensor | None) -> torch.Tensor | None:
    """The TMD features when the model reads them (a model without `tmd_inputs` gets None)."""
    config = getattr(model, "config", None)
    if not getattr(config, "tmd_inputs", False):
        return None
    if tmd is None or tmd.shape[-1] == 0:
        raise ConfigError("this LVM reads TMD labels, but the sequences have none: run `tldrlab lvm tmd`")
    return tmd


@torch.no_grad()
def predict(
    model: nn.Module,
    contexts: np.ndarray,
    mask: np.ndarray,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 1024,
    tmd: np.ndarray | None = None,
) -> torch.Tensor:
    """Predictions (float32, on the CPU) for many contexts, in eval mode, batch by batch. `tmd`: the
    contexts' TMD features (n, N, TMD_DIM), used when the model reads them."""
    was_training = model.training
    model.eval()
    outputs = []
    for start in range(0, len(contexts), batch_size):
        x = torch.from_numpy(contexts[start : start + batch_size]).to(device)
        m = torch.from_numpy(mask[start : start + batch_size]).to(device)
        t = torch.from_numpy(tmd[start : start + batch_size]).to(device) if tmd is not None else None
        outputs.append(model(x, m, _tmd_input(model, t)).float().cpu())
    model.train(was_training)
    return torch.cat(outputs) if outputs else torch.zeros((0, contexts.shape[-1]))


SET_BY_SEQUENCES = {
    "dim": "whose vectors have {} dimensions",
    "context": "whose contexts are {} concepts long",
}
"""The LVM settings a training takes from its sequences file, not its model_settings, and how the file's
value is worded."""


def settings_refused(exc: ValidationError, path: str, sequences: SequenceSet) -> InvalidConfigError:
    """LVMConfig's refusal of a training's settings completed with its sequences' dim and context, worded as a
    submit's refusal is (`model_settings.dim: ...`, an `errors` entry each): a field the sequences file sets
    says so and what the file holds, since the config the user gave never named it."""
    from_file = {"dim": sequences.dim, "context": sequences.context}
    problems = []
    for error in exc.errors():
        loc = tuple(str(part) for part in error["loc"])
        message = error_message(error)
        if loc and loc[0] in SET_BY_SEQUENCES:
            held = SET_BY_SEQUENCES[loc[0]].format(from_file[loc[0]])
            message += f" ({loc[0]} comes from the sequences file {path}, {held})"
        problems.append((("model_settings", *loc), message))
    return InvalidConfigError.at_fields(problems)


def check_budget_as_read(config: LVMTrainJobConfig, shape: LVMConfig) -> None:
    """The model of `shape` (the training's settings with its sequences' dim and context) fits the parameter
    budget, counted as LVMTrainJobConfig's validation counts it with the settings' own dim and context
    (384 and 5 unless set): a sequences file of 4096-dimensional vectors built a model many times the one
    counted, past the limit. InvalidConfigError naming the field the file made bigger and the file."""
    counted = LVMConfig.model_validate(config.model_settings)
    dimensions = []
    for name, held in SET_BY_SEQUENCES.items():
        value = getattr(shape, name)
        source = f"{name} comes from the sequences file {config.sequences}, {held.format(value)}"
        dimensions.append(ReadDimension(("model_settings", name), getattr(counted, name), value, source))
    within_budget_as_read(lvm_parameter_count(config.model, shape), dimensions)


def lvm_data_files(config: LVMTrainJobConfig, recorded: Sequence[Path] = ()) -> list[Path]:
    """The file an `lvm_train` run reads (`same_data.RunFiles`): its sequences file, which `lvm sequences`
    writes again in place (<home>/lvm/sequences.npz unless `--out`)."""
    return [Path(config.sequences)]


def setup(run: Run | None, config: LVMTrainJobConfig) -> RecipeSetup:
    """The LVM recipe's setup: sequences, model (the driver has seeded), task and loop settings. (The model
    and loss names are LVMTrainJobConfig's validation.)"""
    if run is not None:
        # a resume on sequences built again since (other articles, split or context) continued the
        # checkpoint's training on them silently, as train and elm_train did before they checked
        check_same_data(run, functools.partial(lvm_data_files, config))
    sequences = load_sequences(config.sequences)
    if run is not None:
        # which articles the model sees: an evaluation on sequences built again since must not score them
        atomic_write_json(run.dir / TRAINED_ARTICLES, trained_articles(sequences, config.sequences))
    train_split = sequences.split_arrays("train")
    val_split = sequences.split_arrays("val").sample(config.max_val_examples, config.train.seed)
    val_bank_split = "val"
    if len(val_split) == 0:
        val_split = train_split.sample(min(config.max_val_examples, 512), config.train.seed)
        val_bank_split = "train"
    settings = {**config.model_settings, "dim": sequences.dim, "context": sequences.context}
    try:  # validated again: dim and context are the sequences' now, not the settings' own
        shape = LVMConfig(**settings)
    except ValidationError as exc:
        raise settings_refused(exc, config.sequences, sequences) from None
    check_budget_as_read(config, shape)
    model = build_lvm(config.model, shape)
    if run is not None:
        run.log(
            "training LVM",
            model=config.model,
            parameters=count_parameters(model),
            train_examples=len(train_split),
            val_examples=len(val_split),
        )
    task = LVMTask(
        train_split,
        val_split,
        config.loss,
        config.temperature,
        config.group,
        # the corpus loss's softmax; validation always scores retrieval against its own articles' concepts
        train_bank=concept_bank(sequences, "train") if uses_bank(config.loss) else None,
        val_bank=concept_bank(sequences, val_bank_split),
    )
    return RecipeSetup(
        model=model,
        task=task,
        loop=config.train,
        tracking=Tracking(config={"kind": "lvm_train", **config.model_dump(mode="json")}),
    )


def export(run: Run, config: LVMTrainJobConfig, setup: RecipeSetup, result: TrainResult) -> RecipeExport:
    """The best validation's weights as <run_dir>/model, and what the run's summary says."""
    trained = result.model
    model_dir = save_lvm(trained, run.dir / MODEL_DIR)  # type: ignore[arg-type]
    if (run.dir / TRAINED_ARTICLES).is_file():  # the model directory says so wherever it is taken
        shutil.copyfile(run.dir / TRAINED_ARTICLES, model_dir / TRAINED_ARTICLES)
    task = setup.task
    assert isinstance(task, LVMTask)
    summary = {
        "parameters": count_parameters(trained),
        "trainable_parameters": sum(p.numel() for p in trained.parameters() if p.requires_grad),
        "steps": result.steps,
        "best_step": result.best_step,
        "val_cosine": task.evaluate(trained)["val_cosine"],
        # the CPU budget a comparison at equal cost needs (all threads, resumed calls included). Not the
        # process's own CPU time: a worker or a sweep runs several trainings in one process, and each one's
        # figure held every earlier one's too
        "cpu_seconds": round(result.cpu_seconds, 2),  # a tiny run (tests, smoke) spends well under 0.1 s
    }
    return RecipeExport(model_dir=model_dir, summary=summary)


LVM_TRAIN: Recipe[LVMTrainJobConfig] = Recipe("lvm_train", lambda config: config.train.seed, setup, export)
"""The LVM recipe."""


def train_lvm(
    config: LVMTrainJobConfig, run: Run, *, resume: bool = True, hooks: TrainHooks | None = None
) -> dict[str, Any]:
    """Train (or resume) one LVM into `run`; returns the run summary. `hooks`: extra TrainHooks (a sweep's
    pruner)."""
    extra = [hooks] if hooks is not None else []
    return run_recipe(run, LVM_TRAIN, config, resume=resume, extra_hooks=extra).export.summary


def lvm_train_job(run: Run, config: LVMTrainJobConfig) -> dict[str, Any]:
    """Run kind `lvm_train`: resumes if checkpoints exist. The summary plus the final metrics and the model
    directory, the fields the training report reads (without them it printed "run ...: 3 steps, ")."""
    done = run_recipe(run, LVM_TRAIN, config, resume=True)
    model_dir = done.export.model_dir
    return {
        **done.export.summary,
        "metrics": done.train.metrics,
        "model_dir": str(model_dir) if model_dir else None,
    }
