"""A PerforatedAI run on a tiny Llama stopped after a restructure resumes with its dendrites and tracker, and
ends like an uninterrupted one; the per-evaluation PAI metrics reach the run's metrics."""

from __future__ import annotations

import json

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from tldrlab.experiments.dendrites import (
    EVENTS_FILE,
    TRACKER_FILE,
    DendriteConfig,
    DendriteHooks,
    dendrite_count,
    pai_parameter_count,
    perforated_modules,
)
from tldrlab.runs import start_run
from tldrlab.runs.atomic import read_jsonl
from tldrlab.train.config import TrainConfig
from tldrlab.train.loop import train

SETTINGS = DendriteConfig(module_names=["LlamaMLP"], switch_every=2, max_dendrites=1, graphs_every_eval=False)


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=40,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=32,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(config)


class EchoTask:
    """Token sequences that repeat their first half: a causal LM learns the second half in a few steps."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        half = torch.randint(2, 40, (32, 5), generator=generator)
        self.x = torch.cat([half, half], dim=1)

    def train_dataset(self) -> list[int]:
        return list(range(32))

    def collate(self, items: list[int]) -> dict[str, torch.Tensor]:
        return {"input_ids": self.x[items]}

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        return model(input_ids=batch["input_ids"], labels=batch["input_ids"]).loss, batch["input_ids"].numel()

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        return {"eval_loss": float(model(input_ids=self.x[:8], labels=self.x[:8]).loss)}


def loop(max_steps: int) -> TrainConfig:
    return TrainConfig(
        max_steps=max_steps,
        batch_size=8,
        eval_every=1,
        checkpoint_every=1,
        keep_checkpoints=1,
        lr=3e-3,
        lr_schedule="constant",
        save_best=False,
        progress=False,
        plot=False,
    )


def fresh(run, metrics: list | None = None) -> tuple[DendriteHooks, torch.nn.Module]:
    def sink(step: int, values: dict[str, float]) -> None:
        run.log_metrics(step, **values)
        if metrics is not None:
            metrics.append((step, values))

    hooks = DendriteHooks(SETTINGS, save_dir=run.dir / "pai", log=run.log, metrics_sink=sink)
    return hooks, hooks.perforate(tiny_llama())


def test_restructure_then_resume_matches_an_uninterrupted_run() -> None:
    with start_run("test", {}) as straight:
        metrics: list = []
        hooks, model = fresh(straight, metrics)
        assert len(perforated_modules(model)) == 2  # each layer's MLP block
        result = train(model, EchoTask(), loop(8), straight, hooks=hooks)
    # dendrites added at the 2nd evaluation; at the 4th the tracker reloads its best network and ends training
    assert [e["step"] for e in hooks.events if e["restructured"]] == [2, 4]
    assert hooks.completed and result.steps == 4
    expected_losses = [e["metric"] for e in hooks.events[1:]]
    expected_params = pai_parameter_count(result.model)
    # every evaluation reports the PAI metrics (restructured, active dendrites, parameters, efficiency)
    assert [s for s, _ in metrics] == [1, 2, 3, 4]
    step2 = dict(metrics)[2]
    assert step2["pai/restructured"] == 1.0 and step2["pai/active_dendrites"] == 1.0
    assert step2["pai/total_params"] == float(expected_params)
    assert step2["pai/param_efficiency"] == 1.0 / expected_params
    logged = [r for r in read_jsonl(straight.dir / "metrics.jsonl") if "pai/total_params" in r]
    assert len(logged) == 4
    assert not list((straight.dir / "pai" / "pai").glob("*.png"))  # graphs off during training
    hooks.draw_graphs()
    assert list((straight.dir / "pai" / "pai").glob("*.png"))

    with start_run("test", {}) as run:
        hooks, model = fresh(run)
        first = train(
            model, EchoTask(), loop(3), run, hooks=hooks
        )  # stopped one evaluation after the restructure
        assert dendrite_count() == 1 and not hooks.completed
        newest = sorted(run.checkpoints_dir.glob("step-*"))[-1]
        assert (newest / TRACKER_FILE).is_file()
        saved = json.loads((newest / EVENTS_FILE).read_text())
        assert saved["events"][2]["restructured"] and not saved["completed"]
        # a new process: a freshly perforated model without dendrites, new hooks, then the loop resumes
        hooks, model = fresh(run)
        assert dendrite_count() == 0 and pai_parameter_count(model) < expected_params
        second = train(model, EchoTask(), loop(8), run, hooks=hooks)
    assert first.steps == 3 and second.resumed_from == 3 and second.steps == 4
    assert dendrite_count() == 1 and hooks.completed
    assert pai_parameter_count(second.model) == expected_params
    resumed_losses = [e["metric"] for e in hooks.events[1:]]
    assert resumed_losses == expected_losses  # the events before the stop came back from the checkpoint
    assert torch.allclose(
        torch.cat([p.detach().flatten() for p in second.model.parameters()]),
        torch.cat([p.detach().flatten() for p in result.model.parameters()]),
    )
