"""A tiny real task for loop tests: next-token prediction on a seeded synthetic sequence with structure.

Also a script: `python toy.py RUN_ID MAX_STEPS CHECKPOINT_EVERY [SLEEP_AFTER_STEP]` executes a queued run
(used by the kill -9 resume test and the two-process data-parallel test).
"""

from __future__ import annotations

import sys
import time
from typing import Any

import torch
from torch import nn

from tldrlab.train import TrainConfig, TrainHooks, TrainState, train

VOCAB = 17
SEQ = 12


class ToyLM(nn.Module):
    def __init__(self, dim: int = 16, dropout: float = 0.1) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, dim)
        self.hidden = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(dim, VOCAB)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(torch.relu(self.hidden(self.embed(ids)))))


def make_sequences(n: int, seed: int) -> torch.Tensor:
    """Sequences where the next token is (token * 3 + 1) mod VOCAB, with 10% noise: learnable."""
    gen = torch.Generator().manual_seed(seed)
    seqs = torch.empty(n, SEQ, dtype=torch.long)
    seqs[:, 0] = torch.randint(0, VOCAB, (n,), generator=gen)
    for t in range(1, SEQ):
        nxt = (seqs[:, t - 1] * 3 + 1) % VOCAB
        noise = torch.rand(n, generator=gen) < 0.1
        seqs[:, t] = torch.where(noise, torch.randint(0, VOCAB, (n,), generator=gen), nxt)
    return seqs


class ToyTask:
    def __init__(self, n_train: int = 256, n_val: int = 64) -> None:
        self.train_seqs = make_sequences(n_train, seed=1)
        self.val_seqs = make_sequences(n_val, seed=2)
        self.seen_indices: list[int] = []

    def train_dataset(self) -> Any:
        return torch.utils.data.TensorDataset(torch.arange(len(self.train_seqs)), self.train_seqs)

    def collate(self, items: list[Any]) -> dict[str, torch.Tensor]:
        self.seen_indices.extend(int(i) for i, _ in items)
        return {"ids": torch.stack([s for _, s in items])}

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        ids = batch["ids"]
        logits = model(ids[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, VOCAB).float(), ids[:, 1:].reshape(-1))
        return loss, ids[:, 1:].numel()

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        device = next(model.parameters()).device
        ids = self.val_seqs.to(device)
        logits = model(ids[:, :-1])
        loss = nn.functional.cross_entropy(logits.reshape(-1, VOCAB).float(), ids[:, 1:].reshape(-1))
        acc = (logits.argmax(-1) == ids[:, 1:]).float().mean()
        return {"eval_loss": float(loss), "eval_accuracy": float(acc)}


class SlowHooks(TrainHooks):
    """Sleeps after each step so a test can kill the process between checkpoints."""

    def __init__(self, sleep_s: float) -> None:
        self.sleep_s = sleep_s

    def on_step_end(self, state: TrainState, loss: float) -> None:
        time.sleep(self.sleep_s)


def main(argv: list[str]) -> None:
    from tldrlab.runs.run import execute_run

    run_id, max_steps, checkpoint_every = argv[0], int(argv[1]), int(argv[2])
    sleep_s = float(argv[3]) if len(argv) > 3 else 0.0
    torch.manual_seed(0)
    model = ToyLM()
    config = TrainConfig(
        max_steps=max_steps,
        batch_size=8,
        lr=2e-2,
        warmup_steps=3,
        eval_every=5,
        checkpoint_every=checkpoint_every,
        log_every=1,
        device="cpu",
        progress=False,
        plot=False,
    )
    with execute_run(run_id) as run:
        train(model, ToyTask(), config, run, hooks=SlowHooks(sleep_s))


def ddp_main(argv: list[str]) -> None:
    """Under torchrun: rank 0 executes the run, every rank trains; each rank writes what it saw to OUT_DIR."""
    import hashlib
    import json
    import os
    from pathlib import Path

    from tldrlab.runs.run import execute_run

    run_id, out_dir = argv[0], Path(argv[1])
    rank = int(os.environ["RANK"])
    torch.manual_seed(0)
    task = ToyTask()
    config = TrainConfig(
        max_steps=6,
        batch_size=8,
        lr=2e-2,
        eval_every=3,
        checkpoint_every=3,
        log_every=1,
        device="cpu",
        progress=False,
        plot=False,
    )
    if rank == 0:
        with execute_run(run_id) as run:
            result = train(ToyLM(), task, config, run)
    else:
        result = train(ToyLM(), task, config, None)
    digest = hashlib.sha256()
    for name, tensor in sorted(result.model.state_dict().items()):
        digest.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
    report = {"rank": rank, "seen": task.seen_indices, "weights": digest.hexdigest(), "steps": result.steps}
    (out_dir / f"rank{rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    if sys.argv[1] == "ddp":
        ddp_main(sys.argv[2:])
    else:
        main(sys.argv[1:])
