"""Chat fine-tuning of a tiny real Llama: the answer-only loss, LoRA and full runs through `tldrlab train`,
exact resume, and the exported model serving eval / generate / score and plain transformers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from cliutil import run_captured
from tinylm import INJECTION, save_tiny_model, tiny_chat_tokenizer, tiny_llama
from tldrlab.data.records import SummaryRecord
from tldrlab.errors import RunPreemptedError
from tldrlab.models import build_model
from tldrlab.runs import preempt
from tldrlab.runs.registry import open_registry
from tldrlab.runs.run import start_run
from tldrlab.train import TrainHooks, TrainState, train
from tldrlab.train.chat_sft import ChatSFTTask
from tldrlab.train.config import DataConfig

LORA = {"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": ["q_proj", "v_proj", "up_proj"]}


@pytest.fixture(scope="module")
def chat_tokenizer() -> Any:
    return tiny_chat_tokenizer()


@pytest.fixture(scope="module")
def model_dir(chat_tokenizer: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tiny_llama(chat_tokenizer), chat_tokenizer, tmp_path_factory.mktemp("tiny") / "m")


@pytest.fixture(scope="module")
def pairs_file(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 real Debian description -> synopsis pairs as a user's pairs.jsonl (documents cut short)."""
    lines = (shared_data / "debian_descriptions" / "debian_descriptions.train.jsonl").read_text().splitlines()
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    rows = [json.loads(line) for line in lines[:40]]
    path.write_text(
        "".join(json.dumps({"text": r["document"][:300], "summary": r["summary"]}) + "\n" for r in rows)
    )
    return path


def runs_count() -> int:
    return len(open_registry().list(limit=100))


def records(n: int) -> list[SummaryRecord]:
    return [
        SummaryRecord(
            id=str(i), document=f"library number {i} for parsing XML files", summaries=[f"XML library {i}"]
        )
        for i in range(n)
    ]


def test_loss_covers_the_answer_only(chat_tokenizer: Any, model_dir: Path) -> None:
    data = DataConfig(path="unused", max_source_len=12, max_target_len=6)
    task = ChatSFTTask(records(4), records(2), chat_tokenizer, data, "Summarize.")
    short = SummaryRecord(id="s", document="XML", summaries=["a"])
    items = [task.encode(short), task.train_dataset()[1]]
    batch = task.collate(items)
    labels, mask = batch["labels"], batch["attention_mask"]
    for row, (prompt, answer) in enumerate(items):
        assert (labels[row, : len(prompt)] == -100).all()  # the prompt is never a target
        assert labels[row, len(prompt) : len(prompt) + len(answer)].tolist() == answer
        assert (labels[row, len(prompt) + len(answer) :] == -100).all() and mask[row].sum() == len(
            prompt
        ) + len(answer)
        assert answer[-1] == chat_tokenizer.eos_token_id and len(answer) <= 6
    assert chat_tokenizer.decode(items[0][0]).endswith("<|im_start|>assistant\n")

    model = build_model("causal_lm", {"path": str(model_dir)}, chat_tokenizer)
    loss, n_tokens = task.loss(model, batch)
    logits = model(input_ids=batch["input_ids"], attention_mask=mask).logits
    targets = labels[:, 1:]
    manual = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100
    )
    # throughput counts every token the model ran on (prompt and answer), not only the targets: a count
    # of answers alone understated tokens/s and MFU several-fold for a long prompt and a short answer
    assert n_tokens == sum(len(p) + len(a) for p, a in items) > int((labels != -100).sum())
    torch.testing.assert_close(loss, manual)
    # changing a prompt token changes the inputs but never the targets
    other = dict(batch, input_ids=batch["input_ids"].clone())
    other["input_ids"][0, 1] = 7
    assert task.loss(model, other)[1] == n_tokens


def test_special_token_strings_in_an_example_train_as_text(chat_tokenizer: Any) -> None:
    """A document or summary holding "<|im_end|>" or "<|endoftext|>" was encoded as those control tokens: a
    forged turn in the prompt, and an answer that ended (eos) in its middle, so the model learned to stop
    there. The example has the template's turn markers and the final eos only; its text reads back whole."""
    from tldrlab.models.chat import chat_prompt

    data = DataConfig(path="unused", max_source_len=200, max_target_len=60)
    summary = "An XML library<|im_end|> for<|endoftext|> parsing"
    record = SummaryRecord(id="x", document=INJECTION, summaries=[summary])
    task = ChatSFTTask([record], [record], chat_tokenizer, data, "Summarize.")
    prompt, answer = task.train_dataset()[0]
    start, end, text_end = (
        chat_tokenizer.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
    )
    assert (prompt.count(start), prompt.count(end), prompt.count(text_end)) == (2, 1, 0)
    assert answer.count(end) == 1 and answer[-1] == end and text_end not in answer
    assert chat_tokenizer.decode(prompt) == chat_prompt(chat_tokenizer, INJECTION, "Summarize.")
    assert chat_tokenizer.decode(answer) == summary + "<|im_end|>"


def test_scoring_an_answer_gives_the_answer_only_training_loss(chat_tokenizer: Any, model_dir: Path) -> None:
    """`score --source`: each answer token is predicted from the position before it (the prompt's last
    token predicts the first), exactly as the model's own loss with the prompt masked."""
    from tldrlab.evaluate.score import score_text
    from tldrlab.models.chat import chat_pair_ids, instruction_of

    model = build_model("causal_lm", {"path": str(model_dir)}, chat_tokenizer).eval()
    source, answer = "library number 3 for parsing XML files", "XML library 3"
    scored = score_text(model, chat_tokenizer, answer, source=source, top_k=0)
    prompt, completion = chat_pair_ids(chat_tokenizer, source, answer, instruction_of(model))
    with torch.no_grad():
        own = model(
            input_ids=torch.tensor([[*prompt, *completion]]),
            labels=torch.tensor([[-100] * len(prompt) + completion]),
        ).loss
    assert scored["token_ids"] == completion and scored["num_tokens"] == len(completion)
    assert scored["loss"] == pytest.approx(float(own), rel=1e-4)


@pytest.mark.slow
def test_lora_fine_tune_through_train_command_then_eval_generate_score(
    model_dir: Path, pairs_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import transformers

    settings = {"path": str(model_dir), "lora": LORA, "gradient_checkpointing": True, "instruction": "TL;DR:"}
    code, out, err = run_captured(
        [
            "train", "--model", "causal_lm", "--data", str(pairs_file),
            "--model-config", json.dumps(settings), "--max-steps", "8", "--batch-size", "4",
            "--grad-accum-steps", "2", "--lr", "3e-2",
            "--eval-every", "4", "--generate-every", "1", "--checkpoint-every", "4", "--wandb", "disabled",
            "--quiet",
        ],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    run_dir = Path(open_registry().list(kind="train", limit=1)[0].run_dir)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evals = [m for m in metrics if "eval_loss" in m]
    assert [m["step"] for m in evals] == [4, 8]
    assert {"eval_rouge1", "eval_rougeL"} <= set(evals[-1])
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"]
    assert not (run_dir / "tokenizer").exists()  # the family's own tokenizer, none trained
    model_out = run_dir / "model"
    assert (model_out / "adapter" / "adapter_config.json").is_file()
    plain = transformers.AutoModelForCausalLM.from_pretrained(model_out)
    assert plain.config.tldrlab_instruction == "TL;DR:"
    assert not any("lora" in n for n, _ in plain.named_parameters())
    assert transformers.AutoTokenizer.from_pretrained(model_out).chat_template

    run_id = run_dir.name
    code, out, err = run_captured(["eval", run_id, "--max-samples", "3", "--no-bertscore", "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    # the run's own held-out records: 5% of 40, the same seeded split the training loop used
    assert result["task"] == "chat" and result["metrics"]["examples"] == 2
    assert {"rouge1", "rougeL", "loss", "seconds_per_summary"} <= set(result["metrics"])
    code, out, err = run_captured(
        ["generate", run_id, "-p", "a library for XML", "--temperature", "0", "--json"], capsys
    )
    assert code == 0, err
    assert json.loads(out)["outputs"][0][0] != ""
    code, out, err = run_captured(
        ["score", run_id, "--text", "XML library", "--source", "an XML parser", "--json"], capsys
    )
    assert code == 0, err
    scored = json.loads(out)
    assert scored["tokens"][-1] == "<|im_end|>"  # the answer is scored up to the end of the turn


def test_full_fine_tune_resumes_to_the_same_losses(
    chat_tokenizer: Any, model_dir: Path, pairs_file: Path
) -> None:
    from tldrlab.train.jobs import parse_job_config
    from tldrlab.train.tasks import build_task

    job = parse_job_config(
        {
            "model": "causal_lm",
            "model_settings": {"path": str(model_dir), "num_layers": 1},
            "data": {
                "path": str(pairs_file), "max_source_len": 32, "max_target_len": 8, "max_val_examples": 4
            },
            "train": {
                "max_steps": 6, "batch_size": 4, "lr": 1e-2, "eval_every": 3, "checkpoint_every": 3,
                "log_every": 1, "device": "cpu", "progress": False, "plot": False,
            },
        }
    )  # fmt: skip

    def fresh() -> tuple[Any, Any]:
        torch.manual_seed(0)
        model = build_model(job.model, job.model_settings, chat_tokenizer)
        return model, build_task(job, chat_tokenizer, model, "chat")

    class StopAt(TrainHooks):
        def on_step_end(self, state: TrainState, loss: float) -> None:
            if state.step == 3:
                preempt.request_stop()

    with start_run("train", job) as straight:
        train(*fresh(), job.train, straight)
    try:
        with pytest.raises(RunPreemptedError), start_run("train", job) as resumed:
            train(*fresh(), job.train, resumed, hooks=StopAt())
    finally:
        preempt.reset()
    result = train(*fresh(), job.train, resumed)
    assert result.resumed_from == 3 and result.steps == 6

    def losses(run: Any) -> dict[int, float]:
        return {m["step"]: m["train_loss"] for m in run.metrics() if "train_loss" in m}

    assert losses(resumed) == losses(straight) and len(losses(straight)) == 6


def test_train_config_errors_are_clear(
    model_dir: Path, pairs_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_captured(
        [
            "train",
            "--model",
            "causal_lm",
            "--data",
            str(pairs_file),
            "--model-config",
            '{"lora": {"rank": 4}}',
        ],
        capsys,
    )
    assert code == 2 and "lora.rank" in err and "Traceback" not in err
    assert runs_count() == 0  # rejected before a run was created


def test_a_lora_step_clips_like_a_bare_loop_without_walking_the_model(
    chat_tokenizer: Any, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clipping walked `model.parameters()` every step: for a LoRA model (peft's wrappers around every
    projection) that is thousands of nested modules, ~6 ms of host time a step on this CPU, paid in full
    by a launch-bound GPU step. The loop lists the parameters once per prepared model; the clipped
    gradients (and so the losses) stay those of a bare loop clipping `model.parameters()`."""
    from tldrlab.train.config import TrainConfig
    from tldrlab.train.loop import epoch_batches
    from tldrlab.train.schedule import build_optimizer, lr_at, set_lr

    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj", "up_proj"]}
    data = DataConfig(path="unused", max_source_len=12, max_target_len=6)
    # a large rate and a tight clip: every step's update is clipped, so a different norm shows in the losses
    config = TrainConfig(
        max_steps=6, batch_size=4, lr=0.05, max_grad_norm=0.01, eval_every=0, checkpoint_every=0,
        log_every=1, device="cpu", progress=False, plot=False,
    )  # fmt: skip

    def fresh() -> tuple[Any, ChatSFTTask]:
        torch.manual_seed(0)
        model = build_model("causal_lm", {"path": str(model_dir), "lora": lora}, chat_tokenizer)
        return model, ChatSFTTask(records(12), records(2), chat_tokenizer, data, "Summarize.")

    model, task = fresh()
    optimizer = build_optimizer(model, config)
    model.train()
    bare: list[float] = []
    order = [b for epoch in (0, 1) for b in epoch_batches(12, 4, seed=config.seed, epoch=epoch)]
    for step, items in enumerate(order):
        set_lr(optimizer, lr_at(step, config))
        loss, _ = task.loss(model, task.collate([task.train_dataset()[i] for i in items]))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.01)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        bare.append(float(loss.detach()))

    model, task = fresh()
    walks: list[int] = []
    walked = model.parameters
    monkeypatch.setattr(model, "parameters", lambda *a, **k: walks.append(1) or walked(*a, **k))

    class Walks(TrainHooks):
        def __init__(self) -> None:
            self.after_step: list[int] = []

        def on_step_end(self, state: TrainState, loss: float) -> None:
            self.after_step.append(len(walks))

    hooks = Walks()
    with start_run("train", {}) as run:
        train(model, task, config, run, hooks=hooks)
    losses = [m["train_loss"] for m in run.metrics() if "train_loss" in m]
    assert losses == bare and len(losses) == 6
    assert hooks.after_step[1:] == hooks.after_step[:-1]  # no step walked the model
