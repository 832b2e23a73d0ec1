"""TMD codes: zero-shot labels per concept, stored with it, shown by stats, and usable as model input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tldrlab.lvm.models import LVMConfig, build_lvm
from tldrlab.lvm.sequences import build_sequences
from tldrlab.lvm.store import ConceptIn, ConceptTable, open_concept_store
from tldrlab.lvm.tmd import DOMAINS, MODIFIERS, TASKS, TMD, TMD_DIM, TMDClassifier, is_heading, tmd_features


@pytest.fixture(scope="module")
def classifier() -> TMDClassifier:
    from tldrlab.embed import get_embedder

    return TMDClassifier(get_embedder("minilm"))


def test_zero_shot_labels_follow_the_meaning(classifier: TMDClassifier) -> None:
    from tldrlab.embed import get_embedder

    texts = {
        "The army besieged the fortress and the garrison surrendered after six weeks.": "military",
        "The striker scored twice in the cup final and his team won the championship.": "sports",
        "The virus infects liver cells and causes hepatitis, which doctors treat.": "medicine",
        "The album reached number one and the band toured to promote the new songs.": "arts",
        "The court ruled that the statute was unconstitutional and overturned the conviction.": "law",
        "The river rises in the mountains and flows through the valley to the sea.": "earth",
    }
    vectors = get_embedder("minilm").encode(list(texts))
    labels = classifier.classify(vectors, list(texts))
    assert [label.domain for label in labels] == list(texts.values())
    assert all(label.task in TASKS and label.modifier in MODIFIERS for label in labels)
    assert all(label.task != "heading" for label in labels)  # full sentences are never headings
    heading = classifier.classify(get_embedder("minilm").encode(["Early life"]), ["Early life"])[0]
    assert heading.task == "heading" and heading.modifier == "none" and heading.domain in DOMAINS
    assert is_heading("Career and later years") and not is_heading("He retired in 1990.")
    # a sentence of a script without spaces is one "word": it ends as a sentence ends there
    assert not is_heading("蜜蜂は花から蜜を集めます。") and not is_heading("你吃饭了吗？")
    assert is_heading("生涯")


def test_features_are_one_hot_per_facet() -> None:
    features = tmd_features([TMD("sports", "event", "past"), None])
    assert features.shape == (2, TMD_DIM) == (2, 30)
    assert features[0].sum() == 3 and features[1].sum() == 0
    assert features[0, list(DOMAINS).index("sports")] == 1
    assert features[0, len(DOMAINS) + list(TASKS).index("event")] == 1
    assert features[0, len(DOMAINS) + len(TASKS) + list(MODIFIERS).index("past")] == 1


def test_labels_are_stored_loaded_counted_and_added_to_an_older_store(tmp_path: Path) -> None:
    from tldrlab.lvm.store import SQLITE_MIGRATIONS
    from tldrlab.runs.db import connect, migrate

    url = f"sqlite:///{tmp_path / 'concepts.db'}"
    old = connect(url)  # a store made before TMD existed (schema version 1)
    migrate(old, "lvm", SQLITE_MIGRATIONS[:1])
    old.close()
    store = open_concept_store(url)
    vectors = np.eye(3, 8, dtype=np.float32)
    concepts = [ConceptIn(i, 0, 1, f"c{i}") for i in range(3)]
    labels = [
        TMD("sports", "event", "past"),
        TMD("sports", "quantity", "none"),
        TMD("arts", "heading", "none"),
    ]
    store.replace_article(
        source="s",
        article_id="a",
        concepts=concepts,
        vectors=vectors,
        embedder="e",
        chunking="sentence",
        tmd=labels,
    )
    store.replace_article(
        source="s",
        article_id="b",
        concepts=concepts[:2],
        vectors=vectors[:2],
        embedder="e",
        chunking="sentence",
    )
    table = store.load("s")
    assert table.tmd == [*labels, None, None]
    assert store.get([int(table.ids[0])])[int(table.ids[0])].tmd == labels[0]
    stats = store.stats(samples=2)
    assert stats["sources"] == [
        {"source": "s", "articles": 2, "concepts": 5, "tmd_labelled": 3, "embedder": "e", "dim": 8}
    ]
    assert stats["tmd"]["domain"] == {"sports": 2, "arts": 1} and len(stats["samples"]) == 2
    store.set_tmd([int(table.ids[3])], [TMD("law", "definition", "present")])
    assert store.load("s").tmd[3] == TMD("law", "definition", "present")  # type: ignore[index]
    store.close()


def _labelled_turns(n_articles: int = 16, length: int = 12) -> ConceptTable:
    """Vectors on a circle; an article's TMD domain says which way it turns (the vectors alone cannot)."""
    rng = np.random.default_rng(0)
    ids, keys, positions, vectors, labels = [], [], [], [], []
    for a in range(n_articles):
        direction = 1 if a % 2 else -1
        label = TMD("sports" if direction > 0 else "arts", "event", "past")
        phase = rng.uniform(0, 2 * np.pi)
        for t in range(length):
            angle = phase + direction * 0.8 * t
            vectors.append([np.cos(angle), np.sin(angle), 0, 0])
            ids.append(len(ids) + 1)
            keys.append(f"turns/{a:02d}")
            positions.append(t)
            labels.append(label)
    return ConceptTable(
        np.array(ids), keys, np.array(positions), np.array(vectors, dtype=np.float32), "synthetic", labels
    )


def test_tmd_inputs_let_a_model_use_what_the_vectors_do_not_say(tmp_path: Path) -> None:
    from tldrlab.lvm.evaluation import evaluate_methods
    from tldrlab.lvm.sequences import load_sequences
    from tldrlab.lvm.training import LVMTrainJobConfig, train_lvm
    from tldrlab.runs import start_run

    seqs = build_sequences(_labelled_turns(), context=1, seed=0, val_fraction=0.2, test_fraction=0.2)
    assert seqs.concept_tmd is not None and seqs.split_arrays("test").context_tmd.shape[-1] == TMD_DIM  # type: ignore[union-attr]
    path = seqs.save(tmp_path / "turns.npz")
    assert load_sequences(path).concept_tmd is not None
    trained = {}
    for tmd_inputs in (False, True):
        config = LVMTrainJobConfig.model_validate(
            {
                "sequences": str(path),
                "model": "gru",
                "model_settings": {"hidden": 16, "layers": 1, "dropout": 0.0, "tmd_inputs": tmd_inputs},
                "loss": "mse",
                "train": {
                    "max_steps": 120,
                    "batch_size": 16,
                    "lr": 1e-2,
                    "eval_every": 60,
                    "device": "cpu",
                    "progress": False,
                    "plot": False,
                },
            }
        )
        with start_run("lvm_train", config, seed=0) as run:
            train_lvm(config, run, resume=False)
        from tldrlab.lvm.models import load_lvm

        trained[f"tmd={tmd_inputs}"] = load_lvm(run.dir / "model")
    results = {r.name: r.metrics["mse"] for r in evaluate_methods(load_sequences(path), trained)}
    # one context concept cannot tell which way an article turns; its TMD label can
    assert results["tmd=True"] < 0.5 * results["tmd=False"], results
    untrained = build_lvm("gru", LVMConfig(dim=4, hidden=8, context=1, tmd_inputs=True))
    assert untrained.in_proj.in_features == 4 + TMD_DIM
