"""The ELM on a frozen pretrained chat LM (a tiny Llama with ChatML, tests/tinylm.py): only the adapter (and
LoRA adapters when asked) train, the LM's weights stay bit for bit; and `elm compare-lm` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from tinylm import save_tiny_model, tiny_chat_tokenizer, tiny_llama
from tldrlab.cli.main import main
from tldrlab.elm.config import ElmTrainConfig
from tldrlab.models.chat import DEFAULT_INSTRUCTION
from tldrlab.runs import open_registry, start_run


@pytest.fixture(scope="module")
def chat_lm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokenizer = tiny_chat_tokenizer()
    return save_tiny_model(tiny_llama(tokenizer), tokenizer, tmp_path_factory.mktemp("lm") / "tiny")


def _train(elm_data: Path, lm: Path, **model: object) -> tuple[object, dict[str, torch.Tensor]]:
    from tldrlab.elm.model import build_elm
    from tldrlab.elm.train import run_elm_training

    config = ElmTrainConfig.model_validate(
        {
            "data": str(elm_data),
            "model": {"lm": str(lm), "freeze_lm": True, "hidden_dim": 16, **model},
            "max_steps": 3,
            "eval_interval": 3,
            "eval_samples": 0,
            "use_bertscore": False,
            "wandb": "disabled",
            "train": {
                "batch_size": 4,
                "lr": 1e-2,
                "best_metric": "eval_loss",
                "best_mode": "min",
                "early_stopping_patience": None,
                "progress": False,
                "plot": False,
                "seed": 0,
            },
        }
    )
    before, _ = build_elm(config.model.model_copy(update={"embedding_dim": 384}))
    start = {k: v.clone() for k, v in before.state_dict().items()}
    with start_run("elm_train", config) as run:
        result = run_elm_training(run, config)
    return result, start


def test_frozen_lm_trains_only_the_adapter(elm_data: Path, chat_lm: Path) -> None:
    result, start = _train(elm_data, chat_lm)
    after = result.model.state_dict()
    lm_keys = [k for k in after if k.startswith("lm.")]
    assert lm_keys and all(torch.equal(after[k], start[k]) for k in lm_keys)
    assert not torch.equal(after["adapter.direct.weight"], start["adapter.direct.weight"])
    assert not torch.equal(after["drift_head.weight"], start["drift_head.weight"])
    trainable = {n for n, p in result.model.named_parameters() if p.requires_grad}
    assert trainable and not any(n.startswith("lm.") for n in trainable)


def test_an_elm_on_a_frozen_lm_named_by_a_relative_path_loads_from_any_directory(
    elm_data: Path, chat_lm: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A frozen LM is not copied into the saved ELM but referenced: the reference was the path as given,
    relative to where the ELM trained, and loading the ELM from anywhere else failed ("cannot load a causal
    LM") or loaded whatever that path named there."""
    from tldrlab.elm.model import load_elm

    monkeypatch.chdir(chat_lm.parent)
    _train(elm_data, Path(chat_lm.name))
    (run,) = open_registry().list(kind="elm_train")
    monkeypatch.chdir(tmp_path)
    model, _ = load_elm(run.id)
    assert Path(model.config.lm) == chat_lm.resolve()


def test_frozen_lm_with_lora_trains_adapters_and_saves_them(
    elm_data: Path, chat_lm: Path, tmp_path: Path
) -> None:
    from tldrlab.elm.model import load_elm, save_elm

    result, start = _train(elm_data, chat_lm, lora_rank=2)
    model = result.model
    after = model.state_dict()
    lora = [k for k in after if "lora_" in k]
    base = [k for k in after if k.startswith("lm.") and "lora_" not in k]
    assert lora and base
    assert any(not torch.equal(after[k], start[k]) for k in lora if "lora_B" in k)  # B starts at zero
    # the LM's own weights never change (peft names them base_layer inside the wrapper)
    plain = {k.replace(".base_layer", "").replace("base_model.model.", ""): v for k, v in after.items()}
    original = {k.replace(".base_layer", "").replace("base_model.model.", ""): v for k, v in start.items()}
    assert all(torch.equal(plain[k], original[k]) for k in plain if k.startswith("lm.") and "lora_" not in k)
    saved = save_elm(model, load_elm_tokenizer(chat_lm), tmp_path / "elm")
    assert not (saved / "lm" / "model.safetensors").exists()  # the frozen LM is referenced, not copied
    loaded, _ = load_elm(saved)
    embeddings = torch.randn(2, 384)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12, 13, 14]] * 2)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[:, 1:9] = True
    model.eval()
    with torch.no_grad():
        a = model(embeddings, ids, torch.ones_like(ids), mask)["logits"]
        b = loaded(embeddings, ids, torch.ones_like(ids), mask)["logits"]
    assert torch.allclose(a, b, atol=1e-5)


def load_elm_tokenizer(lm: Path) -> object:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(lm))


def test_lora_needs_a_frozen_pretrained_lm(chat_lm: Path) -> None:
    from tldrlab.elm.config import ElmModelConfig

    # the config's own validation (so `POST /runs` refuses it too), before any model is loaded
    with pytest.raises(ValidationError, match=r"lora_rank\n.*frozen pretrained LM"):
        ElmModelConfig(lm=str(chat_lm), lora_rank=2)


def _tiny_gpt2(directory: Path) -> Path:
    """A tiny transformers GPT-2 with the chat tokenizer (its projections: c_attn, c_proj, c_fc)."""
    import transformers

    tokenizer = tiny_chat_tokenizer()
    config = transformers.GPT2Config(
        vocab_size=len(tokenizer), n_positions=64, n_embd=16, n_layer=1, n_head=2,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    return save_tiny_model(transformers.GPT2LMHeadModel(config), tokenizer, directory)


def test_lora_on_a_gpt2_lm_goes_on_its_attention_and_mlp_projections(tmp_path: Path) -> None:
    """`lora_rank` puts LoRA on "the LM's attention and MLP projections", and the ELM takes any causal LM,
    but the adapters went on the Llama-style names alone: an ELM on a GPT-2 failed once its run had loaded
    the LM ("LoRA target modules not in the model: q_proj, ..."), with no setting to name GPT-2's. They go
    on the projections the LM has (`models.causal_lm.lora_on_projections`); a saved ELM loads them back."""
    import warnings

    from tldrlab.elm.config import ElmModelConfig
    from tldrlab.elm.model import build_elm, load_elm, save_elm

    gpt2 = _tiny_gpt2(tmp_path / "gpt2")
    config = ElmModelConfig(lm=str(gpt2), embedding_dim=8, hidden_dim=8, freeze_lm=True, lora_rank=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, tokenizer = build_elm(config)
    # GPT-2's Conv1D weights are transposed: said to peft, not left for it to guess with a warning
    assert not [w for w in caught if "fan_in_fan_out" in str(w.message)]
    adapted = {name.rsplit(".", 2)[-2] for name, _ in model.named_modules() if name.endswith(".lora_A")}
    assert adapted == {"c_attn", "c_proj", "c_fc"}, adapted
    trainable = [n for n, p in model.named_parameters() if p.requires_grad and n.startswith("lm.")]
    assert trainable and all("lora_" in n for n in trainable)
    for name, parameter in model.named_parameters():  # as if trained: B starts at zero
        if "lora_B" in name:
            torch.nn.init.normal_(parameter)
    loaded, _ = load_elm(save_elm(model, tokenizer, tmp_path / "elm"))
    embeddings, ids = torch.randn(2, 8), torch.tensor([[5, 6, 7, 8, 9, 10]] * 2)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[:, 1:3] = True
    model.eval()
    with torch.no_grad():
        a = model(embeddings, ids, torch.ones_like(ids), mask)["logits"]
        b = loaded(embeddings, ids, torch.ones_like(ids), mask)["logits"]
    assert torch.allclose(a, b, atol=1e-5)


def _tiny_opt(directory: Path) -> Path:
    """A tiny transformers OPT with the chat tokenizer: an architecture neither Llama-style nor GPT-2 (its
    projections: k/v/q_proj, out_proj, fc1, fc2)."""
    import transformers

    tokenizer = tiny_chat_tokenizer()
    config = transformers.OPTConfig(
        vocab_size=len(tokenizer), hidden_size=16, ffn_dim=32, num_hidden_layers=1, num_attention_heads=2,
        word_embed_proj_dim=16, max_position_embeddings=256, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    return save_tiny_model(transformers.OPTForCausalLM(config), tokenizer, directory)


def test_lora_on_an_lm_of_another_architecture_goes_on_its_own_projections_and_trains(
    elm_data: Path, tmp_path: Path
) -> None:
    """ELM LoRA knew the Llama-style and GPT-2's projection names alone: on an OPT (Phi, Falcon, Bloom,
    GPT-NeoX, ...) it was refused ("LoRA target modules not in the model: q_proj, ..."). The targets now come
    from the LM's own module tree (`models.causal_lm.resolve_lora`); the run trains them and records them."""
    result, start = _train(elm_data, _tiny_opt(tmp_path / "opt"), lora_rank=2)
    model = result.model

    from tldrlab.models.causal_lm import lora_modules

    assert lora_modules(model) == ["k_proj", "v_proj", "q_proj", "out_proj", "fc1", "fc2"]
    after = model.state_dict()
    assert any(not torch.equal(after[k], start[k]) for k in after if "lora_B" in k)  # B starts at zero
    (run,) = open_registry().list(kind="elm_train")
    manifest = json.loads((Path(run.run_dir) / "manifest.json").read_text())
    assert manifest["lora_target_modules"] == lora_modules(model)


def test_an_elm_lm_that_is_no_causal_lm_is_refused_at_submit_and_lora_on_any_causal_lm_accepted(
    elm_data: Path, tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An ELM whose LM is no causal LM (a T5) was accepted (202 over the API, the command line created the
    run) and failed once the run loaded the LM. `elm_train`, `elm_optimize` and `elm_compare_lm` refuse it
    before a run exists, naming the field, in the run's own words (the same functions, on config.json and
    the LM built on the meta device: no weights read). LoRA on an LM of any architecture (an OPT: q/k/v_proj,
    out_proj, fc1, fc2) is accepted: it goes on the projections the submit check finds as the run does."""
    import shutil

    import transformers
    from fastapi.testclient import TestClient

    from cliutil import run_captured
    from tinylm import tiny_t5
    from tldrlab.service.app import create_app

    data = tldrlab_home / "data"  # inside the API's data root
    shutil.copytree(elm_data, data / "elm")
    save_tiny_model(*tiny_t5(), data / "t5")
    transformers.OPTConfig(hidden_size=16, ffn_dim=32, num_hidden_layers=1, num_attention_heads=2,
                           word_embed_proj_dim=16).save_pretrained(data / "opt")  # fmt: skip
    _tiny_gpt2(data / "gpt2")
    (data / "pairs.jsonl").write_text('{"document": "a small library", "summary": "a library"}\n' * 4)
    not_causal = "t5 holds a t5 model, not a causal LM"
    capsys.readouterr()  # what saving the models printed
    argv = ["elm", "train", "--data", str(data / "elm"), "--max-steps", "1", "--freeze-lm", "--lm"]
    code, _, err = run_captured([*argv, str(data / "t5")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "[invalid_config] model.lm: " in err and not_causal in err, err
    assert open_registry().list() == []

    client = TestClient(create_app())
    lora = {"freeze_lm": True, "lora_rank": 2}
    train = {"data": "elm", "max_steps": 1}
    compare = {"data": "pairs.jsonl", "systems": ["elm", "elm_lora"]}
    for kind, config, loc, message in (
        ("elm_train", {**train, "model": {"lm": "t5"}}, ["model", "lm"], not_causal),
        ("elm_optimize", {"base": {**train, "model": {"lm": "t5"}}}, ["base", "model", "lm"], not_causal),
        ("elm_compare_lm", {**compare, "lm": "t5"}, ["lm"], not_causal),
    ):
        body = {"kind": kind, "config": config}
        response = client.post("/runs", json=body, headers={"X-Request-ID": "r-1"})
        answer = response.json()
        assert response.status_code == 422 and answer["code"] == "invalid_config", (kind, response.text)
        assert answer["request_id"] == "r-1" and answer["errors"][0]["loc"] == loc, (kind, answer)
        assert answer["message"].startswith(".".join(loc) + ": ") and message in answer["message"], answer
    assert open_registry().list() == []
    # what the run can build is accepted: LoRA on GPT-2's or an OPT's projections, an OPT without LoRA
    for kind, config in (
        ("elm_train", {**train, "model": {"lm": "gpt2", **lora}}),
        ("elm_train", {**train, "model": {"lm": "opt", **lora}}),
        ("elm_train", {**train, "model": {"lm": "opt", "freeze_lm": True}}),
        ("elm_compare_lm", {**compare, "lm": "gpt2"}),
        ("elm_compare_lm", {**compare, "lm": "opt"}),
        ("elm_compare_lm", {"data": "pairs.jsonl", "lm": "opt", "systems": ["elm"]}),
    ):
        response = client.post("/runs", json={"kind": kind, "config": config})
        assert response.status_code == 202, (kind, response.text)


@pytest.mark.slow
def test_compare_lm_end_to_end(shared_data: Path, chat_lm: Path, tmp_path: Path) -> None:
    main(
        [
            "elm",
            "compare-lm",
            "--data",
            str(shared_data / "debian_descriptions"),
            "--lm",
            str(chat_lm),
            "--systems",
            "zero_shot,finetune,elm,elm_lora",
            "--cpu-minutes",
            "0.000001",
            "--limit",
            "24",
            "--eval-limit",
            "4",
            "--eval-every",
            "2",
            "--eval-size",
            "4",
            "--batch-size",
            "4",
            "--max-source-tokens",
            "24",
            "--max-target-tokens",
            "6",
            "--embedder",
            "minilm-onnx",
            "--lora-rank",
            "2",
            "--no-bertscore",
            "--wandb",
            "disabled",
            "--out",
            str(tmp_path / "data"),
        ]
    )
    (record,) = open_registry().list(kind="elm_compare_lm", limit=2)
    result = json.loads((Path(record.run_dir) / "comparison.json").read_text())
    rows = {r["system"]: r for r in result["rows"]}
    assert list(rows) == ["zero_shot", "finetune", "elm", "elm_lora"]
    # the budget (60 CPU microseconds: spent by any training step) stops each trained system at its first
    # evaluation; a budget two steps could stay under made this flaky once evaluations stopped plotting
    assert rows["zero_shot"]["steps"] == 0
    assert rows["finetune"]["steps"] == rows["elm"]["steps"] == rows["elm_lora"]["steps"] == 2
    assert all(rows[s]["train_cpu_seconds"] >= 60e-6 for s in ("finetune", "elm", "elm_lora"))
    assert 0 < rows["elm"]["trainable_parameters"] < rows["elm_lora"]["trainable_parameters"]
    assert rows["finetune"]["trainable_parameters"] == rows["finetune"]["parameters"]
    for row in rows.values():
        assert row["cpu_seconds_per_summary"] > 0 and isinstance(row["rougeL"], float)
    pairs = {(d["system"], d["reference"]) for d in result["differences"]}
    assert ("elm", "finetune") in pairs and ("elm", "zero_shot") in pairs
    prompt = json.loads(
        (tmp_path / "data" / "synthesis" / "test_synthesis.jsonl").read_text().splitlines()[0]
    )
    assert (
        prompt["input_prompt_template"].startswith("<|im_start|>user")
        and "{text}" in prompt["input_prompt_template"]
    )
    assert (Path(record.run_dir) / "comparison.png").stat().st_size > 5000


def _pairs_and_layout(data: Path, layout: Path, for_lm: str, **prepared: object) -> None:
    """40 pair records in `data`, and in `layout` an ELM layout as compare-lm prepares it (20 training
    records, 2 each to validate and test, zero embeddings: nothing here embeds) whose manifest records it was
    prepared from `data` with limit 48, eval_limit 2, seed 0 and the minilm embedder for the LM `for_lm`
    and the default instruction, or with `prepared` (None: not recorded)."""
    from tldrlab.elm.prepare import MANIFEST, write_split

    data.parent.mkdir(parents=True, exist_ok=True)
    documents = [f"package {i} installs a tool for task {i}" for i in range(40)]
    rows = [{"document": document, "summary": f"tool {i}"} for i, document in enumerate(documents)]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    for split, count in (("train", 20), ("val", 2), ("test", 2)):
        records = [
            {
                "task_type": "summary",
                "input_prompt_template": "<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n",
                "embedding_index": i,
                "target_text": f"tool {i}",
                "document": documents[i],
            }
            for i in range(count)
        ]
        write_split(layout, split, records, torch.zeros(count, 384))
    manifest = {"source": str(data), "embedder": "minilm", "seed": 0, "limit": 48, "eval_limit": 2}
    manifest |= {"lm": for_lm, "instruction": DEFAULT_INSTRUCTION}
    manifest = {k: v for k, v in {**manifest, **prepared}.items() if v is not None}
    (layout / MANIFEST).write_text(json.dumps({**manifest, "embedding_dim": 384}))


REUSE = "compare-lm reuses it only for the same data, limit, eval_limit, seed, embedder, lm and instruction"
REMEDY = "give another out to prepare the data again"


@pytest.mark.parametrize(
    "changed",
    [
        "limit",
        "eval_limit",
        "data",
        "seed",
        "embedder",
        "instruction",
        "lm",
        "not recorded",
        "prompt not recorded",
    ],
)
def test_elm_compare_lm_refuses_a_layout_in_out_prepared_with_other_settings(
    changed: str, chat_lm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`elm compare-lm` reused the layout in --out whatever its --data, --limit, --eval-limit, --seed and
    --embedder now were: every system trained and was scored on the earlier records (the ELM on the earlier
    embedder's vectors, summarising with the new one), and comparison.json's setup said the new settings. A
    layout prepared with other settings (or one that does not record them) is now refused before a run
    exists (the kind's check: one line naming `out`, exit 2), saying to give another --out."""
    from cliutil import run_captured
    from tldrlab.elm.config import ElmLMCompareConfig
    from tldrlab.launch import check_inputs

    data, out = tmp_path / "pairs.jsonl", tmp_path / "out"
    _pairs_and_layout(data, out, str(chat_lm))
    settings = {"--limit": "48", "--eval-limit": "2", "--seed": "0", "--embedder": "minilm"}
    layout = f"out: the layout in {out}"
    if changed == "limit":
        settings["--limit"] = "64"
        refusal = f"{layout} was prepared with limit 48, not 64: {REUSE}; {REMEDY}"
    elif changed == "eval_limit":
        settings["--eval-limit"] = "4"
        refusal = f"{layout} was prepared with eval_limit 2, not 4: {REUSE}; {REMEDY}"
    elif changed == "data":
        earlier, data = data, tmp_path / "other.jsonl"
        data.write_text(earlier.read_text())
        refusal = f"{layout} was prepared with data {earlier}, not {data}: {REUSE}; {REMEDY}"
    elif changed == "seed":  # the seed cuts the splits
        settings["--seed"] = "3"
        refusal = f"{layout} was prepared with seed 0, not 3: {REUSE}; {REMEDY}"
    elif changed == "embedder":  # the adapter would learn one embedder's vectors and be given another's
        settings["--embedder"] = "minilm-onnx"
        refusal = f"{layout} was prepared with embedder minilm, not minilm-onnx: {REUSE}; {REMEDY}"
    elif changed == "instruction":  # the records' prompt template asks with the instruction
        settings["--instruction"] = "Name the tool."
        instruction = f"instruction {DEFAULT_INSTRUCTION}, not Name the tool."
        refusal = f"{layout} was prepared with {instruction}: {REUSE}; {REMEDY}"
    elif changed == "lm":  # ... in the LM's chat format
        _pairs_and_layout(data, out, "smollm2")
        refusal = f"{layout} was prepared with lm smollm2, not {chat_lm}: {REUSE}; {REMEDY}"
    elif changed == "prompt not recorded":  # prepared before the lm and instruction were recorded
        _pairs_and_layout(data, out, str(chat_lm), lm=None, instruction=None)
        refusal = (
            f"{layout} does not record the lm and instruction it was prepared with, so compare-lm cannot "
            f"tell whether it holds the records these settings give: {REMEDY}"
        )
    else:  # prepared before the limits were recorded
        _pairs_and_layout(data, out, str(chat_lm), limit=None, eval_limit=None)
        refusal = (
            f"{layout} does not record the limit and eval_limit it was prepared with, so compare-lm cannot "
            f"tell whether it holds the records these settings give: {REMEDY}"
        )
    before = {str(p): p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    argv = ["elm", "compare-lm", "--data", str(data), "--out", str(out), "--lm", str(chat_lm)]
    argv += ["--systems", "elm", "--cpu-minutes", "0.000001", "--eval-every", "2", "--eval-size", "2"]
    argv += ["--batch-size", "4", "--max-target-tokens", "4", "--hidden-dim", "8", "--no-bertscore"]
    argv += [x for pair in settings.items() for x in pair]
    code, printed, err = run_captured(argv, capsys)
    assert (code, printed, err.strip()) == (2, "", f"error [invalid_config] {refusal}")
    # nothing embedded or replaced, no run created
    assert {str(p): p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before
    assert open_registry().list() == []
    if changed == "limit":  # the same settings reuse it, however the data's path is written
        same = tmp_path / "elsewhere" / ".." / "pairs.jsonl"
        config = ElmLMCompareConfig(data=str(same), out=str(out), lm=str(chat_lm), limit=48, eval_limit=2)
        check_inputs("elm_compare_lm", config)


def test_a_queued_elm_compare_lm_whose_out_was_prepared_with_other_settings_fails_in_one_line(
    chat_lm: Path, tldrlab_home: Path
) -> None:
    """Over the API `out` is inside the new run's directory, so its submit finds no layout there; a run that
    finds one when it starts (prepared there while it was queued, with another seed) reused it. The run
    checks it again before it loads the LM: it fails with the submit's one line (invalid_config at `out`),
    no traceback, nothing trained."""
    import shutil

    from fastapi.testclient import TestClient

    from tldrlab.service.app import create_app
    from tldrlab.service.worker import WorkerConfig, build_worker

    data = tldrlab_home / "data"  # inside the API's data root
    shutil.copytree(chat_lm, data / "lm")
    (data / "pairs.jsonl").parent.mkdir(parents=True, exist_ok=True)
    client = TestClient(create_app())
    config = {"data": "pairs.jsonl", "lm": "lm", "out": "elm_data", "systems": ["elm"], "limit": 48}
    config |= {"eval_limit": 2, "cpu_minutes": 0.000001, "eval_every": 2, "eval_size": 2, "batch_size": 4}
    config |= {"max_target_tokens": 4, "hidden_dim": 8, "bertscore": False}
    (data / "pairs.jsonl").write_text('{"document": "a small library", "summary": "a library"}\n' * 40)
    response = client.post("/runs", json={"kind": "elm_compare_lm", "config": config})
    assert response.status_code == 202, response.text
    (record,) = open_registry().list(kind="elm_compare_lm")
    out = Path(record.config["out"])
    assert out == Path(record.run_dir).resolve() / "elm_data"  # where the API writes it: nothing there yet
    # prepared meanwhile, with another seed
    _pairs_and_layout(data / "pairs.jsonl", out, record.config["lm"], seed=1)
    build_worker(config=WorkerConfig(burst=True, heartbeat_s=0.2, poll_s=0.05)).run()

    run = client.get(f"/runs/{record.id}").json()
    assert (run["status"], run["error_code"]) == ("failed", "invalid_config"), run
    layout = f"out: the layout in run:{record.id}/elm_data"
    assert run["message"] == f"failed: {layout} was prepared with seed 1, not 0: {REUSE}; {REMEDY}"
    assert [r.kind for r in open_registry().list()] == ["elm_compare_lm"]  # no system's run started
    logged = (Path(record.run_dir) / "log.jsonl").read_text()
    assert "run failed: out: the layout in " in logged and "Traceback" not in logged
