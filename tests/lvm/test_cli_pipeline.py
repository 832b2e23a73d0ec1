"""The `tldrlab lvm` commands end to end on a tiny real corpus (real MiniLM, real SQLite, real FAISS)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tldrlab.cli.main import main
from tldrlab.lvm.baselines import BASELINES
from tldrlab.lvm.chunking import ChunkingConfig, chunk_article

TOPICS = {
    "bees": [
        "Bees are flying insects closely related to wasps and ants.",
        "Bees collect nectar and pollen from flowers.",
        "A honey bee colony has one queen and many workers.",
        "Worker bees build wax combs inside the hive.",
        "Bees turn nectar into honey and store it in the comb.",
        "Beekeepers harvest honey from the hives in late summer.",
    ],
    "volcanoes": [
        "A volcano is a rupture in the crust of a planet.",
        "Magma rises from the mantle through the crust.",
        "When magma reaches the surface it is called lava.",
        "Explosive eruptions throw ash high into the atmosphere.",
        "Volcanic ash can disrupt air travel for days.",
        "Mount Etna in Sicily is one of the most active volcanoes.",
    ],
    "chess": [
        "Chess is a board game for two players.",
        "Each player begins with sixteen pieces.",
        "The aim of the game is to checkmate the opposing king.",
        "Openings are the first moves of a game of chess.",
        "Grandmasters study endgames for many years.",
        "Computers now play chess better than any human.",
    ],
    "bread": [
        "Bread is a staple food made from flour and water.",
        "Yeast makes the dough rise by producing gas.",
        "The dough is kneaded to develop gluten.",
        "Loaves are baked in a hot oven until the crust is brown.",
        "Sourdough uses wild yeast and lactic acid bacteria.",
        "Fresh bread is best eaten on the day it is baked.",
    ],
}


def _articles(path: Path) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for i, (title, sentences) in enumerate(TOPICS.items()):
            row = {
                "id": f"t:{i}",
                "title": title,
                "url": f"https://example.org/{title}",
                "text": " ".join(sentences),
            }
            handle.write(json.dumps(row) + "\n")
    return path


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    main(list(args))
    return capsys.readouterr().out


@pytest.mark.slow
def test_ingest_index_sequences_evaluate_decode(
    tmp_path: Path, tldrlab_home: Path, capsys: pytest.CaptureFixture[str], tiny_causal_lm: Path
) -> None:
    articles = _articles(tmp_path / "articles.jsonl")
    out = _cli(capsys, "lvm", "ingest", str(articles), "--format", "wikipedia", "--domain", "demo")
    assert "4 articles -> 24 concepts" in out
    metrics_files = list((tldrlab_home / "runs").glob("lvm_ingest-*/pipeline_metrics.json"))
    metrics = json.loads(metrics_files[0].read_text())
    assert metrics["concepts"] == 24 and metrics["dim"] == 384 and metrics["source"] == "wikipedia"
    assert {"read", "chunk", "embed", "store"} <= set(metrics["stage_seconds"])

    from tldrlab.lvm.store import open_concept_store

    store = open_concept_store()
    concepts, vectors = store.article_concepts("wikipedia", "t:0")
    store.close()
    assert [c.text for c in concepts] == TOPICS["bees"] and concepts[0].domain == "demo"
    assert vectors.shape == (6, 384)

    # TMD codes were assigned at ingest; stats show counts, dimensions, samples and their distribution
    out = " ".join(_cli(capsys, "lvm", "stats", "--samples", "2").split())
    assert "concept store" in out and "TMD domain:" in out and "wikipedia/t:" in out
    stats = json.loads(_cli(capsys, "lvm", "stats", "--json"))
    (row,) = stats["sources"]
    assert row["embedder"].startswith("minilm")  # the embedder setting (minilm or its ONNX build)
    assert (row["source"], row["articles"], row["concepts"], row["tmd_labelled"], row["dim"]) == (
        "wikipedia",
        4,
        24,
        24,
        384,
    )
    assert sum(stats["tmd"]["task"].values()) == 24 and len(stats["samples"]) == 5
    assert stats["samples"][0]["tmd"].count("/") == 2  # the label's code, as GET /lvm/stats gives it
    assert "'wikipedia': 24" in _cli(capsys, "lvm", "tmd", "--source", "wikipedia")
    assert "flat_ip index of 24 concepts" in _cli(capsys, "lvm", "index")
    out = _cli(capsys, "lvm", "sequences", "--context", "3", "--val", "0.25", "--test", "0.25")
    assert "'train': 10" in out and (tldrlab_home / "lvm" / "sequences.npz").exists()

    out = _cli(capsys, "lvm", "evaluate", "--out", str(tmp_path / "report"))
    assert "validation split, 5 sequences" in out and "test split" not in out  # val unless told
    report = json.loads((tmp_path / "report" / "evaluation_val.json").read_text())
    assert report["split"] == "val" and [r["name"] for r in report["results"]] == list(BASELINES)
    copy_last = report["results"][0]["metrics"]
    # copy-last retrieves itself unless the context is excluded
    assert copy_last["top1"] == 0.0 and copy_last["cosine"] < 1.0
    assert (tmp_path / "report" / "evaluation_val.png").stat().st_size > 1000
    assert "Best baselines: cosine" in (tmp_path / "report" / "evaluation_val.md").read_text()
    out = _cli(capsys, "lvm", "evaluate", "--baselines", "copy_last,decay_top1")
    assert "decay_top1" in out and "mean_ridge" not in out
    with pytest.raises(SystemExit) as exc:
        main(["lvm", "evaluate", "--baselines", "copy_last,median"])
    assert exc.value.code == 2 and "unknown baseline 'median'" in capsys.readouterr().err

    # decode through an (untrained, mean-skip) model directory: nearest concepts come back with provenance
    from tldrlab.lvm.models import LVMConfig, build_lvm, save_lvm

    model_dir = save_lvm(build_lvm("gru", LVMConfig(dim=384, hidden=16, context=3)), tmp_path / "model")
    out = _cli(
        capsys, "lvm", "generate", str(model_dir), "--article", "wikipedia/t:1", "--position", "3",
        "--nearest",
    )  # fmt: skip
    assert "true next (3): Explosive eruptions" in out and "wikipedia/t:1#" in out
    assert out.count("wikipedia/t:") == 5  # --nearest lists 5 nearest concepts unless --k says otherwise
    # `lvm decode`, the old name, is `generate --nearest`
    out = _cli(capsys, "lvm", "decode", str(model_dir), "--text", "Yeast makes the dough rise.", "--k", "2")
    assert out.count("wikipedia/t:") == 2 and "decoded:" not in out
    # text out: two steps continued from the store, each smoothed by a (tiny) local LM
    out = _cli(
        capsys, "lvm", "generate", str(model_dir), "--article", "wikipedia/t:1", "--position", "3",
        "--steps", "2", "--smooth", "--lm", str(tiny_causal_lm),
    )  # fmt: skip
    assert "1. decoded:" in out and "2. decoded:" in out and out.count("smoothed:") == 2
    assert "true next (3): Explosive eruptions" in out and "smooth" in out
    # `--measure N` without --split scores the validation split (it scored cross, else test)
    out = _cli(capsys, "lvm", "generate", str(model_dir), "--measure", "2")
    assert "next sentence on 2 val windows" in " ".join(out.split())

    # another corpus (WikiText format) as an unseen test split: scored in its own table
    unseen = tmp_path / "wiki.valid.tokens"
    unseen.write_text(
        " = Glaciers = \n \n A glacier is a persistent body of dense ice . It moves under its own weight . \n"
        " = = Formation = = \n Glaciers form where snow accumulates faster than it melts . \n"
        " = Deserts = \n \n A desert is a barren area of landscape . Little rain falls there . "
        "Deserts cover about one third of the land surface . \n",
        encoding="utf-8",
    )
    out = _cli(capsys, "lvm", "ingest", str(unseen))
    assert "2 articles -> 7 concepts" in out and "wikitext" in out  # the heading is a concept too
    out = _cli(
        capsys,
        "lvm",
        "sequences",
        "--context",
        "3",
        "--val",
        "0.25",
        "--test",
        "0.25",
        "--test-source",
        "wikitext",
    )
    assert "'cross': 5" in out and "0 of 7 test-source concepts" in " ".join(out.split())
    # the test splits are scored when named, each in its own table and files
    out = _cli(capsys, "lvm", "evaluate", "--split", "cross", "--out", str(tmp_path / "cross"))
    assert "cross-corpus test split, 5 sequences" in out and "in-corpus" not in out
    cross = json.loads((tmp_path / "cross" / "evaluation_cross.json").read_text())
    assert cross["split"] == "cross" and [r["name"] for r in cross["results"]] == list(BASELINES)
    out = _cli(capsys, "lvm", "evaluate", "--split", "test", "--out", str(tmp_path / "cross"))
    assert "in-corpus test split, 5 sequences" in out
    assert json.loads((tmp_path / "cross" / "evaluation.json").read_text())["split"] == "test"
    out = _cli(
        capsys, "lvm", "generate", str(model_dir), "--measure", "3", "--split", "cross", "--smooth",
        "--lm", str(tiny_causal_lm),
    )  # fmt: skip
    assert "next sentence on 3 cross windows" in " ".join(out.split()) and "copy_last" in out
    runs = (json.loads(p.read_text()) for p in (tldrlab_home / "runs").glob("lvm_generate-*/generation.json"))
    measured = next(report for report in runs if report["split"] == "cross")
    assert set(measured["methods"]) == {"raw", "smoothed", "copy_last"} and measured["windows"] == 3


def test_semantic_chunks_merge_similar_neighbours_with_exact_spans() -> None:
    from tldrlab.embed import get_embedder

    embedder = get_embedder("minilm")
    text = " ".join(TOPICS["bees"] + TOPICS["chess"])
    config = ChunkingConfig(method="semantic", max_chars=200, threshold=0.3)
    chunks = chunk_article(text, config, lambda texts: embedder.encode(texts))
    assert 2 <= len(chunks) < 12
    for chunk in chunks:
        assert text[chunk.start : chunk.end] == chunk.text
        assert len(chunk.text) <= 200 or "." not in chunk.text[:-1]
    # no chunk mixes bees and chess
    for chunk in chunks:
        assert not ("bee" in chunk.text.lower() and "chess" in chunk.text.lower())
    assert (
        chunk_article(text, ChunkingConfig(method="sentence"))
        and len(chunk_article(text, ChunkingConfig())) == 12
    )


def test_user_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["lvm", "ingest", str(tmp_path / "missing.jsonl")])
    assert exc.value.code == 3 and "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["lvm", "ingest", str(_articles(tmp_path / "a.jsonl")), "--chunking", "paragraph"])
    assert exc.value.code == 2 and "sentence, semantic" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["lvm", "index"])
    assert exc.value.code == 3 and "lvm ingest" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["lvm", "evaluate"])
    assert exc.value.code == 3 and "lvm sequences" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["lvm", "train", "--model", "rnn", "--sequences", str(tmp_path / "x.npz")])
    assert exc.value.code == 2 and "lstm, gru, transformer, mamba" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["lvm", "train", "--select", "val_rouge", "--sequences", str(tmp_path / "x.npz")])
    assert exc.value.code == 2 and "val_top1_excl" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["lvm", "train", "--loss", "cosine+0.1*l1", "--sequences", str(tmp_path / "x.npz")])
    assert exc.value.code == 2 and "bad loss" in capsys.readouterr().err


def test_vec2text_hook_says_what_is_missing() -> None:
    import numpy as np

    from tldrlab.errors import DependencyMissingError
    from tldrlab.lvm.decode import vec2text_decode

    with pytest.raises(DependencyMissingError, match="vec2text"):
        vec2text_decode(np.zeros((1, 384), dtype=np.float32))
