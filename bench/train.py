"""Training throughput of the tldrlab loop vs a bare PyTorch loop: same model, batch, data, one process.

    .venv/bin/python bench/train.py                       # GPT-2 (2 layers, 128 wide), batch 8 x 128 tokens
    .venv/bin/python bench/train.py --steps 60 --repeats 3 --json out.json

After one untimed round of each loop, each repeat runs both loops back to back (alternating which goes
first) on a freshly seeded model; timing starts after `--warmup` steps and ends at the last step, so
setup, the final evaluation and checkpoint are not counted. Reported: tokens/s of each (median over
repeats), the ratio tldrlab / bare (target >= 0.95), and the peak memory growth during each loop (CUDA:
max_memory_allocated; CPU: peak resident set size sampled every 2 ms above the level before the loop).
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any

import torch

from headline import add_quick, headline


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


class PeakMemory:
    """Peak memory above the starting level while the block runs."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        if self.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            self._base = _rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes() - self._base)
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self._base
        else:
            self._stop.set()
            self._thread.join()


class _Pad:
    pad_token_id = 0


def build(args: argparse.Namespace, device: str) -> tuple[torch.nn.Module, Any]:
    from transformers import GPT2Config, GPT2LMHeadModel

    from tldrlab.train.config import DataConfig
    from tldrlab.train.tasks import CausalLMTask

    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=args.vocab, n_embd=args.width, n_layer=args.layers, n_head=4, n_positions=args.block
        )
    )
    gen = torch.Generator().manual_seed(1)
    n_tokens = args.block * args.batch * (args.steps + 4)
    ids = torch.randint(1, args.vocab, (n_tokens,), generator=gen).tolist()
    task = CausalLMTask(ids, ids[: args.block * 4], _Pad(), DataConfig(path="synthetic"), args.block)
    return model.to(device), task  # type: ignore[arg-type]


def bare_loop(args: argparse.Namespace, device: str) -> tuple[float, int]:
    """The reference: the plainest correct PyTorch loop doing the same work per step."""
    model, task = build(args, device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    blocks = task.train_blocks
    model.train()
    tokens, started = 0, 0.0
    for step in range(args.steps):
        if step == args.warmup:
            if device == "cuda":
                torch.cuda.synchronize()
            started, tokens = time.perf_counter(), 0
        batch = task.collate(blocks[step * args.batch : (step + 1) * args.batch])
        batch = {k: v.to(device) for k, v in batch.items()}
        loss, n = task.loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        float(loss.detach())  # the tldrlab loop reads the loss every step too (progress, logs)
        tokens += n
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started, tokens


def tldrlab_loop(args: argparse.Namespace, device: str, home: Path) -> tuple[float, int]:
    from tldrlab.runs.run import start_run
    from tldrlab.train import TrainConfig, TrainHooks, TrainState, train

    model, task = build(args, device)

    class Clock(TrainHooks):
        def __init__(self) -> None:
            self.started = 0.0
            self.ended = 0.0
            self.tokens_at_start = 0
            self.tokens = 0

        def on_step_end(self, state: TrainState, loss: float) -> None:
            if device == "cuda":
                torch.cuda.synchronize()
            if state.step == args.warmup:
                self.started, self.tokens_at_start = time.perf_counter(), state.tokens_seen
            if state.step == args.steps:
                self.ended, self.tokens = time.perf_counter(), state.tokens_seen - self.tokens_at_start

    clock = Clock()
    config = TrainConfig(
        max_steps=args.steps,
        batch_size=args.batch,
        lr=1e-3,
        lr_schedule="constant",
        eval_every=0,
        checkpoint_every=0,
        log_every=10,
        device=device,  # type: ignore[arg-type]
        precision="fp32",
        progress=False,
        plot=False,
    )
    with start_run("bench", {"bench": "train"}) as run:
        train(model, task, config, run, hooks=clock)
    return clock.ended - clock.started, clock.tokens


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--block", type=int, default=128)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None)
    add_quick(parser, steps=12, warmup=2, repeats=1)
    args = parser.parse_args()

    import os
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="tldrlab-bench-"))
    os.environ["TLDRLAB_HOME"] = str(home)
    os.environ["WANDB_MODE"] = "disabled"
    results: dict[str, list[float]] = {"bare": [], "tldrlab": []}
    memory: dict[str, list[int]] = {"bare": [], "tldrlab": []}
    # One untimed round of each loop first: one-time costs (lazy imports, allocator growth, thread pools)
    # otherwise land on whichever loop happens to run first and swamp a 5% difference.
    for name in ("bare", "tldrlab"):
        bare_loop(args, args.device) if name == "bare" else tldrlab_loop(args, args.device, home)
    for repeat in range(args.repeats):
        order = ["bare", "tldrlab"] if repeat % 2 == 0 else ["tldrlab", "bare"]
        for name in order:
            with PeakMemory(args.device) as peak:
                seconds, tokens = (
                    bare_loop(args, args.device) if name == "bare" else tldrlab_loop(args, args.device, home)
                )
            results[name].append(tokens / seconds)
            memory[name].append(peak.peak)
            rate, mib = tokens / seconds, peak.peak / 2**20
            print(f"repeat {repeat} {name:8s} {rate:10.0f} tokens/s  peak +{mib:.1f} MiB")
    bare, ours = statistics.median(results["bare"]), statistics.median(results["tldrlab"])
    summary = {
        "device": args.device,
        "threads": torch.get_num_threads(),
        "settings": {k: v for k, v in vars(args).items() if k != "json"} | {"json": None},
        "bare_tokens_per_s": bare,
        "tldrlab_tokens_per_s": ours,
        "ratio_tldrlab_over_bare": ours / bare,
        "bare_peak_mib": max(memory["bare"]) / 2**20,
        "tldrlab_peak_mib": max(memory["tldrlab"]) / 2**20,
        "all": results,
    }
    print(json.dumps(summary, indent=2, default=str))
    headline("training tokens/s tldrlab loop / bare PyTorch", ours / bare, ">= 0.95")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
