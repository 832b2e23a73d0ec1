"""Training throughput of the tldrlab loop vs a bare PyTorch loop: same model, batch, data, one process.

    .venv/bin/python bench/train.py                       # GPT-2 (2 layers, 128 wide), batch 8 x 128 tokens
    .venv/bin/python bench/train.py --steps 60 --repeats 3 --json out.json
    .venv/bin/python bench/train.py --model chat_lora     # causal_lm chat task, LoRA r16, SmolLM2-shaped

`--model chat_lora` is the `causal_lm` chat task as the H200 ran it (docs/training.md): SciTLDR train
papers (`--data`) through the bundled SmolLM2 tokenizer and chat template (source cut to `--chat-source-len`
tokens, answer to 40), batch 8, a Llama with SmolLM2's 30 layers (`--layers`) but 16 wide (`--width`, 2
heads) and its token ids folded into a 512-token vocabulary, LoRA r 16 (dropout 0.05) on all seven
projections: the model's arithmetic is small, so most of a step's time is its host-side cost (Python,
dispatch, data). Both loops draw the same batches in the same order, tokenized when first drawn.

After one untimed round of each loop, each repeat runs both loops back to back (alternating which goes
first) on a freshly seeded model; timing starts after `--warmup` steps and ends at the last step, so
setup, the final evaluation and checkpoint are not counted. Reported: tokens/s of each (median over
repeats), ms per step, the bare loop's ms per piece of a step (data, forward, backward, clip, optimizer
step and zero_grad, reading the loss), the ratio tldrlab / bare (target >= 0.95), and the peak memory
growth during each loop (CUDA: max_memory_allocated; CPU: peak resident set size sampled every 2 ms above
the level before the loop).
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

from headline import add_quick, headline, need_data


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


CHAT_VOCAB = 512
_TOKENIZER: list[Any] = []


def build_chat(args: argparse.Namespace, device: str) -> tuple[torch.nn.Module, Any]:
    from transformers import LlamaConfig, LlamaForCausalLM

    from tldrlab.data.readers import read_records
    from tldrlab.models.causal_lm import CausalLMConfig, LoraSettings, apply_lora, family_tokenizer
    from tldrlab.train.chat_sft import ChatSFTTask
    from tldrlab.train.config import DataConfig

    if not _TOKENIZER:
        _TOKENIZER.append(family_tokenizer(CausalLMConfig()))

    class FoldedChatTask(ChatSFTTask):
        """The chat task with token ids folded into the tiny model's vocabulary."""

        def collate(self, items: list[tuple[list[int], list[int]]]) -> dict[str, torch.Tensor]:
            batch = super().collate(items)
            labels = batch["labels"]
            batch["input_ids"] = batch["input_ids"] % CHAT_VOCAB
            batch["labels"] = torch.where(labels >= 0, labels % CHAT_VOCAB, labels)
            return batch

    records = read_records(args.data, None, split="train", limit=args.batch * (args.steps + 8) + 8)
    data = DataConfig(path=str(args.data), max_source_len=args.chat_source_len, max_target_len=40)
    instruction = "Summarize the following text in one short sentence."
    task = FoldedChatTask(records[8:], records[:8], _TOKENIZER[0], data, instruction)
    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=CHAT_VOCAB, hidden_size=args.width, intermediate_size=2 * args.width,
            num_hidden_layers=args.layers, num_attention_heads=2, num_key_value_heads=1,
            max_position_embeddings=2048, tie_word_embeddings=True,
        )
    )  # fmt: skip
    model = apply_lora(model, LoraSettings(r=16, alpha=32, dropout=0.05))
    return model.to(device), task


def build(args: argparse.Namespace, device: str) -> tuple[torch.nn.Module, Any]:
    if args.model == "chat_lora":
        return build_chat(args, device)
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


PIECES: dict[str, list[float]] = {
    "data": [], "forward": [], "backward": [], "clip": [], "optimizer": [], "read_loss": []
}  # fmt: skip
"""The bare loop's timed steps, ms per piece (host time: on CUDA a piece ends when its kernels are queued,
except `read_loss`, which waits for them)."""


def bare_loop(args: argparse.Namespace, device: str) -> tuple[float, int]:
    """The reference: the plainest correct PyTorch loop doing the same work per step."""
    from tldrlab.train.loop import epoch_batches

    model, task = build(args, device)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.01
    )
    items = task.train_dataset()
    # the batches train() draws (its first epoch), so both loops see the same lengths
    order = epoch_batches(len(items), args.batch, seed=0, epoch=0)
    model.train()
    tokens, started = 0, 0.0
    for step in range(args.steps):
        if step == args.warmup:
            if device == "cuda":
                torch.cuda.synchronize()
            started, tokens = time.perf_counter(), 0
        marks = [time.perf_counter()]
        batch = task.collate([items[i] for i in order[step]])
        batch = {k: v.to(device) for k, v in batch.items()}
        marks.append(time.perf_counter())
        loss, n = task.loss(model, batch)
        marks.append(time.perf_counter())
        loss.backward()
        marks.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        marks.append(time.perf_counter())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        marks.append(time.perf_counter())
        float(loss.detach())  # the tldrlab loop reads the loss every step too (progress, logs)
        marks.append(time.perf_counter())
        if step >= args.warmup:
            for piece, start, end in zip(PIECES, marks, marks[1:], strict=False):
                PIECES[piece].append(1000 * (end - start))
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
        seed=0,
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
    parser.add_argument("--width", type=int, default=None, help="128 for gpt2, 16 for chat_lora")
    parser.add_argument("--layers", type=int, default=None, help="2 for gpt2, 30 for chat_lora")
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", choices=["gpt2", "chat_lora"], default="gpt2")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/scitldr"))
    parser.add_argument("--chat-source-len", type=int, default=256)
    parser.add_argument("--json", type=Path, default=None)
    add_quick(parser, steps=12, warmup=2, repeats=1)
    args = parser.parse_args()
    chat = args.model == "chat_lora"
    if chat:
        need_data(args.data)
    args.width = args.width or (16 if chat else 128)
    args.layers = args.layers or (30 if chat else 2)

    import os
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="tldrlab-bench-"))
    os.environ["TLDRLAB_HOME"] = str(home)
    os.environ["WANDB_MODE"] = "disabled"
    results: dict[str, list[float]] = {"bare": [], "tldrlab": []}
    memory: dict[str, list[int]] = {"bare": [], "tldrlab": []}
    step_ms: dict[str, list[float]] = {"bare": [], "tldrlab": []}
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
            step_ms[name].append(1000 * seconds / (args.steps - args.warmup))
            memory[name].append(peak.peak)
            rate, mib = tokens / seconds, peak.peak / 2**20
            print(
                f"repeat {repeat} {name:8s} {rate:10.0f} tokens/s  {step_ms[name][-1]:7.1f} ms/step"
                f"  peak +{mib:.1f} MiB"
            )
    bare, ours = statistics.median(results["bare"]), statistics.median(results["tldrlab"])
    summary = {
        "device": args.device,
        "threads": torch.get_num_threads(),
        "settings": {k: v for k, v in vars(args).items() if k != "json"} | {"json": None},
        "bare_tokens_per_s": bare,
        "tldrlab_tokens_per_s": ours,
        "ratio_tldrlab_over_bare": ours / bare,
        "bare_ms_per_step": statistics.median(step_ms["bare"]),
        "tldrlab_ms_per_step": statistics.median(step_ms["tldrlab"]),
        "bare_ms_per_piece": {k: round(statistics.median(v), 2) for k, v in PIECES.items() if v},
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
