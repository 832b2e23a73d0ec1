"""The API process validates what clients submit without torch: `POST /runs` of every kind (a causal-LM
training on a pretrained model, an ELM on one, an lm_experiment included), `GET /kinds` and `/openapi.json`
import no torch, transformers, peft or accelerate (`tldrlab.kinds`: config classes and the kinds' checks
are torch-free). A causal-LM model's check imported transformers (its table of causal-LM model types) and
with it torch: ~2-3 s and hundreds of MB in the API process on the first such submit. So did LoRA's check
(a causal-LM training's `lora`, an ELM's `lora_rank`), which reads the modules of the model built on the
meta device: a child process builds that now (`models.causal_lm.meta_module_tree`), and a LoRA target the
model lacks is still refused at submit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sequencesutil import write_tiny_sequences

HEAVY = ("torch", "transformers", "peft", "accelerate")

TINY_LLAMA = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 8,
    "intermediate_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "vocab_size": 64,
}
"""A Llama-style causal LM as its config.json names it: what the submit checks read (no weights)."""

PAIRS = {"document": "A small library parses dates in many formats.", "summary": "A date parser."}

PAIRS_DATA = {"path": "pairs.jsonl"}

LORA = {"path": "llama", "lora": {"r": 4}}
"""LoRA on the Llama's own projections: found in its modules, from the model built on the meta device."""

NO_SUCH_TARGET = {"path": "llama", "lora": {"target_modules": ["q_proj", "nosuch_proj"]}}
"""Refused at submit (by the same check, which needs the modules): the Llama has no `nosuch_proj`."""

SWEEP = {
    "name": "lr",
    "program": "tldrlab.train",
    "method": "random",
    "run_cap": 2,
    "metric": {"name": "eval_loss", "goal": "minimize"},
    "parameters": {"train.lr": {"values": [0.001, 0.003]}},
    "config": {"model": "char_lstm", "data": {"path": "text.txt"}, "train": {"max_steps": 1}},
}

SUBMITS: list[tuple[str, dict[str, object], int]] = [
    # (kind, config, the status expected): each kind's validation, confinement, check and prepare run
    ("train", {"model": "causal_lm", "model_settings": {"path": "llama"}, "data": PAIRS_DATA}, 202),
    ("train", {"model": "causal_lm", "data": PAIRS_DATA}, 202),  # the bundled SmolLM2 GGUF
    ("train", {"model": "causal_lm", "model_settings": {"path": "t5"}, "data": PAIRS_DATA}, 422),
    ("train", {"model": "causal_lm", "model_settings": LORA, "data": PAIRS_DATA}, 202),
    ("train", {"model": "causal_lm", "model_settings": NO_SUCH_TARGET, "data": PAIRS_DATA}, 422),
    ("train", {"model": "gpt2", "model_settings": {"size": "tiny"}, "data": {"path": "text.txt"}}, 202),
    ("train", {"model": "t5", "data": {"path": "pairs.jsonl"}}, 202),
    ("train", {"model": "char_lstm", "data": {"path": "text.txt"}}, 202),
    ("elm_train", {"data": "elm"}, 202),
    ("elm_train", {"data": "elm", "model": {"lm": "llama", "freeze_lm": True}}, 202),
    ("elm_train", {"data": "elm", "model": {"lm": "t5", "freeze_lm": True}}, 422),
    ("elm_train", {"data": "elm", "model": {"lm": "llama", "freeze_lm": True, "lora_rank": 4}}, 202),
    ("elm_optimize", {"base": {"data": "elm", "model": {"lm": "llama", "freeze_lm": True}}}, 202),
    ("elm_compare_lm", {"data": "pairs.jsonl", "lm": "llama", "systems": ["elm"]}, 202),
    ("elm_prepare", {"data": "pairs.jsonl", "out": "prepared"}, 202),
    ("elm_evaluate", {"predictions": "predictions.jsonl", "references": "references.jsonl"}, 202),
    ("lm_experiment", {"data": "pairs.jsonl", "model": "llama"}, 202),
    ("lm_experiment", {"data": "pairs.jsonl", "model": "t5", "arms": ["baseline"]}, 422),
    ("lm_compress", {"model": "llama", "calibration_data": "pairs.jsonl"}, 202),
    ("experiment", {"data": "pairs.jsonl"}, 202),
    ("tokenizer", {"corpus": ["text.txt"], "vocab_size": 300}, 202),
    ("evaluate", {"model_run": "llama", "data": "pairs.jsonl"}, 202),
    ("generate", {"model_run": "llama", "prompts": ["hi"]}, 202),
    ("score", {"model_run": "llama", "text": "hi"}, 202),
    ("ingest", {"path": "thread.json"}, 202),
    ("ingest", {"path": "text.txt"}, 422),  # records, not threads: refused by its check, which ran
    ("highlight_scorer_train", {"qmsum_train": "pairs.jsonl"}, 202),
    ("highlight_reranker_train", {"qmsum_train": "pairs.jsonl"}, 202),
    ("lvm_ingest", {"path": "text.txt"}, 202),
    ("lvm_train", {"sequences": "sequences.npz"}, 202),
    ("lvm_index", {}, 422),  # nothing ingested: refused by its check, which ran
    ("lvm_sequences", {"out": "s.npz"}, 422),
    ("lvm_evaluate", {"sequences": "sequences.npz"}, 202),
    ("lvm_generate", {"run": "llama", "sequences": "sequences.npz"}, 202),
    ("smoke", {}, 202),
    ("sweep", {"sweep": SWEEP}, 202),
]

SCRIPT = r"""
import importlib.abc, json, sys, traceback

heavy, submits = json.loads(sys.argv[1]), json.loads(sys.argv[2])
importers = {}  # heavy module -> (what was being asked, tldrlab's frames that imported it)
asking = ["creating the app"]


class RecordHeavyImports(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in heavy and name not in importers:
            stack = traceback.extract_stack()[:-1]
            if any(frame.name == "_find_and_load" for frame in stack):  # an import, not a find_spec()
                frames = [f"{f.filename.rsplit('/src/', 1)[-1]}:{f.lineno} {f.name}" for f in stack]
                importers[name] = (asking[0], [f for f in frames if f.startswith("tldrlab/")])
        return None


sys.meta_path.insert(0, RecordHeavyImports())
from fastapi.testclient import TestClient
from tldrlab.service.app import create_app

client = TestClient(create_app())
answers = []
for path in ("/kinds", "/openapi.json"):
    asking[0] = "GET " + path
    answers.append((path, client.get(path).status_code, ""))
for kind, config, _ in submits:
    asking[0] = f"POST /runs {kind} {json.dumps(config)}"
    response = client.post("/runs", json={"kind": kind, "config": config})
    answers.append((kind, response.status_code, response.text if response.status_code != 202 else ""))
loaded = [name for name in heavy if name in sys.modules]
print(json.dumps({"answers": answers, "loaded": loaded, "importers": importers}))
"""


def _write_inputs(data: Path) -> None:
    data.mkdir(parents=True)
    (data / "text.txt").write_text("To be, or not to be, that is the question.\n" * 20)
    (data / "pairs.jsonl").write_text(json.dumps(PAIRS) + "\n")
    thread = {"id": "t1", "title": "Dates", "posts": [{"id": "p1", "number": 1, "text": "Which parser?"}]}
    (data / "thread.json").write_text(json.dumps(thread))
    (data / "predictions.jsonl").write_text(json.dumps({"prediction": "A date parser."}) + "\n")
    (data / "references.jsonl").write_text(json.dumps({"reference": "A date parser."}) + "\n")
    # a sequences file as `lvm sequences` writes it: the submit checks every array's layout from its header
    # and reads the split codes
    write_tiny_sequences(data / "sequences.npz")
    (data / "llama").mkdir()
    (data / "llama" / "config.json").write_text(json.dumps(TINY_LLAMA))
    (data / "t5").mkdir()
    (data / "t5" / "config.json").write_text(json.dumps({"model_type": "t5", "d_model": 8}))
    for split in ("train", "val"):  # a prepared ELM layout's files (what elm_train checks at submit)
        for part in (f"synthesis/{split}_synthesis.jsonl", f"embeddings/{split}_embeddings.safetensors"):
            (data / "elm" / part).parent.mkdir(parents=True, exist_ok=True)
            (data / "elm" / part).write_bytes(b"")
    # 4 training records: a batch of the smallest size an elm_optimize search tries (fewer are refused at
    # submit, which counts the synthesis file's lines)
    record = {"task_type": "summary", "embedding_index": 0, "target_text": "a summary"}
    (data / "elm" / "synthesis" / "train_synthesis.jsonl").write_text((json.dumps(record) + "\n") * 4)


def test_submitting_every_kind_imports_no_torch_in_the_api_process(tldrlab_home: Path) -> None:
    """One fresh interpreter (this one imported torch long ago) asks everything of the app in turn."""
    _write_inputs(tldrlab_home / "data")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(HEAVY), json.dumps(SUBMITS)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TLDRLAB_HOME": str(tldrlab_home)},
    )
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout.strip().splitlines()[-1])
    expected = [200, 200, *(status for _, _, status in SUBMITS)]
    answers = zip(found["answers"], expected, strict=True)
    assert [answer for answer, status in answers if answer[1] != status] == []
    # the LoRA check ran (in its child process), and refused the target the Llama lacks at its field
    refusals = [text for kind, status, text in found["answers"] if "nosuch_proj" in text]
    assert len(refusals) == 1 and "lora.target_modules" in refusals[0], refusals
    assert "LoRA target modules not in the model: nosuch_proj" in refusals[0], refusals
    importers = {name: found["importers"].get(name) for name in found["loaded"]}
    assert found["loaded"] == [], json.dumps(importers, indent=1)
