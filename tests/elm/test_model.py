"""The adapter and the ELM model: shapes, where the prefix goes, frozen LMs, LM sources, save / load."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cliutil import run_captured
from tldrlab.elm.model import (
    ElmModelConfig,
    SummaryAdapter,
    build_elm,
    encode_template,
    generate_summaries,
    lm_source,
    load_elm,
    prompt_ids,
    save_elm,
)
from tldrlab.errors import CheckpointError, ConfigError
from tldrlab.runs import open_registry, start_run
from tldrlab.tokenizers import load_tokenizer

TEMPLATE = "Summarize the following text:\n\n{text}\n\nSummary:"


def test_adapter_shapes_and_residual_scale() -> None:
    torch.manual_seed(0)
    config = ElmModelConfig(
        embedding_dim=12, num_prefix_tokens=3, hidden_dim=20, dropout=0.0, residual_scale=0.0
    )
    adapter = SummaryAdapter(12, 16, config)
    x = torch.randn(5, 12)
    out = adapter(x)
    assert out.shape == (5, 3, 16)
    # residual_scale 0: the prefix is the direct linear projection alone
    assert torch.allclose(out, adapter.direct(x).view(5, 3, 16))
    adapter.residual_scale = 0.5
    assert torch.allclose(adapter(x), (adapter.direct(x) + 0.5 * adapter.mlp(x)).view(5, 3, 16))


def test_prefix_lands_on_the_masked_positions(elm_tokenizer: Path) -> None:
    torch.manual_seed(0)
    tokenizer = load_tokenizer(elm_tokenizer)
    config = ElmModelConfig(
        embedding_dim=8, num_prefix_tokens=4, hidden_dim=16, dropout=0.0, lm_settings={"dropout": 0.0}
    )
    model, tokenizer = build_elm(config, tokenizer)
    before, after = encode_template(tokenizer, TEMPLATE)
    assert before and after
    ids, mask = prompt_ids(before, after, 4, tokenizer.pad_token_id)
    input_ids = torch.tensor([ids, ids])
    prefix_mask = torch.tensor([mask, mask])
    emb = torch.randn(2, 8)
    embeds = model.input_embeds(emb, input_ids, prefix_mask)
    prefix = model.adapter(emb)
    assert torch.equal(embeds[prefix_mask].view(2, 4, -1), prefix)
    tokens = model.lm.get_input_embeddings()(input_ids)  # type: ignore[operator]
    assert torch.equal(embeds[~prefix_mask], tokens[~prefix_mask])
    out = model(emb, input_ids, torch.ones_like(input_ids), prefix_mask, target_mask=~prefix_mask)
    assert out["logits"].shape == (2, len(ids), len(tokenizer)) and out["summary"].shape == (2, 8)
    # different embeddings -> different next-token distributions (the LM reads the prefix)
    assert not torch.allclose(out["logits"][0, -1], out["logits"][1, -1])


def test_frozen_lm_only_trains_adapter_and_head(elm_tokenizer: Path) -> None:
    tokenizer = load_tokenizer(elm_tokenizer)
    model, _ = build_elm(ElmModelConfig(embedding_dim=8, freeze_lm=True), tokenizer)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("adapter.", "drift_head.")) for n in trainable)


@pytest.mark.filterwarnings("error:.*past_key_values.*:FutureWarning")  # an API transformers 5.40 removes
def test_lm_by_path_save_load_and_generate(elm_tokenizer: Path, tmp_path: Path) -> None:
    """A GPT-2 saved by tldrlab (lm source `tldrlab`), and the same directory as a plain HF causal LM."""
    from tldrlab.models import build_model, save_model

    torch.manual_seed(0)
    tokenizer = load_tokenizer(elm_tokenizer)
    save_model(build_model("gpt2", {"size": "tiny"}, tokenizer), tokenizer, tmp_path / "gpt2")
    assert lm_source(str(tmp_path / "gpt2")) == "tldrlab" and lm_source("scratch") == "scratch"
    model, tok = build_elm(ElmModelConfig(lm=str(tmp_path / "gpt2"), embedding_dim=8, freeze_lm=True))
    assert tok.eos_token_id == tokenizer.eos_token_id
    emb = torch.randn(3, 8)
    first = generate_summaries(model, tok, emb, [TEMPLATE] * 3, max_new_tokens=6)
    # batched greedy decoding equals decoding each document alone
    alone = [
        generate_summaries(model, tok, emb[i : i + 1], [TEMPLATE], max_new_tokens=6)[0] for i in range(3)
    ]
    assert first == alone

    save_elm(model, tok, tmp_path / "elm")
    assert not (tmp_path / "elm" / "lm" / "model.safetensors").exists()  # frozen external LM: referenced
    loaded, loaded_tok = load_elm(tmp_path / "elm")
    assert generate_summaries(loaded, loaded_tok, emb, [TEMPLATE] * 3, max_new_tokens=6) == first

    # the same directory as a generic Hugging Face causal LM (no tldrlab manifest)
    (tmp_path / "gpt2" / "tldrlab_model.json").unlink()
    assert lm_source(str(tmp_path / "gpt2")) == "hf"
    hf_model, _ = build_elm(ElmModelConfig(lm=str(tmp_path / "gpt2"), embedding_dim=8))
    assert hf_model.lm.config.model_type == "gpt2"  # type: ignore[union-attr]


def test_bad_model_inputs_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs a tokenizer"):
        build_elm(ElmModelConfig())
    (tmp_path / "elm").mkdir()
    (tmp_path / "elm" / "elm_config.json").write_text("{not json")
    with pytest.raises(CheckpointError):
        load_elm(tmp_path / "elm")


def test_predictions_of_a_split_a_synthesis_file_or_texts(
    elm_data: Path, elm_tokenizer: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tldrlab.cli.main import main
    from tldrlab.elm.evaluate import predict

    torch.manual_seed(0)
    model, tok = build_elm(ElmModelConfig(embedding_dim=384, hidden_dim=16), load_tokenizer(elm_tokenizer))
    saved = save_elm(model, tok, tmp_path / "elm")
    rows = predict(str(saved), data=elm_data, split="test", limit=2, max_new_tokens=3)
    assert len(rows) == 2 and all(r["reference"] and "prediction" in r for r in rows)
    synthesis = elm_data / "synthesis" / "test_synthesis.jsonl"
    assert predict(str(saved), input=synthesis, limit=2, max_new_tokens=3) == rows
    assert [set(r) for r in predict(str(saved), texts=["apt is a package manager"], max_new_tokens=3)] == [
        {"prediction"}
    ]
    with pytest.raises(ConfigError, match="exactly one of --data"):
        predict(str(saved), data=elm_data, texts=["x"])
    out = tmp_path / "preds.jsonl"
    main(["elm", "generate", "--model", str(saved), "--data", str(elm_data), "--limit", "2",
          "--max-new-tokens", "3", "--output", str(out)])  # fmt: skip
    assert "2 predictions written" in capsys.readouterr().out and len(out.read_text().splitlines()) == 2
    # --json, as `tldrlab generate --json`: one object with the model and every output
    main(["elm", "generate", "--model", str(saved), "--data", str(elm_data), "--limit", "2",
          "--max-new-tokens", "3", "--json"])  # fmt: skip
    shown = json.loads(capsys.readouterr().out)
    assert shown == {"model": str(saved), "predictions": rows, "output": None}
    main(["elm", "generate", "--model", str(saved), "--text", "apt is a package manager", "--max-new-tokens",
          "3", "--json"])  # fmt: skip
    assert [set(r) for r in json.loads(capsys.readouterr().out)["predictions"]] == [{"prediction"}]


def test_generate_never_writes_its_output_over_what_the_home_stores(
    elm_data: Path,
    elm_tokenizer: Path,
    tmp_path: Path,
    tldrlab_home: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `elm generate --output <home>/tldrlab.db` replaced the run registry with prediction rows (every later
    # command failed); a run's own file named so was replaced too
    torch.manual_seed(0)
    model, tok = build_elm(ElmModelConfig(embedding_dim=384, hidden_dim=16), load_tokenizer(elm_tokenizer))
    saved = save_elm(model, tok, tmp_path / "elm")
    with start_run("train", {}) as run:
        run_id = run.id
    registry_db = tldrlab_home / "tldrlab.db"
    manifest = tldrlab_home / "runs" / run_id / "manifest.json"
    kept_db, kept_manifest = registry_db.read_bytes(), manifest.read_bytes()
    for out, said in (
        (registry_db, "is a database of the tldrlab home"),
        (manifest, f"is a file of run {run_id}"),
    ):
        argv = ["elm", "generate", "--model", str(saved), "--data", str(elm_data), "--limit", "1",
                "--max-new-tokens", "2", "--output", str(out)]  # fmt: skip
        code, _, err = run_captured(argv, capsys)
        assert code == 2 and f"--output: {out} {said}" in err and "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1, err
    assert registry_db.read_bytes() == kept_db and manifest.read_bytes() == kept_manifest
    assert [r.id for r in open_registry().list()] == [run_id]
