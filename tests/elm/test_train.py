"""ELM training through tldrlab's loop: the loss goes down, resume is exact, generate and evaluate work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cliutil import run_cli
from tldrlab.elm.prepare import read_synthesis
from tldrlab.elm.train import ElmTrainConfig, run_elm_training
from tldrlab.errors import InvalidConfigError, InvalidInputError, RunPreemptedError
from tldrlab.runs import create_run, execute_run, open_registry, preempt, start_run
from tldrlab.train.loop import TrainHooks, TrainState


def tiny_config(data: Path, tokenizer: Path, max_steps: int = 8, **train: object) -> ElmTrainConfig:
    return ElmTrainConfig.model_validate(
        {
            "data": str(data),
            "tokenizer": str(tokenizer),
            "model": {"hidden_dim": 32, "num_prefix_tokens": 2, "lm_settings": {"dropout": 0.0}},
            "max_steps": max_steps,
            "eval_interval": 4,
            "eval_samples": 4,
            "max_target_len": 16,
            "use_bertscore": False,
            "train": {
                "batch_size": 8, "lr": 3e-3, "best_metric": "eval_loss", "best_mode": "min",
                "checkpoint_every": 4, "progress": False, "plot": False, **train,
            },
        }
    )  # fmt: skip


def test_training_lowers_the_loss_and_saves_a_loadable_model(elm_data: Path, elm_tokenizer: Path) -> None:
    from tldrlab.elm.model import load_elm

    config = tiny_config(elm_data, elm_tokenizer, max_steps=8)
    with start_run("elm_train", config) as run:
        result = run_elm_training(run, config)
    lines = [json.loads(x) for x in (run.dir / "metrics.jsonl").read_text().splitlines()]
    evals = [x["eval_loss"] for x in lines if "eval_loss" in x]
    assert len(evals) == 2 and evals[-1] < evals[0]
    assert result.steps == 8
    assert {"rouge1", "length_ratio", "empty_prediction_rate", "eval_drift_similarity"} <= set(result.metrics)
    model, _ = load_elm(run.id)
    assert (run.dir / "model" / "adapter.safetensors").is_file() and (
        run.dir / "model" / "lm" / "config.json"
    ).is_file()
    assert model.config.embedding_dim == 384


def train_losses(run_dir: Path) -> list[float]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [x["train_loss"] for x in lines if "train_loss" in x]


class StopAfter(TrainHooks):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, state: TrainState, loss: float) -> None:
        if state.step == self.step:
            preempt.request_stop()


def test_resume_continues_to_the_same_losses(elm_data: Path, elm_tokenizer: Path) -> None:
    config = tiny_config(elm_data, elm_tokenizer, max_steps=6, log_every=1, checkpoint_every=3)
    with start_run("elm_train", config) as straight:
        run_elm_training(straight, config)
    record = create_run("elm_train", config)
    with pytest.raises(RunPreemptedError), execute_run(record.id) as run:
        run_elm_training(run, config, hooks=StopAfter(3))
    preempt.reset()
    assert open_registry().get(record.id).status.value == "queued"
    # the resumed half runs as a queued job would (tldrlab.launch.execute: run kind elm_train)
    from tldrlab.launch import execute

    execute(record.id)
    run_dir = Path(open_registry().get(record.id).run_dir)
    assert open_registry().get(record.id).status.value == "completed"
    log = (run_dir / "log.jsonl").read_text()
    assert "resumed from checkpoint" in log
    assert train_losses(run_dir) == train_losses(straight.dir)


def test_cli_train_generate_evaluate(
    elm_data: Path, elm_tokenizer: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_cli([
        "elm", "train", "--data", str(elm_data), "--tokenizer", str(elm_tokenizer), "--max-steps", "4",
        "--batch-size", "8", "--hidden-dim", "32", "--prefix-tokens", "2", "--eval-samples", "4",
        "--eval-interval", "4", "--lr", "3e-3", "--quiet",
    ])  # fmt: skip
    assert code == 0
    run_id = open_registry().list()[0].id
    out = tmp_path / "preds.jsonl"
    assert (
        run_cli(
            [
                "elm",
                "generate",
                "--model",
                run_id,
                "--data",
                str(elm_data),
                "--split",
                "test",
                "--output",
                str(out),
                "--max-new-tokens",
                "8",
            ]
        )
        == 0
    )
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 8 and all("prediction" in r and r["reference"] for r in rows)
    metrics_file = tmp_path / "metrics.json"
    assert run_cli(["elm", "evaluate", "--predictions", str(out), "--output", str(metrics_file)]) == 0
    metrics = json.loads(metrics_file.read_text())
    for key in (
        "bertscore_precision",
        "bertscore_recall",
        "bertscore_f1",
        "bertscore_composite",
        "rouge1",
        "length_ratio",
        "empty_prediction_rate",
        "avg_unique_token_ratio",
        "distinct_prediction_rate",
    ):
        assert key in metrics
    assert 0.0 <= metrics["bertscore_composite"] <= 1.0
    capsys.readouterr()
    assert run_cli(["elm", "train", "--resume", run_id]) != 0
    assert "already completed" in capsys.readouterr().err
    assert (
        run_cli(
            [
                "elm",
                "generate",
                "--model",
                run_id,
                "--text",
                "A tool to compress files quickly.",
                "--max-new-tokens",
                "6",
            ]
        )
        == 0
    )


def test_bf16_and_gradient_checkpointing_train(elm_data: Path, elm_tokenizer: Path) -> None:
    import math

    config = tiny_config(elm_data, elm_tokenizer, max_steps=2, precision="bf16")
    config.model.gradient_checkpointing = True
    with start_run("elm_train", config) as run:
        result = run_elm_training(run, config)
    assert result.steps == 2 and math.isfinite(result.metrics["eval_loss"])
    manifest = json.loads((run.dir / "manifest.json").read_text())
    assert manifest["precision"] == "bf16"


def test_cli_bad_inputs_name_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["elm", "train", "--data", str(tmp_path / "missing")]) != 0
    assert "data directory not found" in capsys.readouterr().err
    assert run_cli(["elm", "train"]) != 0
    assert "data: Field required" in capsys.readouterr().err
    assert run_cli(["elm", "train", "--data", str(tmp_path), "--drift-target-similarity", "3"]) != 0
    assert "text_drift_target_similarity" in capsys.readouterr().err
    bad = tmp_path / "preds.jsonl"
    bad.write_text('{"prediction": "a"}\n{"oops": 1}\n')
    assert run_cli(["elm", "evaluate", "--predictions", str(bad)]) != 0
    assert "preds.jsonl:2: no text field (prediction)" in capsys.readouterr().err
    assert run_cli(["elm", "generate", "--model", str(tmp_path)]) != 0
    assert "exactly one of --data" in capsys.readouterr().err
    # a blank document was summarised like any other; a split not among the three was "not found: prepare
    # the data first" (it was prepared)
    assert run_cli(["elm", "generate", "--model", str(tmp_path), "--text", "a", "--text", " "]) == 2
    assert "document 2 of --text is blank" in capsys.readouterr().err
    split = ["elm", "generate", "--model", str(tmp_path), "--data", str(tmp_path), "--split", "dev"]
    assert run_cli(split) == 2
    assert "'dev' is not one of 'train', 'val', 'test'" in capsys.readouterr().err
    binary = tmp_path / "preds.bin"
    binary.write_bytes(bytes(range(128, 256)) * 4)  # was a UnicodeDecodeError traceback (exit 1)
    assert run_cli(["elm", "evaluate", "--predictions", str(binary)]) == 2
    assert "preds.bin: not UTF-8 JSON lines" in capsys.readouterr().err
    with pytest.raises(InvalidInputError, match="not UTF-8 JSON lines"):
        read_synthesis(binary)
    empty = tmp_path / "none.jsonl"  # refused inside the run ("nothing to evaluate"), left failed
    empty.write_text("")
    assert run_cli(["elm", "evaluate", "--predictions", str(empty)]) == 2
    assert f"{empty} holds no predictions: nothing to evaluate" in capsys.readouterr().err
    assert len(open_registry().list()) == 0  # nothing was created for bad requests


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--no-use-bertscore"], "train.best_metric: bertscore_f1 needs use_bertscore"),
        (["--eval-samples", "0"], "eval_samples is 0"),
        (["--eval-samples", "0", "--train.best-metric", "rougeL"], "rougeL is computed from generated"),
        # the loop's own length and interval, which the run replaced with max_steps / epochs, eval_interval
        # both as flags: a usage error naming them (a config file's train section: the validator below)
        (["--max-steps", "2", "--train.max-steps", "3"], "--max-steps 2 and --train.max-steps 3 set the"),
        (["--train.eval-every", "0"], "takes the loop's eval_every from eval_interval"),
    ],
)
def test_settings_the_run_would_not_honour_are_refused_before_training(
    args: list[str], message: str, elm_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `elm train --no-use-bertscore` kept the default best_metric bertscore_f1: it trained up to its first
    # evaluation, then failed there ("not among the evaluation metrics"), leaving a failed run; the loop's
    # own length and evaluation interval were silently replaced
    assert run_cli(["elm", "train", "--data", str(elm_data), *args]) == 2
    assert message in capsys.readouterr().err
    assert open_registry().list(kind="elm_train") == []
    if "best_metric" in message or "eval_samples" in message:
        losses = ["--train.best-metric", "eval_loss", "--train.best-mode", "min", "--print-config"]
        assert run_cli(["elm", "train", "--data", str(elm_data), *args[:2], *losses]) == 0


def test_the_loops_own_length_and_interval_are_honoured(
    elm_data: Path, elm_tokenizer: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # --train.max-steps 3 (or a config file's `train: {max_steps: 3}`) was silently replaced by two epochs
    args = ["elm", "train", "--data", str(elm_data), "--tokenizer", str(elm_tokenizer), "--json"]
    tiny = ["--prefix-tokens", "2", "--eval-samples", "0", "--train.best-metric", "eval_loss"]
    loop = ["--train.max-steps", "3", "--train.eval-every", "3", "--train.best-mode", "min"]
    assert run_cli([*args, *tiny, *loop, "--train.no-progress", "--wandb", "disabled"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 3
    (record,) = open_registry().list(kind="elm_train")
    assert (record.config["max_steps"], record.config["eval_interval"]) == (3, 3)


def test_a_loop_length_equal_to_its_default_is_honoured_and_a_recorded_config_keeps_what_governed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # --train.max-steps 1000 (TrainConfig's default) was taken for "not given": the run trained two epochs
    import yaml

    from tldrlab.kinds import validate_config

    args = ["elm", "train", "--data", str(tmp_path), "--print-config"]
    assert run_cli([*args, "--train.max-steps", "1000", "--train.eval-every", "100"]) == 0
    given = yaml.safe_load(capsys.readouterr().out)
    assert (given["max_steps"], given["eval_interval"]) == (1000, 100)
    assert run_cli(args) == 0
    default = yaml.safe_load(capsys.readouterr().out)
    assert (default["max_steps"], default["eval_interval"]) == (None, None)
    # a recorded config sets every field (the loop's too): read again (--resume, the worker, a sweep's base)
    # it keeps what governed the run, epochs where no max_steps was given
    for recorded in (given, default):
        config = validate_config("elm_train", recorded)
        assert isinstance(config, ElmTrainConfig)
        assert (config.max_steps, config.eval_interval) == (recorded["max_steps"], recorded["eval_interval"])
    # a file's train section that contradicts the top-level field is refused, the file not being a record
    with pytest.raises(InvalidConfigError, match="takes the loop's max_steps from max_steps"):
        contradicting = {**default, "max_steps": 2, "train": {**default["train"], "max_steps": 3}}
        validate_config("elm_train", contradicting)


def test_resume_refuses_a_data_directory_prepared_again_meanwhile(
    elm_data: Path, elm_tokenizer: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `elm prepare --out` the same directory rewrites it: the resumed run trained on the new data silently
    import shutil

    data = tmp_path / "elm"
    shutil.copytree(elm_data, data)
    config = tiny_config(data, elm_tokenizer, max_steps=6, checkpoint_every=3)
    record = create_run("elm_train", config)
    with pytest.raises(RunPreemptedError), execute_run(record.id) as run:
        run_elm_training(run, config, hooks=StopAfter(3))
    preempt.reset()
    train_file = data / "synthesis" / "train_synthesis.jsonl"
    lines = train_file.read_text().splitlines()
    train_file.write_text("\n".join(lines[: len(lines) // 2]) + "\n")
    waiting = open_registry().get(record.id)
    assert run_cli(["elm", "train", "--resume", record.id]) == 4
    assert open_registry().get(record.id) == waiting  # refused before the run was touched (not failed)
    assert f"the data changed since run {record.id} started ({train_file})" in capsys.readouterr().err


def test_cli_refuses_an_unprepared_data_directory_without_leaving_a_run(tmp_path: Path) -> None:
    """A directory `elm prepare` did not write: refused before a run exists (it was created, then failed)."""
    assert run_cli(["elm", "train", "--data", str(tmp_path), "--max-steps", "1"]) != 0
    assert open_registry().list() == []


EMBEDDINGS_SAID = "embedding_dim comes from the prepared embeddings {embeddings}, which have 4096 dimensions"
TOKENIZER_SAID = "vocab_size comes from the tokenizer {tokenizer}, which has 12,005 tokens"


@pytest.mark.parametrize(
    ("dim", "characters", "field", "count", "said"),
    [
        (4096, 0, "model.embedding_dim", "89,564 parameters (8.96e+04)", EMBEDDINGS_SAID),
        (4, 12_000, "vocab_size", "97,576 parameters (9.76e+04)", TOKENIZER_SAID),
    ],
    ids=["embedding_dim", "vocab_size"],
)
def test_a_model_its_data_makes_bigger_than_the_budget_fails_the_run_before_it_is_built(
    dim: int,
    characters: int,
    field: str,
    count: str,
    said: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """lm=scratch: the budget was checked at submit with the configured embedding_dim (384) and vocab_size
    (4000 unless set); prepared embeddings of 4096 dimensions, or a tokenizer directory of 12,005 tokens,
    built the model the run read them from, past the limit, unchecked (the run trains a BPE tokenizer of 262
    tokens on the one target here). The run now counts again with the
    data's dimensions and fails before building the model, naming the field and where it came from."""
    import torch

    from cliutil import run_captured
    from tldrlab.config import get_settings
    from tldrlab.elm.prepare import embeddings_path, write_split
    from tldrlab.kinds import validate_config
    from tldrlab.launch import execute
    from tldrlab.tokenizers.train import train_tokenizer

    monkeypatch.setenv("TLDRLAB_MAX_MODEL_PARAMETERS", "50000")
    get_settings.cache_clear()
    data = tmp_path / "data"
    record = {"task_type": "summary", "embedding_index": 0, "target_text": "A tool to read mail."}
    record["input_prompt_template"] = "Summarize: {text}"
    for split in ("train", "val"):
        write_split(data, split, [record], torch.ones(1, dim))
    raw: dict[str, object] = {
        "data": str(data),
        "model": {"lm_settings": {"n_embd": 8, "n_layer": 1, "n_head": 2, "n_positions": 64}, "hidden_dim": 4,
                  "num_prefix_tokens": 1},
        "max_steps": 2,
        "use_bertscore": False,
        "train": {"best_metric": "eval_loss", "best_mode": "min", "progress": False},
        "wandb": "disabled",
    }  # fmt: skip
    tokenizer = tmp_path / "tokenizer"
    if characters:  # a char tokenizer of that many characters (each line five times: none held out)
        text = "".join(chr(0x4E00 + i) for i in range(characters))
        corpus = tmp_path / "corpus.txt"
        corpus.write_text("".join(f"{text[i : i + 100]}\n" * 5 for i in range(0, characters, 100)))
        train_tokenizer("char", [corpus], characters + 100, tokenizer)
        raw["tokenizer"] = str(tokenizer)
    else:
        raw["vocab_size"] = 300
    config = validate_config("elm_train", raw)  # within the budget as counted at submit
    problem = f"{count}, above the limit of 50,000 (TLDRLAB_MAX_MODEL_PARAMETERS)"
    said = said.format(embeddings=embeddings_path(data, "train"), tokenizer=tokenizer)
    expected = f"{field}: {problem} ({said})"

    created = create_run("elm_train", config)
    with pytest.raises(InvalidConfigError) as refused:
        execute(created.id)
    assert refused.value.message == expected
    assert refused.value.details["errors"] == [{"loc": field.split("."), "msg": f"{problem} ({said})"}]
    failed = open_registry().get(created.id)
    assert (failed.status.value, failed.error_code) == ("failed", "invalid_config")
    logged = (Path(failed.run_dir) / "log.jsonl").read_text()
    assert "ELM: " not in logged and not (Path(failed.run_dir) / "checkpoints").exists()

    path = tmp_path / "elm.json"
    path.write_text(json.dumps(raw))
    code, out, err = run_captured(["elm", "train", "--config", str(path), "--quiet"], capsys)
    assert (code, out, err.strip()) == (2, "", f"error [invalid_config] {expected}")


def test_an_adapter_its_data_makes_bigger_than_the_budget_on_a_pretrained_lm_fails_the_run_before_it_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pretrained LM: the submit counted the adapter, drift head and LoRA adapters with the configured
    embedding_dim (384) and the width of the LM's config.json; prepared embeddings of 4096 dimensions built an
    adapter past the limit, unchecked. The run now counts again with the loaded LM's width and the data's
    embedding_dim before the adapter is allocated (the LM's own parameters are not counted)."""
    import torch

    from tinylm import save_tiny_model, tiny_chat_tokenizer, tiny_llama
    from tldrlab.config import get_settings
    from tldrlab.elm.prepare import embeddings_path, write_split
    from tldrlab.kinds import validate_config
    from tldrlab.launch import check_inputs, execute
    from tldrlab.models.causal_lm import LoraSettings, apply_lora, lora_parameter_count

    tokenizer = tiny_chat_tokenizer()
    llama = tiny_llama(tokenizer)  # 32 wide, 2 layers
    lm = save_tiny_model(llama, tokenizer, tmp_path / "llama")
    # the count is the LoRA adapters peft allocates: r x (in + out) of q/k/v/o and gate/up/down, 2 layers
    lora = LoraSettings(r=2, alpha=4)
    counted = lora_parameter_count(llama, lora)
    adapted = apply_lora(llama, lora)
    assert counted == 2048 == sum(p.numel() for n, p in adapted.named_parameters() if "lora_" in n)

    monkeypatch.setenv("TLDRLAB_MAX_MODEL_PARAMETERS", "50000")
    get_settings.cache_clear()
    data = tmp_path / "data"
    record = {"task_type": "summary", "embedding_index": 0, "target_text": "A tool to read mail."}
    record["input_prompt_template"] = "Summarize: {text}"
    for split in ("train", "val"):
        write_split(data, split, [record], torch.ones(1, 4096))
    raw = {
        "data": str(data),
        "model": {"lm": str(lm), "freeze_lm": True, "lora_rank": 2, "lora_alpha": 4, "hidden_dim": 4,
                  "num_prefix_tokens": 1},
        "max_steps": 2,
        "use_bertscore": False,
        "train": {"best_metric": "eval_loss", "best_mode": "min", "progress": False},
        "wandb": "disabled",
    }  # fmt: skip
    config = validate_config("elm_train", raw)
    check_inputs("elm_train", config)  # within the budget as counted at submit: 26,692 + 2,048 LoRA
    # 4096-d: direct 131,104 + MLP 16,548 + drift head 135,168 + LoRA 2,048
    expected = (
        "model.embedding_dim: 284,868 parameters (2.85e+05), above the limit of 50,000 "
        "(TLDRLAB_MAX_MODEL_PARAMETERS) (embedding_dim comes from the prepared embeddings "
        f"{embeddings_path(data, 'train')}, which have 4096 dimensions)"
    )
    created = create_run("elm_train", config)
    with pytest.raises(InvalidConfigError) as refused:
        execute(created.id)
    assert refused.value.message == expected
    failed = open_registry().get(created.id)
    assert (failed.status.value, failed.error_code) == ("failed", "invalid_config")
    assert "ELM: " not in (Path(failed.run_dir) / "log.jsonl").read_text()


def test_an_adapter_over_the_budget_by_its_own_hidden_dim_at_run_time_is_refused_naming_hidden_dim(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run-time count named model.embedding_dim and model.lm when neither had grown past what the submit
    counted, though what made the adapter too big was its own hidden_dim (an elm_optimize trial's searched
    width, which its submit counted only as the largest of the search). It now names the adapter's settings
    with their values; a grown data dimension is still named as before."""
    from tinylm import save_tiny_model, tiny_chat_tokenizer, tiny_llama
    from tldrlab.config import get_settings
    from tldrlab.elm.train import check_adapter_budget_as_read

    tokenizer = tiny_chat_tokenizer()
    llama = tiny_llama(tokenizer)  # 32 wide, as its saved config.json says
    lm = save_tiny_model(llama, tokenizer, tmp_path / "llama")
    monkeypatch.setenv("TLDRLAB_MAX_MODEL_PARAMETERS", "1000000")
    get_settings.cache_clear()
    config = ElmTrainConfig.model_validate(
        {"data": str(tmp_path / "data"), "model": {"lm": str(lm), "num_prefix_tokens": 1, "hidden_dim": 4096}}
    )
    # 384-d embeddings as configured, 1 prefix vector of 32: 25,024 + 417 x 4096
    with pytest.raises(InvalidConfigError) as refused:
        check_adapter_budget_as_read(config, config.model, llama)
    assert [error["loc"] for error in refused.value.details["errors"]] == [
        ["model", "hidden_dim"],
        ["model", "num_prefix_tokens"],
    ]
    message = refused.value.message
    assert message.startswith(
        "model.hidden_dim: 1,733,056 parameters (1.73e+06), above the limit of 1,000,000 "
        "(TLDRLAB_MAX_MODEL_PARAMETERS) (hidden_dim 4096: the adapter MLP's width; the adapter and drift "
        f"head on the LM {lm}, which is 32 wide, from 384-d embeddings; the LM's own parameters are not "
        "counted)"
    ), message
    assert "num_prefix_tokens 1: prefix vectors per document" in message
    assert "embedding_dim" not in message and "model.lm" not in message
    # the data's embeddings grew past the configured 384: that is what is named, as before
    small = config.model.model_copy(update={"hidden_dim": 4, "embedding_dim": 40_000})
    with pytest.raises(InvalidConfigError) as refused:
        check_adapter_budget_as_read(config, small, llama)
    assert [error["loc"] for error in refused.value.details["errors"]] == [["model", "embedding_dim"]]


def test_lora_adapters_over_the_budget_at_run_time_are_refused_naming_lora_rank(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the LoRA adapters are the bigger part of what the run counts before building them (the submit
    could not count them: the LM's files give no config transformers builds it from), the run-time count
    named model.hidden_dim and model.num_prefix_tokens, which no value could bring under the limit; it now
    names model.lora_rank, as the submit does, with both parts' counts."""
    from tinylm import save_tiny_model, tiny_chat_tokenizer, tiny_llama
    from tldrlab.config import get_settings
    from tldrlab.elm.train import check_adapter_budget_as_read

    tokenizer = tiny_chat_tokenizer()
    llama = tiny_llama(tokenizer)  # 32 wide, 2 layers: 512 LoRA parameters a rank a layer
    lm = save_tiny_model(llama, tokenizer, tmp_path / "llama")
    monkeypatch.setenv("TLDRLAB_MAX_MODEL_PARAMETERS", "1000000")
    get_settings.cache_clear()
    model = {"lm": str(lm), "freeze_lm": True, "lora_rank": 1024, "num_prefix_tokens": 1, "hidden_dim": 4}
    config = ElmTrainConfig.model_validate({"data": str(tmp_path / "data"), "model": model})
    with pytest.raises(InvalidConfigError) as refused:
        check_adapter_budget_as_read(config, config.model, llama)
    assert [error["loc"] for error in refused.value.details["errors"]] == [["model", "lora_rank"]]
    # 2 layers x 1024 x (q 64 + k 48 + v 48 + o 64 + 3 x 96) = 1,048,576; the adapter: 26,692
    assert refused.value.message == (
        "model.lora_rank: 1,075,268 parameters (1.08e+06), above the limit of 1,000,000 "
        "(TLDRLAB_MAX_MODEL_PARAMETERS) (lora_rank 1024: 1,048,576 LoRA parameters on the LM's projections; "
        f"the adapter and drift head, 26,692, on the LM {lm}, which is 32 wide, from 384-d embeddings; the "
        "LM's own parameters are not counted)"
    )


def test_generate_text_prompts_with_the_template_the_elm_was_trained_with(
    elm_data: Path, elm_tokenizer: Path, tmp_path: Path
) -> None:
    """`elm generate --text` prompted every ELM with the default "Summarize the following text" template:
    one trained on a layout of another `--template` (or compare-lm's chat prompt) never saw that prompt."""
    import shutil

    import torch

    from tldrlab.elm.evaluate import predict
    from tldrlab.elm.model import generate_summaries, load_elm
    from tldrlab.embed import get_embedder

    data = tmp_path / "elm"
    shutil.copytree(elm_data, data)
    template = "Describe the package:\n{text}\nDescription:"
    for synthesis in (data / "synthesis").glob("*_synthesis.jsonl"):
        rows = [json.loads(line) for line in synthesis.read_text().splitlines()]
        rows = [{**row, "input_prompt_template": template} for row in rows]
        synthesis.write_text("".join(json.dumps(row) + "\n" for row in rows))
    config = tiny_config(data, elm_tokenizer, max_steps=2)
    with start_run("elm_train", config) as run:
        run_elm_training(run, config)
    assert json.loads((run.dir / "model" / "elm_config.json").read_text())["template"] == template
    document = "A library to parse TOML files in C."
    (row,) = predict(run.id, texts=[document], max_new_tokens=6)
    model, tokenizer = load_elm(run.id)
    vector = torch.from_numpy(get_embedder("minilm").encode([document]))
    assert row["prediction"] == generate_summaries(model, tokenizer, vector, [template], max_new_tokens=6)[0]


def test_generate_refuses_an_output_over_the_prepared_data(
    elm_data: Path, elm_tokenizer: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`elm generate --output DATA/synthesis/test_synthesis.jsonl` wrote the predictions over the split they
    were made from: the layout was broken for every later command, and nothing said so."""
    import shutil

    data = tmp_path / "elm"
    shutil.copytree(elm_data, data)
    config = tiny_config(data, elm_tokenizer, max_steps=1)
    with start_run("elm_train", config) as run:
        run_elm_training(run, config)
    synthesis = data / "synthesis" / "test_synthesis.jsonl"
    before = synthesis.read_bytes()
    for output in (synthesis, data / "elm_data.json"):
        argv = ["elm", "generate", "--model", run.id, "--data", str(data), "--output", str(output),
                "--max-new-tokens", "2"]  # fmt: skip
        assert run_cli(argv) == 2
        assert f"--output: {output} is a file of the prepared ELM data in {data}" in capsys.readouterr().err
    assert synthesis.read_bytes() == before


def test_a_training_split_without_records_is_named(elm_data: Path, tmp_path: Path) -> None:
    """A prepared layout whose training split holds no record (a task filter that kept only val and test
    records) failed on "the corpus has no text: <run>/tokenizer_corpus.txt", the tokenizer's own file."""
    import shutil

    data = tmp_path / "elm"
    shutil.copytree(elm_data, data)
    train_file = data / "synthesis" / "train_synthesis.jsonl"
    train_file.write_text("")
    config = ElmTrainConfig.model_validate({"data": str(data), "max_steps": 1})
    said = f"^{train_file}: no training records with a target text$"
    with pytest.raises(InvalidInputError, match=said), start_run("elm_train", config) as run:
        run_elm_training(run, config)
