"""What a config says about itself is checked when it is given: `POST /runs` answers 422 naming the field
(code, message, request_id), the command line exits with the same message, and no run is created. A tokenizer
vocabulary too small for its method and a model over the parameter budget used to be accepted over HTTP and
fail once a worker ran them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cliutil import run_captured
from tldrlab.config import get_settings
from tldrlab.errors import InvalidConfigError
from tldrlab.runs import open_registry
from tldrlab.service.app import create_app
from tldrlab.service.confine import resolve_model

HUGE_T5 = {"d_model": 100_000, "num_layers": 500}
"""39.5e9 parameters: a worker would try to allocate 158 GB for its weights alone."""


@pytest.fixture
def client() -> TestClient:
    return TestClient(create_app())


@pytest.fixture
def text(tldrlab_home: Path) -> Path:
    """A small text file inside the API's data root."""
    path = tldrlab_home / "data" / "text.txt"
    path.parent.mkdir(parents=True)
    path.write_text("To be, or not to be, that is the question.\n" * 20)
    return path


def _refused(client: TestClient, kind: str, config: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/runs", json={"kind": kind, "config": config}, headers={"X-Request-ID": "req-7"})
    assert response.status_code == 422, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == "invalid_config" and body["request_id"] == "req-7"
    return body


def test_a_vocabulary_too_small_for_its_method_is_a_422_naming_the_field(
    client: TestClient, text: Path
) -> None:
    body = _refused(client, "tokenizer", {"method": "bpe", "vocab_size": 3, "corpus": ["text.txt"]})
    assert "vocab_size" in body["message"] and "too small for bpe: it needs 260+" in body["message"]
    # the validator's words, without pydantic's "Value error, " before them
    assert (
        body["message"]
        == "invalid tokenizer config: vocab_size: vocab size 3 is too small for bpe: it needs 260+"
    )
    assert body["errors"] == [
        {"loc": ["vocab_size"], "msg": "vocab size 3 is too small for bpe: it needs 260+"}
    ]
    body = _refused(
        client, "tokenizer", {"method": "sentencepiece", "vocab_size": 260, "corpus": ["text.txt"]}
    )
    assert "vocab_size" in body["message"] and "needs 261+" in body["message"]
    body = _refused(client, "tokenizer", {"method": "wordpiece", "corpus": ["text.txt"]})
    assert "method" in body["message"] and "choose one of bpe, sentencepiece, char" in body["message"]
    # the tokenizer a training trains first, and the vocabulary an experiment trains, are checked the same way
    body = _refused(client, "train", {"data": {"path": "text.txt"}, "tokenizer": {"vocab_size": 100}})
    assert "tokenizer.vocab_size" in body["message"]
    assert open_registry().list() == []
    accepted = client.post(
        "/runs", json={"kind": "tokenizer", "config": {"vocab_size": 300, "corpus": "text.txt"}}
    )
    assert accepted.status_code == 202, accepted.text


def test_a_model_over_the_parameter_budget_is_a_422_naming_the_field_and_the_count(
    client: TestClient, text: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = {"model": "t5", "model_settings": HUGE_T5, "data": {"path": "text.txt"}}
    body = _refused(client, "train", config)
    assert body["message"].startswith("invalid train config: model_settings: 39,505,600,256 parameters")
    assert "above the limit of 1,000,000,000 (TLDRLAB_MAX_MODEL_PARAMETERS)" in body["message"]
    assert body["errors"][0]["loc"] == ["model_settings"]
    # unknown families and bad settings of a known one are refused by the config too
    body = _refused(client, "train", {"model": "t6", "data": {"path": "text.txt"}})
    assert body["errors"][0]["loc"] == ["model"] and "choose one of t5, gpt2" in body["message"]
    body = _refused(
        client, "train", {"model": "gpt2", "model_settings": {"n_layr": 2}, "data": {"path": "text.txt"}}
    )
    assert body["errors"][0]["loc"] == ["model_settings", "n_layr"]
    # the limit is a setting; the bundled SmolLM2 (a pretrained checkpoint) is not bounded by it
    monkeypatch.setenv("TLDRLAB_MAX_MODEL_PARAMETERS", "100000")
    get_settings.cache_clear()
    tiny = {"model": "gpt2", "data": {"path": "text.txt"}, "tokenizer": {"method": "char", "vocab_size": 100}}
    body = _refused(client, "train", tiny)
    assert "model_settings: 122,880 parameters" in body["message"] and "limit of 100,000" in body["message"]
    assert open_registry().list() == []
    tiny["model"] = "char_lstm"
    tiny["model_settings"] = {"embedding_dim": 16, "hidden_dim": 32, "num_layers": 1}
    accepted = client.post("/runs", json={"kind": "train", "config": tiny})
    assert accepted.status_code == 202, accepted.text
    pretrained = client.post(
        "/runs", json={"kind": "train", "config": {"model": "causal_lm", "data": {"path": "text.txt"}}}
    )
    assert pretrained.status_code == 202, pretrained.text


@pytest.mark.parametrize(
    ("kind", "config", "field", "says"),
    [
        ("lvm_train", {"model": "rnn"}, ["model"], "choose one of lstm, gru, transformer, mamba"),
        ("lvm_train", {"loss": "cosine+bogus"}, ["loss"], "bad loss 'cosine+bogus'"),
        (
            "lvm_train",
            {"model": "transformer", "model_settings": {"hidden": 30, "heads": 4}},
            ["model_settings", "heads"],
            "hidden (30) must be divisible by heads (4)",
        ),
        ("lvm_train", {"model_settings": {"hidden": 100_000, "layers": 100}}, ["model_settings"], "limit"),
        ("elm_train", {"model": {"lm_settings": {"n_embd": 8192, "n_layer": 48}}}, ["model"], "limit"),
        ("elm_train", {"model": {"lm_size": "huge"}}, ["model", "lm_size"], "'tiny', 'mini', 'small' or"),
        ("elm_train", {"model": {"lora_rank": 4}}, ["model", "lora_rank"], "frozen pretrained LM"),
        ("elm_train", {"vocab_size": 100}, ["vocab_size"], "greater than or equal to 260"),
        ("experiment", {"vocab_size": 100}, ["vocab_size"], "too small for bpe"),
        ("experiment", {"vocab_size": 10**8}, ["vocab_size"], "6,400,230,400 parameters"),
    ],
)
def test_every_kind_that_builds_a_model_refuses_what_its_config_says_wrong(
    client: TestClient, text: Path, kind: str, config: dict[str, Any], field: list[str], says: str
) -> None:
    inputs = {"lvm_train": {"sequences": "text.txt"}, "elm_train": {"data": "text.txt"}}
    body = _refused(client, kind, {**inputs.get(kind, {"data": "text.txt"}), **config})
    assert body["errors"][0]["loc"] == field and says in body["message"], body
    assert open_registry().list() == []


def test_a_boolean_for_a_number_is_a_422_naming_the_field(client: TestClient, text: Path) -> None:
    """pydantic's lax mode took `true` as 1 (1.0 for a float): `max_steps: true` trained one step."""
    config = {"data": {"path": "text.txt"}, "train": {"max_steps": True, "lr": True, "max_grad_norm": False}}
    body = _refused(client, "train", config)
    assert body["message"] == (
        "invalid train config: train.max_steps: expected a number, got the boolean true; "
        "train.lr: expected a number, got the boolean true; "
        "train.max_grad_norm: expected a number, got the boolean false"
    )
    assert body["errors"][0] == {
        "loc": ["train", "max_steps"],
        "msg": "expected a number, got the boolean true",
    }
    assert open_registry().list() == []
    # a real number and a boolean setting are taken as before
    accepted = client.post(
        "/runs",
        json={
            "kind": "train",
            "config": {"data": {"path": "text.txt"}, "train": {"max_steps": 3, "save_best": False}},
        },
    )
    assert accepted.status_code == 202, accepted.text
    (record,) = open_registry().list(kind="train")
    assert (record.config["train"]["max_steps"], record.config["train"]["save_best"]) == (3, False)


def test_a_boolean_for_a_number_in_model_settings_is_a_422_naming_the_field(
    client: TestClient, text: Path
) -> None:
    """`model_settings` is free-form, validated by the model family's class inside the job's own check:
    `"num_layers": true` built a one-layer T5."""
    config = {"data": {"path": "text.txt"}, "model": "t5", "model_settings": {"num_layers": True}}
    body = _refused(client, "train", config)
    assert body["message"] == (
        "invalid train config: model_settings.num_layers: expected a number, got the boolean true"
    )
    assert [error["loc"] for error in body["errors"]] == [["model_settings", "num_layers"]]
    assert open_registry().list() == []
    accepted = client.post(
        "/runs", json={"kind": "train", "config": {**config, "model_settings": {"num_layers": 2}}}
    )
    assert accepted.status_code == 202, accepted.text


def test_a_sweep_whose_search_space_reaches_past_the_budget_is_a_422(client: TestClient, text: Path) -> None:
    """A trial drawing 30,000 encoder layers would build a 1.5e9-parameter T5: refused at submit, not as
    failed trials (the sweep's validation with plausible values, 16,465 layers here, passes)."""
    sweep = {
        "method": "random",
        "program": "tldrlab.train",
        "metric": {"name": "eval_loss", "goal": "minimize"},
        "parameters": {"model_settings.num_layers": {"min": 1, "max": 30_000}},
        "config": {"model": "t5", "data": {"path": "text.txt"}},
    }
    body = _refused(client, "sweep", {"sweep": sweep})
    assert "with every numeric parameter at its largest: sweep.config.model_settings: 1,4" in body["message"]
    assert "(TLDRLAB_MAX_MODEL_PARAMETERS)" in body["message"] and open_registry().list() == []
    sweep["parameters"] = {"model_settings.num_layers": {"min": 1, "max": 3}}
    assert client.post("/runs", json={"kind": "sweep", "config": {"sweep": sweep}}).status_code == 202


def test_the_command_line_refuses_them_with_the_same_message_and_no_run(
    client: TestClient,
    text: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    over_http = _refused(client, "tokenizer", {"vocab_size": 3, "corpus": ["text.txt"]})["message"]
    code, _, err = run_captured(["tokenizer", "train", "--vocab-size", "3", str(text)], capsys)
    assert code == 2 and over_http in err and "vocab_size: vocab size 3 is too small for bpe" in err
    monkeypatch.setenv("TLDRLAB_MAX_MODEL_PARAMETERS", "100000")
    get_settings.cache_clear()
    tiny_t5 = {"model": "t5", "tokenizer": {"method": "char", "vocab_size": 100}, "train": {"max_steps": 1}}
    over_http = _refused(client, "train", {**tiny_t5, "data": {"path": "text.txt"}})["message"]
    config = tmp_path / "train.json"
    config.write_text(json.dumps({**tiny_t5, "data": {"path": str(text)}, "final_eval": {"enabled": False}}))
    code, _, err = run_captured(["train", "--config", str(config), "--wandb", "disabled", "-q"], capsys)
    assert code == 2 and over_http in err and "Traceback" not in err, err
    assert "model_settings: 236,800 parameters" in err and "limit of 100,000" in err
    assert open_registry().list() == []


def test_a_train_best_metric_the_evaluations_do_not_compute_is_refused_at_submit(
    client: TestClient, text: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `"train": {"best_metric": "nope"}` was a 202; the run then failed at its first evaluation
    # ("best_metric 'nope' is not among the evaluation metrics")
    tiny = {"model": "t5", "tokenizer": {"method": "char", "vocab_size": 100}, "data": {"path": "text.txt"}}
    response = client.post("/runs/train", json={"config": {**tiny, "train": {"best_metric": "nope"}}})
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "invalid_config"
    assert response.json()["errors"] == [
        {
            "loc": ["train", "best_metric"],
            "msg": "nope is not computed by the evaluations of a t5 (seq2seq) training; "
            "choose one of eval_loss, eval_perplexity",
        }
    ]
    # a generated-summary metric names the settings that generate it
    rouge = {**tiny, "train": {"best_metric": "eval_rouge1", "best_mode": "max"}}
    message = _refused(client, "train", rouge)["message"]
    assert "eval_rouge1 is computed from generated summaries: set data.generate_every above 0" in message
    bertscore = {**tiny, "data": {"path": "text.txt", "generate_every": 2}}
    bertscore["train"] = {"best_metric": "eval_bertscore_f1", "best_mode": "max"}
    assert "set data.bertscore true" in _refused(client, "train", bertscore)["message"]
    # a causal LM on plain text generates nothing, whatever generate_every says
    gpt2 = {**tiny, "model": "gpt2", "model_settings": {"size": "tiny"}}
    gpt2["data"] = {"path": "text.txt", "generate_every": 1}
    gpt2["train"] = {"best_metric": "eval_rouge1", "best_mode": "max"}
    assert (
        "not computed by the evaluations of a gpt2 (causal_lm) training"
        in _refused(client, "train", gpt2)["message"]
    )
    assert open_registry().list() == []
    # the command line refuses it with the same words, before any run exists
    config = tmp_path / "train.json"
    config.write_text(json.dumps({**rouge, "data": {"path": str(text)}}))
    code, _, err = run_captured(["train", "--config", str(config), "--wandb", "disabled", "-q"], capsys)
    assert code == 2 and "eval_rouge1 is computed from generated summaries" in err and "Traceback" not in err
    assert open_registry().list() == []
    # what the settings do compute is accepted: ROUGE with generating evaluations, BERTScore with bertscore
    rouge["data"] = {"path": "text.txt", "generate_every": 3}
    assert client.post("/runs", json={"kind": "train", "config": rouge}).status_code == 202
    bertscore["data"] = {"path": "text.txt", "generate_every": 1, "bertscore": True}
    assert client.post("/runs/train", json={"config": bertscore}).status_code == 202


def test_validating_a_train_config_imports_no_torch() -> None:
    """The API validates (and counts the parameters of) every submitted config in its own process."""
    script = (
        "import sys\n"
        "from tldrlab.kinds import validate_config\n"
        "config = {'model': 'gpt2', 'model_settings': {'size': 'base'}, 'data': {'path': 'x'}}\n"
        "validate_config('train', config)\n"
        "print(sorted(m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("kind", "config", "field"),
    [
        ("evaluate", {"model_run": " "}, "model_run"),
        ("evaluate", {"model_run": "some-run", "data": ""}, "data"),
        ("generate", {"model_run": "some-run", "dataset": " "}, "dataset"),
        ("score", {"model_run": "\t", "text": "hi"}, "model_run"),
        ("train", {"data": {"path": ""}}, "data.path"),
        (
            "train",
            {"data": {"path": "text.txt"}, "model": "causal_lm", "model_settings": {"path": " "}},
            "path",
        ),
        ("tokenizer", {"corpus": ["text.txt", ""]}, "corpus.1"),
        ("tokenizer", {"corpus": ["text.txt"], "out_dir": ""}, "out_dir"),
    ],
)
def test_a_blank_path_or_model_reference_is_a_422_naming_the_field(
    client: TestClient, text: Path, kind: str, config: dict[str, Any], field: str
) -> None:
    """Path("") is Path("."): a blank path was confined as the data root itself (or, for a model, the
    server's working directory) and the run failed later, far from its cause."""
    body = _refused(client, kind, config)
    assert f"{field}: is empty: give" in body["message"], body
    assert open_registry().list() == []


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/summarize", {"document": "Some text to summarise.", "model": " "}, "model"),
        ("/lvm/predict", {"sentences": ["a sentence"], "model": "\t"}, "model"),
        ("/lvm/predict", {"sentences": ["a sentence"], "model": "some-run", "smooth": True, "lm": " "}, "lm"),
    ],
)
def test_a_blank_model_in_a_request_body_is_a_422_naming_the_field(
    client: TestClient, path: str, body: dict[str, Any], field: str
) -> None:
    """A blank model was looked up as a run id prefix (400 "the run id is empty", no field named; before
    that, as a prefix every run id starts with)."""
    response = client.post(path, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith(f"{field}: is empty: give "), response.text


def test_a_blank_model_in_summarizer_params_is_refused_naming_where(tldrlab_home: Path) -> None:
    with pytest.raises(InvalidConfigError, match=r"^summarizer_params\.model: is empty: give a model name"):
        resolve_model(" ", "summarizer_params.model", get_settings())


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "/runs",
            {"kind": "train", "config": {"data": {"path": "~no-such-user-tldrlab/x.txt"}}},
            "data.path",
        ),
        ("/runs", {"kind": "evaluate", "config": {"model_run": "~no-such-user-tldrlab/m"}}, "model_run"),
        ("/runs", {"kind": "tokenizer", "config": {"corpus": ["~no-such-user-tldrlab/c"]}}, "corpus.0"),
        ("/summarize", {"document": "Some text to summarise.", "model": "~no-such-user-tldrlab/m"}, "model"),
    ],
)
def test_a_tilde_path_of_an_unknown_user_is_refused_as_any_path_outside_the_roots(
    client: TestClient, path: str, body: dict[str, Any], field: str
) -> None:
    """Path.expanduser raised RuntimeError on `~nobody/...`: a 500. It is refused as `~root/...` is, with
    the same words, so that a client cannot tell which users the server has."""
    response = client.post(path, json=body)
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "path_not_allowed"
    assert response.json()["message"].startswith(f"{field}: API runs read only inside the data roots")
    assert open_registry().list() == []


def _nested(field: tuple[str, ...], value: Any) -> dict[str, Any]:
    """`{"model": {"lm_settings": {"n_layer": value}}}` for the field ("model", "lm_settings", "n_layer")."""
    nested: Any = value
    for key in reversed(field):
        nested = {key: nested}
    return dict(nested)


@pytest.mark.parametrize(
    ("kind", "config", "argv", "field"),
    [
        (
            "lvm_train",
            {"sequences": "seq.npz"},
            ["lvm", "train", "--model-settings", "layers=true"],
            ("model_settings", "layers"),
        ),
        (
            "elm_train",
            {"data": "elm"},
            ["elm", "train", "--data", "elm", "--model.lm-settings", "n_layer=true"],
            ("model", "lm_settings", "n_layer"),
        ),
    ],
)
def test_a_boolean_for_a_number_in_lvm_and_elm_settings_is_refused_on_the_cli_and_the_api(
    client: TestClient,
    capsys: pytest.CaptureFixture[str],
    kind: str,
    config: dict[str, Any],
    argv: list[str],
    field: tuple[str, ...],
) -> None:
    """An LVM's `model_settings` and an ELM's GPT-2 `lm_settings` are free-form, validated by LVMConfig and
    the gpt2 family's class inside the config's own check: `layers: true` built a one-layer LVM and
    `n_layer: true` a one-layer GPT-2 (command line and API alike), as `model_settings` did for `train`."""
    from tldrlab.kinds import validate_config

    message = f"invalid {kind} config: {'.'.join(field)}: expected a number, got the boolean true"
    code, out, err = run_captured([*argv, "--print-config"], capsys)
    assert (code, out, err.strip()) == (2, "", f"error [invalid_config] {message}")
    body = _refused(client, kind, {**config, **_nested(field, True)})
    assert body["message"] == message
    assert [error["loc"] for error in body["errors"]] == [list(field)]
    assert open_registry().list() == []

    value: Any = validate_config(kind, {**config, **_nested(field, 2)})  # a number is taken as given
    for key in field:
        value = value[key] if isinstance(value, dict) else getattr(value, key)
    assert value == 2


def test_a_bad_nested_model_setting_is_a_422_naming_its_path(client: TestClient, text: Path) -> None:
    # /openapi.json documents model_settings as the model families' classes; submit still checks it
    # against the class of the family `model` names
    config = {"model": "causal_lm", "model_settings": {"lora": {"r": 0}}, "data": {"path": "text.txt"}}
    body = _refused(client, "train", config)
    assert body["errors"][0]["loc"] == ["model_settings", "lora", "r"]
    assert "model_settings.lora.r: Input should be greater than or equal to 1" in body["message"]
    assert open_registry().list() == []


@pytest.mark.parametrize(
    ("settings", "option", "problem"),
    [
        ({"hidden": 0}, "hidden=0", "Input should be greater than or equal to 4"),
        ({"hidden": 64, "hiden": 32}, "hiden=32", "Extra inputs are not permitted"),
    ],
)
def test_a_bad_lvm_model_setting_is_refused_naming_its_path_on_the_api_and_the_cli(
    client: TestClient,
    capsys: pytest.CaptureFixture[str],
    settings: dict[str, Any],
    option: str,
    problem: str,
) -> None:
    # an LVM training's model_settings (LVMConfig's fields) was refused at loc ["model_settings"] with the
    # field only in the message ("model_settings: hidden: ..."), where a training's names the whole path
    body = _refused(client, "lvm_train", {"sequences": "s.npz", "model_settings": settings})
    loc = ["model_settings", option.partition("=")[0]]
    assert [error["loc"] for error in body["errors"]] == [loc]
    assert body["message"] == f"invalid lvm_train config: {'.'.join(loc)}: {problem}"
    code, out, err = run_captured(["lvm", "train", "--model-settings", option, "--print-config"], capsys)
    assert (code, out, err.strip()) == (2, "", f"error [invalid_config] {body['message']}")
    assert open_registry().list() == []


def _tiny_llama_and_prepared_elm_data(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under `data`: `llama`, an 8-wide Llama as its config.json names it (no weights: the submit reads only
    this), and `elm`, a prepared ELM layout's files (what elm_train checks at submit); a budget of 1e6."""
    llama = data / "llama"
    llama.mkdir(parents=True)
    (llama / "config.json").write_text(
        json.dumps({"model_type": "llama", "hidden_size": 8, "num_hidden_layers": 2, "vocab_size": 64})
    )
    for split in ("train", "val"):
        for part in (f"synthesis/{split}_synthesis.jsonl", f"embeddings/{split}_embeddings.safetensors"):
            (data / "elm" / part).parent.mkdir(parents=True, exist_ok=True)
            (data / "elm" / part).write_bytes(b"")
    # 4 training records: a batch of the smallest size an elm_optimize search tries (fewer are refused at
    # submit, which counts the synthesis file's lines)
    record = {"task_type": "summary", "embedding_index": 0, "target_text": "a summary"}
    (data / "elm" / "synthesis" / "train_synthesis.jsonl").write_text((json.dumps(record) + "\n") * 4)
    monkeypatch.setenv("TLDRLAB_MAX_MODEL_PARAMETERS", "1000000")
    get_settings.cache_clear()


def test_an_elm_adapter_on_a_pretrained_lm_over_the_parameter_budget_is_a_422_naming_the_field_and_count(
    client: TestClient, tldrlab_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The budget bounded an ELM only with lm=scratch: on a pretrained LM (a model directory, the bundled
    SmolLM2 GGUF) nothing was counted, though the adapter the run allocates and trains grows with
    num_prefix_tokens x the LM's width x (embedding_dim + hidden_dim). It is now counted at submit with the
    width the LM's files give (config.json's hidden_size, the GGUF header's embedding_length: no torch);
    the pretrained LM itself stays unbounded."""
    _tiny_llama_and_prepared_elm_data(tldrlab_home / "data", monkeypatch)
    model = {"lm": "llama", "freeze_lm": True, "num_prefix_tokens": 256, "hidden_dim": 512}
    body = _refused(client, "elm_train", {"data": "elm", "model": model})
    # 256 prefix vectors of 8 from 384-d embeddings: direct 788,480 + MLP 1,247,744 + drift head 3,456
    assert body["errors"][0]["loc"] == ["model", "num_prefix_tokens"]
    assert body["message"] == (
        "model.num_prefix_tokens: 2,039,680 parameters (2.04e+06), above the limit of 1,000,000 "
        "(TLDRLAB_MAX_MODEL_PARAMETERS) (the adapter and drift head on the pretrained LM llama, which is 8 "
        "wide: hidden_size in llama/config.json; the LM's own parameters are not counted)"
    )
    # the bundled SmolLM2 (576 wide, as its GGUF header says) at the default 8 prefix tokens: 4.6e6
    body = _refused(client, "elm_train", {"data": "elm", "model": {"lm": "smollm2", "freeze_lm": True}})
    assert "model.num_prefix_tokens: 4,556,672 parameters" in body["message"]
    assert "which is 576 wide: llama.embedding_length in " in body["message"]
    assert open_registry().list() == []
    model["num_prefix_tokens"] = 8  # 258,048 parameters; the LM's own are not counted
    accepted = client.post("/runs", json={"kind": "elm_train", "config": {"data": "elm", "model": model}})
    assert accepted.status_code == 202, accepted.text


def test_an_elm_search_whose_largest_adapter_is_over_the_parameter_budget_is_a_422_naming_hidden_dims(
    client: TestClient, tldrlab_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An elm_optimize submit counted its base config's hidden_dim, which no trial trains (each overrides it
    with one of `hidden_dims`), so a search whose largest adapter was over the budget began its study and
    its trials failed when they ran. The largest adapter the search can pick is now counted at submit."""
    _tiny_llama_and_prepared_elm_data(tldrlab_home / "data", monkeypatch)
    base = {"data": "elm", "model": {"lm": "llama", "freeze_lm": True}}
    body = _refused(client, "elm_optimize", {"base": base, "hidden_dims": [64, 4096]})
    # 8 prefix vectors of 8 from 384-d embeddings at hidden_dim 4096: direct 24,640 + MLP 1,839,168 + 3,456
    assert body["errors"][0]["loc"] == ["hidden_dims"]
    assert body["message"] == (
        "hidden_dims: 1,867,264 parameters (1.87e+06), above the limit of "
        "1,000,000 (TLDRLAB_MAX_MODEL_PARAMETERS) (the adapter and drift head with hidden_dim 4096, the "
        "largest the search tries, on the pretrained LM llama, which is 8 wide: hidden_size in "
        "llama/config.json; the LM's own parameters are not counted)"
    )
    # every trial over (even the smallest searched hidden_dim): refused where the base makes it so
    many = {**base, "model": {**base["model"], "num_prefix_tokens": 256}}
    body = _refused(client, "elm_optimize", {"base": many, "hidden_dims": [512, 1024]})
    assert body["errors"][0]["loc"] == ["base", "model", "num_prefix_tokens"]
    assert open_registry().list() == []
    accepted = client.post(
        "/runs", json={"kind": "elm_optimize", "config": {"base": base, "hidden_dims": [64, 2048]}}
    )
    assert accepted.status_code == 202, accepted.text  # 947,712 at hidden_dim 2048


def test_an_elm_compare_lm_adapter_over_the_parameter_budget_is_a_422_naming_its_bigger_part(
    client: TestClient,
    tldrlab_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Kind `elm_compare_lm` trains an ELM adapter on the pretrained LM (system elm; elm_lora, LoRA adapters
    of `lora_rank` too): its submit counts them against the parameter budget with elm_train's check
    (`check_compare_lm` -> `check_adapter_budget`), so a comparison whose adapters are over the budget is
    refused before a run exists, not once a worker has prepared the data and trained the other systems.
    Without a system that builds an adapter nothing is counted (the LM itself is not bounded). The refusal
    names the setting of the bigger part: LoRA adapters over the budget were refused at num_prefix_tokens,
    which no value could bring under it; they are refused at lora_rank (elm_train's too, and on the command
    line)."""
    data = tldrlab_home / "data"
    _tiny_llama_and_prepared_elm_data(data, monkeypatch)
    (data / "pairs.jsonl").write_text(
        json.dumps({"document": "a small library", "summary": "a library"}) + "\n"
    )
    over = {"data": "pairs.jsonl", "lm": "llama", "num_prefix_tokens": 256, "hidden_dim": 512}
    body = _refused(client, "elm_compare_lm", over)
    # as elm_train's: 256 prefix vectors of 8 from 384-d embeddings, direct 788,480 + MLP 1,247,744 + 3,456
    assert body["errors"][0]["loc"] == ["num_prefix_tokens"]
    assert body["message"] == (
        "num_prefix_tokens: 2,039,680 parameters (2.04e+06), above the limit of 1,000,000 "
        "(TLDRLAB_MAX_MODEL_PARAMETERS) (the adapter and drift head on the pretrained LM llama, which is 8 "
        "wide: hidden_size in llama/config.json; the LM's own parameters are not counted)"
    )
    # elm_lora: an adapter that fits (258,048 parameters) with LoRA adapters of rank 1024 on a Llama whose
    # projections LoRA finds (2 heads, a 256-wide MLP): 2 layers x 1024 x (4 x (8 + 8) + 3 x (8 + 256))
    lora_llama = data / "lora_llama"
    lora_llama.mkdir()
    sizes = {"hidden_size": 8, "num_attention_heads": 2, "num_key_value_heads": 2, "intermediate_size": 256}
    (lora_llama / "config.json").write_text(
        json.dumps({"model_type": "llama", "num_hidden_layers": 2, "vocab_size": 64, **sizes})
    )
    lora = {**over, "lm": "lora_llama", "num_prefix_tokens": 8, "lora_rank": 1024}
    body = _refused(client, "elm_compare_lm", {**lora, "systems": ["elm_lora"]})
    refusal = (
        "lora_rank: 2,011,136 parameters (2.01e+06), above the limit of 1,000,000 "
        "(TLDRLAB_MAX_MODEL_PARAMETERS) (the adapter and drift head, 258,048, and 1,753,088 LoRA parameters "
        "of rank 1024, on the pretrained LM lora_llama, which is 8 wide: hidden_size in "
        "lora_llama/config.json; the LM's own parameters are not counted)"
    )
    assert (body["errors"][0]["loc"], body["message"]) == (["lora_rank"], refusal)
    # elm_train with the same LoRA adapters: under its model section
    model = {"lm": "lora_llama", "freeze_lm": True, "lora_rank": 1024, "hidden_dim": 512}
    body = _refused(client, "elm_train", {"data": "elm", "model": model})
    assert (body["errors"][0]["loc"], body["message"]) == (["model", "lora_rank"], f"model.{refusal}")
    # the command line: the same line (its model reference is the directory's path there)
    argv = ["elm", "compare-lm", "--data", str(data / "pairs.jsonl"), "--lm", str(lora_llama)]
    argv += ["--systems", "elm_lora", "--lora-rank", "1024", "--hidden-dim", "512"]
    code, out, err = run_captured(argv, capsys)
    assert (code, out) == (2, ""), err
    assert err.strip().startswith(
        "error [invalid_config] lora_rank: 2,011,136 parameters (2.01e+06), above the limit of 1,000,000"
    ), err
    assert open_registry().list() == []
    # no system that builds an adapter; the adapter without LoRA (system elm): under the budget
    for fits in ({**over, "systems": ["zero_shot", "finetune"]}, {**lora, "systems": ["elm"]}):
        accepted = client.post("/runs", json={"kind": "elm_compare_lm", "config": fits})
        assert accepted.status_code == 202, accepted.text
