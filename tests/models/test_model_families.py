"""Every model family builds, trains a step, saves and reloads identically; plain transformers reads it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from cliutil import run_captured
from tldrlab.errors import CheckpointError, ConfigError, InvalidInputError, NotFoundError
from tldrlab.models import MODELS, build_model, count_parameters, load_model, model_task, save_model
from tldrlab.models.char_lstm import CharLSTM
from tldrlab.runs import create_run

TINY: dict[str, dict[str, Any]] = {
    "t5": {"size": "tiny", "dropout": 0.0},
    "gpt2": {"size": "tiny", "dropout": 0.0},
    "char_lstm": {"embedding_dim": 32, "hidden_dim": 48, "num_layers": 2, "dropout": 0.0},
}
TEXT = "First Citizen:\nBefore we proceed any further, hear me speak."


@pytest.fixture(scope="module")
def tokenizer(shakespeare_tokenizer: Callable[..., Any]) -> Any:
    return shakespeare_tokenizer("bpe", 400, chars=30_000)


@pytest.fixture(scope="module", autouse=True)
def tiny_causal_lm(tokenizer: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    """causal_lm loads pretrained weights: a tiny Llama directory with this module's tokenizer."""
    from tinylm import save_tiny_model, tiny_llama

    directory = tmp_path_factory.mktemp("tiny-llama")
    save_tiny_model(tiny_llama(tokenizer), tokenizer, directory)
    TINY["causal_lm"] = {"path": str(directory)}


def batch(tokenizer: Any, name: str) -> dict[str, torch.Tensor]:
    ids = torch.tensor([tokenizer.encode(TEXT, add_special_tokens=False)])
    if model_task(name) == "seq2seq":
        labels = torch.tensor([[*tokenizer.encode("hear me speak", add_special_tokens=False), 3]])
        return {"input_ids": ids, "labels": labels}
    return {"input_ids": ids, "labels": ids}


@pytest.mark.parametrize("name", list(MODELS))
def test_build_step_save_load_identical(name: str, tokenizer: Any, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(name, TINY[name], tokenizer)
    assert count_parameters(model) > 0
    inputs = batch(tokenizer, name)

    out = model(**inputs)
    assert out.logits.shape[-1] == len(tokenizer)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.01 * p.grad  # one plain SGD step so saved weights differ from a fresh init

    model.eval()
    with torch.no_grad():
        expected = model(**inputs)
    save_model(model, tokenizer, tmp_path / "model")
    meta = json.loads((tmp_path / "model" / "tldrlab_model.json").read_text())
    assert meta == {"name": name, "task": model_task(name)}
    files = {p.name for p in (tmp_path / "model").iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"} <= files
    assert not any(f.endswith((".bin", ".pt", ".pkl")) for f in files)

    loaded, loaded_tok, loaded_name = load_model(tmp_path / "model")
    assert loaded_name == name and not loaded.training
    assert loaded_tok.encode(TEXT, add_special_tokens=False) == tokenizer.encode(
        TEXT, add_special_tokens=False
    )
    with torch.no_grad():
        again = loaded(**inputs)
    torch.testing.assert_close(again.logits, expected.logits)
    assert float(again.loss) == pytest.approx(float(expected.loss))
    assert count_parameters(loaded) == count_parameters(model)


@pytest.mark.parametrize(
    ("name", "auto"), [("t5", "AutoModelForSeq2SeqLM"), ("gpt2", "AutoModelForCausalLM")]
)
def test_plain_transformers_loads_saved_dirs(name: str, auto: str, tokenizer: Any, tmp_path: Path) -> None:
    import transformers

    model = build_model(name, TINY[name], tokenizer).eval()
    save_model(model, tokenizer, tmp_path)
    plain = getattr(transformers, auto).from_pretrained(tmp_path).eval()
    plain_tok = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert plain_tok.pad_token_id == 0 and plain_tok.eos_token_id == 3
    inputs = batch(plain_tok, name)
    with torch.no_grad():
        torch.testing.assert_close(plain(**inputs).logits, model(**inputs).logits)
    if name == "t5":
        assert plain.config.decoder_start_token_id == plain_tok.pad_token_id
        generated = plain.generate(inputs["input_ids"], max_new_tokens=4, do_sample=False)
        assert generated.shape[1] <= 5


def test_named_sizes_and_explicit_dims(tokenizer: Any) -> None:
    tiny = build_model("t5", {"size": "tiny"}, tokenizer)
    wider = build_model("t5", {"size": "tiny", "d_model": 96, "num_decoder_layers": 1}, tokenizer)
    assert tiny.config.d_model == 64 and wider.config.d_model == 96
    assert wider.config.num_decoder_layers == 1 and wider.config.num_layers == 2
    assert count_parameters(wider) > count_parameters(tiny)
    gpt = build_model("gpt2", {"size": "mini", "n_positions": 64}, tokenizer)
    assert (gpt.config.n_embd, gpt.config.n_layer, gpt.config.n_positions) == (128, 4, 64)
    assert gpt.config.vocab_size == len(tokenizer)


def test_from_pretrained_builds_from_a_saved_dir(tokenizer: Any, tmp_path: Path) -> None:
    original = build_model("gpt2", TINY["gpt2"], tokenizer).eval()
    save_model(original, tokenizer, tmp_path)
    again = build_model("gpt2", {"from_pretrained": str(tmp_path)}, tokenizer).eval()
    ids = batch(tokenizer, "gpt2")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(again(ids).logits, original(ids).logits)


def test_char_lstm_tied_weights_and_shifted_loss(tokenizer: Any, tmp_path: Path) -> None:
    model = build_model("char_lstm", {**TINY["char_lstm"], "tie_weights": True}, tokenizer)
    assert isinstance(model, CharLSTM)
    assert model.head.weight is model.embedding.weight
    ids = batch(tokenizer, "char_lstm")["input_ids"]
    out = model(ids, labels=ids)
    manual = torch.nn.functional.cross_entropy(out.logits[0, :-1], ids[0, 1:])
    assert float(out.loss.detach()) == pytest.approx(float(manual.detach()), rel=1e-5)
    untied = build_model("char_lstm", TINY["char_lstm"], tokenizer)
    assert count_parameters(model) < count_parameters(untied)
    save_model(model, tokenizer, tmp_path)
    loaded, _, _ = load_model(tmp_path)
    assert loaded.head.weight is loaded.embedding.weight


def test_char_lstm_learns(tokenizer: Any) -> None:
    torch.manual_seed(0)
    model = build_model("char_lstm", TINY["char_lstm"], tokenizer)
    ids = batch(tokenizer, "char_lstm")["input_ids"]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = model(ids, labels=ids).loss.item()
    for _ in range(30):
        optimizer.zero_grad()
        loss = model(ids, labels=ids).loss
        loss.backward()
        optimizer.step()
    assert model(ids, labels=ids).loss.item() < first / 2


def test_load_model_by_run_id_and_atomic_replace(tokenizer: Any) -> None:
    record = create_run("train", {"model": "gpt2"})
    model_dir = Path(record.run_dir) / "model"
    save_model(build_model("gpt2", TINY["gpt2"], tokenizer), tokenizer, model_dir)
    save_model(build_model("char_lstm", TINY["char_lstm"], tokenizer), tokenizer, model_dir)
    _, _, name = load_model(record.id)
    assert name == "char_lstm"  # the second save replaced the first completely
    assert sorted(p.name for p in model_dir.parent.iterdir() if p.name.startswith(".")) == []


def test_bad_names_and_configs(tokenizer: Any, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown model 'bert'"):
        build_model("bert", {}, tokenizer)
    with pytest.raises(ConfigError, match="d_modle"):
        build_model("t5", {"d_modle": 64}, tokenizer)
    with pytest.raises(ConfigError, match="divisible"):
        build_model("gpt2", {"n_embd": 30, "n_head": 4}, tokenizer)
    with pytest.raises(ConfigError, match="size"):
        build_model("gpt2", {"size": "huge"}, tokenizer)
    with pytest.raises(NotFoundError):
        load_model(tmp_path / "nothing-here")
    assert model_task("t5") == "seq2seq" and model_task("gpt2") == model_task("char_lstm") == "causal_lm"


def test_load_model_reads_a_plain_transformers_dir(tokenizer: Any, tmp_path: Path) -> None:
    """A directory written by transformers alone (no tldrlab_model.json) loads; config names the family."""
    model = build_model("t5", TINY["t5"], tokenizer).eval()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert not (tmp_path / "tldrlab_model.json").exists()
    loaded, loaded_tok, name = load_model(tmp_path)
    assert name == "t5" and loaded_tok is not None
    inputs = batch(tokenizer, "t5")
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits)


@pytest.mark.parametrize("name", ["gpt2", "char_lstm"])
def test_truncated_weights_are_a_checkpoint_error(name: str, tokenizer: Any, tmp_path: Path) -> None:
    save_model(build_model(name, TINY[name], tokenizer), tokenizer, tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=f"cannot load the {name} model"):
        load_model(tmp_path)


@pytest.mark.parametrize("name", ["t5", "char_lstm"])
def test_importing_a_model_that_is_no_causal_lm_says_so(
    name: str, tokenizer: Any, tmp_path: Path, tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `models import` of a t5 or char_lstm run's model was a `checkpoint_corrupt` error (exit 5) listing
    # transformers' two hundred causal-LM config classes: the files are fine, the model is of another kind
    save_model(build_model(name, TINY[name], tokenizer), tokenizer, tmp_path / "model", name=name)
    code, _, err = run_captured(["models", "import", str(tmp_path / "model"), "--name", "x"], capsys)
    assert code == InvalidInputError.exit_code, err
    assert f"holds a {name} model, not a causal LM" in err and "Model type should be one of" not in err
    assert not (tldrlab_home / "models" / "x").exists()
