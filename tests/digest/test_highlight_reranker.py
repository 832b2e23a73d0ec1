"""The MiniLM re-ranker of query-aware highlights: its pieces, its training as a run on a tiny real
QMSum sample (the bundled MiniLM, a real LoRA adapter, a few steps), and the written scorer file used through
HighlightOptions."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from digest_helpers import tiny_qmsum

from tldrlab.digest.config import HighlightRerankerTrainConfig
from tldrlab.digest.highlight_cases import case_relevance, embed_cases, qmsum_cases
from tldrlab.digest.highlights import HighlightOptions, rank_highlights, sentence_relevance
from tldrlab.digest.reranker import (
    RerankEncoder,
    RerankerSpec,
    base_model,
    load_encoder,
    pair_text,
    respread,
    top_candidates,
)
from tldrlab.digest.scorers import load_scorer_file
from tldrlab.embed.base import Embedder
from tldrlab.errors import InvalidInputError
from tldrlab.launch import launch_run


def test_pair_text_shows_neighbours_of_the_same_post_only() -> None:
    texts = ["one two three", "Yeah.", "four five six seven", "other post"]
    groups = ["a", "a", "a", "b"]
    assert pair_text(texts, groups, 1, 2) == "Yeah. (before: two three) (after: four five)"
    assert pair_text(texts, groups, 2, 2) == "four five six seven (before: Yeah.) (after: )"
    assert pair_text(texts, groups, 1, 0) == "Yeah."


def test_respread_reorders_only_the_top_within_their_range() -> None:
    relevance = np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.0])
    eligible = np.array([True, True, True, True, True, False])
    top = top_candidates(relevance, 3, eligible)
    assert top.tolist() == [0, 2, 4]
    out = respread(relevance, top, np.array([0.0, 1.0, 5.0]))  # the fused order reverses them
    assert out[[1, 3, 5]].tolist() == relevance[[1, 3, 5]].tolist()  # the rest is untouched
    assert out[4] == pytest.approx(0.9) and out[0] == pytest.approx(0.7) and 0.7 < out[2] < 0.9
    assert top_candidates(relevance, 10, eligible).tolist() == [0, 2, 4, 3, 1]  # never an ineligible one


def test_the_reranker_reads_special_token_strings_in_a_post_as_text() -> None:
    """The re-ranker (and its training) tokenized a post holding "[SEP]" or "[PAD]" with those control tokens
    in its middle: its vector was another text's. As text the strings are what BERT's uncased tokenizer
    makes of the post lowercased; ordinary text gets the stock tokenizer's ids, so the vectors it had."""
    from transformers import AutoTokenizer

    from tldrlab.embed.sentence_transformer import minilm_path

    tokenizer, model = base_model()
    encoder = RerankEncoder(tokenizer, model.eval())
    post = "Split the batch at [SEP] and pad it with [PAD], then [CLS] and [MASK] are left."
    ids = tokenizer(post)["input_ids"]
    assert ids == tokenizer(post.lower())["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert not set(ids[1:-1]) & set(tokenizer.all_special_ids), ids
    vectors = encoder.encode([post, post.lower(), "An ordinary sentence about beer."], max_length=64)
    np.testing.assert_allclose(vectors[0], vectors[1], rtol=0, atol=1e-6)
    stock = AutoTokenizer.from_pretrained(str(minilm_path()))
    for text in ("An ordinary sentence about beer.", "Brackets [like these] stay, and <s> too.", ""):
        assert tokenizer(text)["input_ids"] == stock(text)["input_ids"], text


def test_reranker_training_as_a_run_on_a_tiny_sample(
    tldrlab_home: Path, tmp_path: Path, embedder: Embedder
) -> None:
    config = {
        "qmsum_train": str(tiny_qmsum(tmp_path)),
        "qmsum_every": 1,
        "heldout_every": 2,  # the 2nd meeting chooses the weight
        "top_k": 6,
        "steps": 3,
        "group_size": 4,
        "max_length": 48,
        "context_words": 4,
        "weights": [0.0, 1.0, 100.0],
        "log_every": 1,
        "vector_cache_dir": str(tmp_path / "vectors"),
        "out": str(tmp_path / "shipped"),
    }
    launched = launch_run("highlight_reranker_train", config)  # the registered kind, as the CLI runs it
    assert launched.record.status.value == "completed" and launched.result is not None
    run_dir = Path(launched.record.run_dir)
    shipped = tmp_path / "shipped"
    for folder in (run_dir / "artifacts", shipped):
        assert (folder / "highlight_scorer.json").is_file()
        assert (folder / "reranker_v3" / "adapter_model.safetensors").is_file()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert any("reranker_v3/adapter_model.safetensors" in a["path"] for a in manifest["artifacts"])
    losses = [m["loss"] for m in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())]
    assert len(losses) == 3 and all(np.isfinite(losses))
    scorer = load_scorer_file(shipped / "highlight_scorer.json")
    assert scorer.name == "learned_v3" and scorer.reranker is not None
    info = scorer.info["reranker"]
    assert info["queries"] == {"train": 3, "heldout": 2} and len(info["data"]["sha256"]) == 64
    assert set(info["heldout_p_at_5"]) == {"weight=0.0", "weight=1.0", "weight=100.0"}
    assert scorer.reranker.weight in (0.0, 1.0, 100.0) and scorer.reranker.top_k == 6
    # the base scorer's linear models came along unchanged
    assert scorer.models.keys() >= {"query", "document"}

    # used through HighlightOptions on a query: only the base top 6 move, within their range
    case = qmsum_cases(Path(config["qmsum_train"]))[0]
    embed_cases([case], embedder, tmp_path / "vectors")
    assert case.vectors is not None
    options = HighlightOptions(q=case.query, diversity=0.0, max_per_post=None)
    strong = dataclasses.replace(scorer, reranker=dataclasses.replace(scorer.reranker, weight=100.0))
    base = case_relevance(case, options, dataclasses.replace(scorer, reranker=None))
    reranked = case_relevance(case, options, strong)
    top = set(np.argsort(-base)[:6].tolist())
    assert set(np.argsort(-reranked)[:6].tolist()) == top
    rest = [i for i in range(len(base)) if i not in top]
    np.testing.assert_allclose(reranked[rest], base[rest])
    assert not np.allclose(reranked, base)  # the re-ranker really re-ordered them
    picked = rank_highlights(
        case.records,
        case.vectors,
        options.model_copy(update={"k": 3}),
        thread=case.thread,
        query_vector=case.query_vector,
    )
    assert len(picked) == 3
    # without a query the re-ranker does not apply
    no_query = sentence_relevance(
        case.records, case.vectors, HighlightOptions(), thread=case.thread, scorer=strong
    )
    assert np.isfinite(no_query).all()
    with pytest.raises(InvalidInputError, match=r"adapter_config\.json"):
        load_encoder(tmp_path / "nowhere")
    with pytest.raises(ValueError):
        HighlightRerankerTrainConfig()  # type: ignore[call-arg]
    assert RerankerSpec.from_dict(scorer.reranker.to_dict()) == scorer.reranker
