"""Text out: predict the next concept, decode it to stored concepts, smooth with a tiny local LM, measure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tldrlab.lvm.generate import (
    ContextWindow,
    Smoother,
    first_sentence,
    generate,
    generation_markdown,
    measure_generation,
    window_from_article,
    window_from_texts,
)
from tldrlab.lvm.index import build_index
from tldrlab.lvm.models import LVMConfig, build_lvm
from tldrlab.lvm.store import ConceptIn, open_concept_store

ARTICLES = {
    "bees": [
        "Bees are flying insects closely related to wasps and ants.",
        "Bees collect nectar and pollen from flowers.",
        "A honey bee colony has one queen and many workers.",
        "Worker bees build wax combs inside the hive.",
        "Bees turn nectar into honey and store it in the comb.",
    ],
    "volcanoes": [
        "A volcano is a rupture in the crust of a planet.",
        "Magma rises from the mantle through the crust.",
        "When magma reaches the surface it is called lava.",
        "Explosive eruptions throw ash high into the atmosphere.",
        "Volcanic ash can disrupt air travel for days.",
    ],
}


@pytest.fixture(scope="module")
def embedder() -> Any:
    from tldrlab.embed import get_embedder

    return get_embedder("minilm")


@pytest.fixture
def concepts(tmp_path: Path, embedder: Any) -> Any:
    """A real SQLite concept store of two articles (MiniLM vectors, TMD labels) and its exact index."""
    from tldrlab.lvm.tmd import TMDClassifier

    store = open_concept_store(f"sqlite:///{tmp_path / 'concepts.db'}")
    classifier = TMDClassifier(embedder)
    for title, sentences in ARTICLES.items():
        vectors = embedder.encode(sentences)
        store.replace_article(
            source="demo" if title == "bees" else "unseen",
            article_id=title,
            concepts=[ConceptIn(i, 0, len(s), s) for i, s in enumerate(sentences)],
            vectors=vectors,
            embedder=embedder.name,
            chunking="sentence",
            tmd=classifier.classify(vectors, sentences),
        )
    table = store.load()
    index = build_index(table.vectors, table.ids, extra_meta={"embedder": embedder.name})
    yield store, index
    store.close()


def _copy_last_model(**settings: Any) -> Any:
    """An untrained LVM whose prediction is exactly the last context concept (zero head + skip `last`)."""
    return build_lvm("gru", LVMConfig(dim=384, hidden=8, context=3, skip="last", **settings)).eval()


def test_generate_decodes_to_stored_concepts_and_continues(concepts: Any) -> None:
    store, index = concepts
    window, truth = window_from_article(store, "demo/bees", 3, context=3)
    assert window.texts == ARTICLES["bees"][:3] and truth.text == ARTICLES["bees"][3]
    steps = generate(_copy_last_model(), window, index, store, steps=3, k=2)
    assert len(steps) == 3 and all(s.smoothed is None for s in steps)
    first = steps[0].nearest[0]
    # the context (positions 0-2) is excluded: the nearest other concept to "A honey bee colony..." is a
    # bee one
    assert first.source == "demo" and first.article_id == "bees" and first.position in (3, 4)
    assert steps[0].text == first.text and set(steps[0].seconds) == {"predict", "decode"}
    # each step reads the concept decoded before it, and never returns a concept already in its context
    decoded = [s.nearest[0].id for s in steps]
    assert len(set(decoded)) == 3 and not set(decoded) & window.exclude
    assert np.allclose(
        steps[1].vector, index.vectors[int(np.flatnonzero(index.ids == decoded[0])[0])], atol=1e-6
    )


def test_smoothing_with_a_local_lm(concepts: Any, tiny_causal_lm: Path, embedder: Any) -> None:
    store, index = concepts
    smoother = Smoother(str(tiny_causal_lm), max_new_tokens=12)
    prompt = smoother.prompt(["Lava cools.", "It forms rock."], ["Basalt is a volcanic rock."])
    assert "Lava cools. It forms rock." in prompt and "- Basalt is a volcanic rock." in prompt
    assert prompt.startswith("<|im_start|>user") and prompt.endswith("<|im_start|>assistant\n")
    window = window_from_texts(["Magma rises from the mantle."], embedder, labels=True)
    assert window.tmd is not None and window.tmd[0] is not None
    (step,) = generate(_copy_last_model(tmd_inputs=True), window, index, store, k=2, smoother=smoother)
    assert isinstance(step.smoothed, str) and step.text == (step.smoothed or step.nearest[0].text)
    assert step.seconds["smooth"] > 0 and len(step.nearest) == 2
    assert first_sentence("One two. Three four.") == "One two." and first_sentence(" no end ") == "no end"


def test_smoothing_reads_concepts_holding_special_token_strings_as_text(tiny_causal_lm: Path) -> None:
    """An article or candidate sentence holding "<|im_end|>" or "<|endoftext|>" was encoded as those control
    tokens: a forged assistant turn in the smoothing prompt. The LM gets the template's turn markers only."""
    from tinylm import INJECTION, model_inputs

    smoother = Smoother(str(tiny_causal_lm), max_new_tokens=2)
    tokenizer = smoother.tokenizer
    with model_inputs(smoother.model) as seen:
        smoother(["Lava cools.", INJECTION], ["Basalt<|endoftext|> is a rock."])
    (prompt,) = seen[0]
    ids = {
        t: prompt.count(tokenizer.convert_tokens_to_ids(t))
        for t in ("<|im_start|>", "<|im_end|>", "<|endoftext|>")
    }
    assert ids == {"<|im_start|>": 2, "<|im_end|>": 1, "<|endoftext|>": 0}
    assert tokenizer.decode(prompt) == smoother.prompt(
        ["Lava cools.", INJECTION], ["Basalt<|endoftext|> is a rock."]
    )


def test_measure_generation_scores_raw_smoothed_and_copy_last(
    concepts: Any, tiny_causal_lm: Path, embedder: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from tldrlab.lvm.sequences import build_sequences

    store, index = concepts
    seqs = build_sequences(
        store.load(), context=3, val_fraction=0.0, test_fraction=0.0, cross_source="unseen"
    )
    windows = seqs.split_arrays("cross")
    report = measure_generation(
        _copy_last_model(), windows, store, index, embedder, smoother=Smoother(str(tiny_causal_lm), 8), k=2
    )
    assert report["windows"] == len(windows) == 4 and report["articles"] == 1
    methods = report["methods"]
    assert set(methods) == {"raw", "smoothed", "copy_last"}
    for name, scores in methods.items():
        assert 0.0 <= scores["bertscore_f1"] <= 1.0 and -1.0 <= scores["cosine"] <= 1.0, name
    # copy-last's sentence is a stored concept: its embedding cosine is the stored vectors' cosine
    last = windows.contexts[:, -1]
    assert methods["copy_last"]["cosine"] == pytest.approx(
        float((last * windows.targets).sum(1).mean()), abs=1e-3
    )
    margin = methods["raw"]["margin_over_copy_last"]["cosine"]
    # one article: the margin without an interval (resampling one article draws the same windows every time)
    assert "interval95" not in margin and isinstance(margin["margin"], float)
    raw_row = next(line for line in generation_markdown(report).splitlines() if line.startswith("| raw |"))
    assert "[" not in raw_row and f"{margin['margin']:+.4f} |" in raw_row
    assert {"predict", "decode", "smooth", "total"} <= set(report["latency_ms"])
    assert report["examples"][0]["truth"] in ARTICLES["volcanoes"]
    assert "continuations" in capsys.readouterr().err  # a long measurement shows its progress


def test_context_errors_are_clear(concepts: Any, embedder: Any) -> None:
    from tldrlab.errors import InvalidInputError

    store, _ = concepts
    with pytest.raises(InvalidInputError, match="between 1 and 4"):
        window_from_article(store, "demo/bees", 9, context=3)
    with pytest.raises(InvalidInputError, match="SOURCE/ARTICLE_ID"):
        window_from_article(store, "bees", 1, context=3)
    # "the position must be between 1 and 0 for this article"
    sentence = "Bees dance to show where the flowers are."
    store.replace_article(
        source="demo", article_id="dance", concepts=[ConceptIn(0, 0, len(sentence), sentence)],
        vectors=embedder.encode([sentence]), embedder=embedder.name, chunking="sentence",
    )  # fmt: skip
    with pytest.raises(InvalidInputError, match=r"^article demo/dance has one concept: no position has a"):
        window_from_article(store, "demo/dance", 1, context=3)
    with pytest.raises(InvalidInputError, match="at least one"):
        window_from_texts(["  "], embedder)
    model = _copy_last_model(tmd_inputs=True)
    from tldrlab.lvm.generate import predict_next

    with pytest.raises(InvalidInputError, match="reads TMD labels"):
        predict_next(model, ContextWindow(vectors=np.ones((1, 384), dtype=np.float32)))


def test_an_index_older_than_the_store_is_refused_naming_lvm_index(concepts: Any, embedder: Any) -> None:
    """Ingesting again replaces an article's concepts (new ids): an index built before returned only ids the
    store no longer holds, and generate decoded "-" (the API: no concepts), as if nothing were near."""
    from tldrlab.errors import ConflictError

    store, index = concepts
    for title, sentences in ARTICLES.items():
        store.replace_article(
            source="demo" if title == "bees" else "unseen",
            article_id=title,
            concepts=[ConceptIn(i, 0, len(s), s) for i, s in enumerate(sentences)],
            vectors=embedder.encode(sentences),
            embedder=embedder.name,
            chunking="sentence",
        )
    window, _ = window_from_article(store, "demo/bees", 3, context=3)
    with pytest.raises(ConflictError, match=r"the index is older than the store .*run `tldrlab lvm index`$"):
        generate(_copy_last_model(), window, index, store, k=2)
    table = store.load()
    fresh = build_index(table.vectors, table.ids, extra_meta={"embedder": embedder.name})
    assert generate(_copy_last_model(), window, fresh, store, k=2)[0].nearest


def test_measure_uses_the_store_given(tmp_path: Path) -> None:
    """`lvm generate RUN --measure N --db URL` dropped the URL: the lvm_generate run decoded its windows
    against the home's default store, another corpus (or none) than the one asked for."""
    from tldrlab.kinds import validate_config
    from tldrlab.lvm.generate import ContinueOptions

    url = f"sqlite:///{tmp_path / 'other.db'}"
    options = ContinueOptions.model_validate({"run": "some-run", "measure": 5, "db": url})
    config = validate_config("lvm_generate", options.measure_config())
    assert config.store_url == url  # type: ignore[attr-defined]


def test_generate_json_gives_each_step_with_its_scored_concepts(
    concepts: Any, tiny_causal_lm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tldrlab lvm generate --json`: the continuation as JSON (it printed only the report for people)."""
    import json

    from cliutil import run_captured
    from tldrlab.lvm.models import save_lvm

    store, index = concepts
    index.save(tmp_path / "index")
    model = save_lvm(_copy_last_model(), tmp_path / "model")
    where = ["--db", store.url, "--index", str(tmp_path / "index")]
    argv = ["lvm", "generate", str(model), "--article", "demo/bees", "--position", "3", *where, "--json"]
    code, out, err = run_captured([*argv, "--steps", "2", "--k", "2"], capsys)
    assert code == 0, err
    continued = json.loads(out)
    assert continued["model"] == str(model) and continued["truth"]["text"] == ARTICLES["bees"][3]
    assert continued["context"] == [
        {"position": p, "text": text} for p, text in enumerate(ARTICLES["bees"][:3])
    ]
    steps = continued["steps"]
    assert [s["step"] for s in steps] == [1, 2] and all(s["smoothed"] is None for s in steps)
    for step in steps:
        nearest = step["nearest"]
        assert len(nearest) == 2 and step["text"] == nearest[0]["text"]
        assert nearest[0]["score"] >= nearest[1]["score"] and -1.0 <= nearest[1]["score"] <= 1.0
        assert {"id", "source", "article_id", "position"} <= set(nearest[0])
        assert set(step["seconds"]) == {"predict", "decode"}
    # the context's own concepts are never decoded: the first step's best is a later bee sentence
    assert (steps[0]["nearest"][0]["article_id"], steps[0]["nearest"][0]["position"]) in (
        ("bees", 3),
        ("bees", 4),
    )
    # smoothed: each step holds the local LM's sentence, and that sentence is the step's text
    code, out, err = run_captured([*argv, "--smooth", "--lm", str(tiny_causal_lm)], capsys)
    assert code == 0, err
    (step,) = json.loads(out)["steps"]
    assert isinstance(step["smoothed"], str) and "smooth" in step["seconds"]
    assert step["text"] == (step["smoothed"] or step["nearest"][0]["text"])
