"""The learned highlight scorer: features, training as a run on tiny real samples, the packaged file used
through HighlightOptions, and the benchmark's baselines on small real samples (../shared/data)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from digest_helpers import sample_thread, tiny_qmsum

from cliutil import run_captured
from tldrlab.data.threads import Post, Thread
from tldrlab.digest.config import HighlightScorerTrainConfig
from tldrlab.digest.features import FEATURE_GROUPS, FEATURES, scorer_mode, sentence_features
from tldrlab.digest.highlight_cases import (
    embed_cases,
    forum_cases,
    forum_split,
    qmsum_cases,
    scitldr_cases,
    thread_records,
)
from tldrlab.digest.highlights import HighlightOptions, rank_highlights, thread_highlights
from tldrlab.digest.ingest import ingest_threads
from tldrlab.digest.scorer_training import (
    case_features,
    cross_validate,
    feature_sets,
    fit_linear,
    select_columns,
    widen,
)
from tldrlab.digest.scorers import (
    DEFAULT_SCORERS,
    LinearModel,
    LinearScorer,
    load_scorer,
    load_scorer_file,
    resolve_scorer,
)
from tldrlab.embed.base import Embedder
from tldrlab.errors import ConfigError, InvalidInputError
from tldrlab.launch import launch_run
from tldrlab.samples import sample_path
from tldrlab.store.base import SentenceStore

REPO = Path(__file__).resolve().parents[2]
DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO / "bench"))


def tiny_scitldr(tmp_path: Path, n: int = 8) -> Path:
    lines = (DATA / "scitldr" / "scitldr_a.train.jsonl").read_text(encoding="utf-8").splitlines()[:n]
    out = tmp_path / "scitldr.jsonl"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def test_features_and_modes_on_a_forum_thread() -> None:
    thread = sample_thread()
    records = thread_records(thread)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(records), 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    features = sentence_features(records, vectors, thread, title_vector=vectors[0])
    assert features.shape == (len(records), len(FEATURES))
    column = {name: features[:, i] for i, name in enumerate(FEATURES)}
    accepted = [i for i, r in enumerate(records) if r.post_id == "p2"]
    assert column["votes"][accepted].tolist() == [1.0] * len(accepted)  # p2 has the best score
    assert column["question_post"][0] == 1.0 and column["interrogative"][0] == 1.0
    hidden = sentence_features(records, vectors, thread, title_vector=vectors[0], use_score=False)
    assert not hidden[:, FEATURES.index("votes")].any() and not hidden[:, FEATURES.index("has_votes")].any()
    assert scorer_mode(thread, None) == "forum_votes" and scorer_mode(thread, "q") == "query"
    assert scorer_mode(thread, None, use_score=False) == "forum"
    assert scorer_mode(thread.model_copy(update={"posts": thread.posts[:1]}), None) == "document"


def cue_columns(texts: list[list[str]], query: str | None = None) -> dict[str, np.ndarray]:
    """The features of a thread whose posts hold `texts` (one list of sentences per post)."""
    posts = [Post(id=f"p{i}", number=i + 1, text=" ".join(t)) for i, t in enumerate(texts)]
    thread = Thread(id="t", title="", posts=posts)
    records = [r for r in thread_records(thread)]
    assert [r.text for r in records] == [x for t in texts for x in t]  # the splitter keeps these sentences
    vectors = np.eye(len(records), 8, dtype=np.float32)
    features = sentence_features(
        records, vectors, thread, query=query, query_vector=vectors[0] if query else None
    )
    return {name: features[:, i] for i, name in enumerate(FEATURES)}


def test_sentence_cue_features_fire_on_what_they_name() -> None:
    abstract = [
        "Deep networks have been successful in many applications.",
        "However, their training is poorly understood.",
        "In this paper, we propose a new analysis of critical points.",
        "We show that the method also explains generalisation.",
        "Experiments confirm the theory.",
    ]
    column = cue_columns([abstract])
    assert column["contribution_cue"].tolist() == [0, 0, 1, 1, 0]
    assert column["first_contribution_in_post"].tolist() == [0, 0, 1, 0, 0]
    assert column["first_we_in_post"].tolist() == [0, 0, 1, 0, 0]
    assert column["last_in_post"].tolist() == [0, 0, 0, 0, 1]
    assert column["position_in_post_squared"].tolist() == [0.0, 1 / 16, 1 / 4, 9 / 16, 1.0]
    question = ["What temperature should I serve a stout at?", "Thanks in advance."]
    answer = ["Serve it at about 12 degrees Celsius.", "It depends on the beer really."]
    chatter = ["Great question, I agree with the other answers.", "Hope this helps!"]
    column = cue_columns([question, answer, chatter])
    assert column["thanks_cue"].tolist() == [0, 1, 0, 0, 0, 1]
    assert column["recommend_cue"].tolist() == [0, 0, 1, 0, 0, 0]
    assert column["meta_cue"].tolist() == [0, 0, 0, 0, 1, 0]
    assert column["has_number"].tolist() == [0, 0, 1, 0, 0, 0]
    assert column["post_recommend_share"].tolist() == [0, 0, 0.5, 0.5, 0, 0]
    assert column["post_chatter_share"].tolist() == [0.5, 0.5, 0, 0, 1, 1]
    turns = ["We need a new remote control design.", "Yes.", "The budget is twelve euros.", "Okay."]
    column = cue_columns([turns], query="remote control budget")
    assert column["query_overlap"].tolist() == [2 / 3, 0, 1 / 3, 0]
    assert column["query_overlap_neighbours_8"].tolist() == [0.25] * 4  # the whole (short) meeting
    assert not column["contribution_cue"].any()  # "we need" states no contribution


def test_scorer_files_name_a_subset_of_the_features() -> None:
    v1 = load_scorer("learned_v1")
    assert v1.features == FEATURE_GROUPS["v1"] == FEATURES[:28]  # an older file keeps working
    rng = np.random.default_rng(0)
    full = rng.normal(size=(7, len(FEATURES)))
    model = v1.models["document"]
    assert np.allclose(v1.relevance(full, "document"), model.relevance(full[:, :28]))
    one = LinearModel(np.zeros(1), np.ones(1), np.ones(1), 0.0)
    picked = LinearScorer("x", 1, ("recommend_cue",), {"forum": one})
    relevance = picked.relevance(full, "forum")
    assert relevance is not None and np.allclose(relevance, full[:, FEATURES.index("recommend_cue")])
    with pytest.raises(InvalidInputError, match="does not compute"):
        LinearScorer("x", 1, ("telepathy",), {"forum": one})


def test_feature_groups_are_chosen_by_cross_validation() -> None:
    rng = np.random.default_rng(1)
    cue = FEATURES.index("contribution_cue")
    rows = []
    for case in range(24):
        features = np.zeros((10, len(FEATURES)))
        features[:, :28] = rng.normal(size=(10, 28))  # v1 columns: noise
        labels = np.zeros(10)
        labels[case % 10] = 1.0
        features[case % 10, cue] = 1.0  # only a sentence-cue column marks the right sentence
        rows.append((features, rng.normal(size=(10, 4)), labels, f"paper{case}"))
    assert feature_sets(rows, ["sentence_cues", "query_context"]) == [("v1",), ("v1", "sentence_cues")]
    scores = {}
    for groups in feature_sets(rows, ["sentence_cues"]):
        subset, columns = select_columns(rows, groups)
        scores[groups] = cross_validate(subset, "document", 0.001, False, 3)
    assert scores[("v1", "sentence_cues")] > 0.9 and scores[("v1",)] < 0.4  # chance: 0.1
    model = widen(fit_linear(subset, 0.001, False), columns)
    assert model.weights.shape == (len(FEATURES),) and not model.weights[28 + 12 :].any()
    assert int(np.argmax(model.weights)) == cue


def test_forum_split_is_deterministic_and_balanced() -> None:
    ids = [str(i) for i in range(2000)]
    dev = [i for i in ids if forum_split(i) == "dev"]
    assert 0.45 < len(dev) / len(ids) < 0.55
    assert [forum_split(i) for i in ids] == [forum_split(i) for i in ids]
    assert forum_split("33") == "train" and forum_split("8") == "dev"


@pytest.mark.slow
def test_training_as_a_run_on_tiny_samples(tldrlab_home: Path, tmp_path: Path, embedder: Embedder) -> None:
    config = {
        "name": "learned_test",
        "scitldr_train": str(tiny_scitldr(tmp_path)),
        "scitldr_limit": None,
        "forum_dump": str(sample_path("beer_threads")),
        "qmsum_train": str(tiny_qmsum(tmp_path)),
        "qmsum_every": 1,
        "folds": 2,
        "feature_groups": ["sentence_cues"],
        "vector_cache_dir": str(tmp_path / "vectors"),
        "out": str(tmp_path / "elsewhere" / "scorer.json"),  # outside the run: written there too
    }
    launched = launch_run("highlight_scorer_train", config)  # the registered kind, as the CLI runs kinds
    assert launched.record.status.value == "completed" and launched.result is not None
    assert launched.result["scorer"] == config["out"]
    artifact = Path(launched.record.run_dir) / "artifacts" / "highlight_scorer.json"
    assert artifact.read_bytes() == Path(config["out"]).read_bytes()
    assert launched.record.metrics["document_cv"] >= 0
    scorer = load_scorer_file(launched.result["scorer"])
    assert scorer.name == "learned_test" and set(scorer.models) == {
        "document",
        "forum",
        "forum_votes",
        "query",
    }
    assert scorer.info["data"]["scitldr_train"]["cases"] == 8
    assert scorer.info["modes"]["forum"]["cases"] == 2  # ids 33 and 605: the train side of the split
    assert scorer.info["modes"]["query"]["cases"] == 5  # 3 + 2 queries of two meetings
    assert len(scorer.info["data"]["qmsum_train"]["sha256"]) == 64
    for entry in scorer.info["modes"].values():  # query_context was not offered, so never chosen
        assert entry["feature_groups"] in (["v1"], ["v1", "sentence_cues"])
        assert not any("query_context" in key for key in entry["cross_validation"])
    assert any(f.name.endswith(".npz") for f in (tmp_path / "vectors").rglob("*"))
    # the file works as a scorer: every mode ranks every sentence of a case
    case = scitldr_cases(tiny_scitldr(tmp_path, 1))[0]
    embed_cases([case], embedder, tmp_path / "vectors")
    for mode in scorer.models:
        relevance = scorer.relevance(case_features(case), mode, case.vectors)
        assert relevance is not None and relevance.shape == (len(case.records),)
        assert np.isfinite(relevance).all()
    with pytest.raises(ValueError, match="at least one"):
        HighlightScorerTrainConfig()
    with pytest.raises(ValueError):
        HighlightScorerTrainConfig(scitldr_train="x", surprise=1)  # type: ignore[call-arg]


def test_listwise_fit_learns_a_clear_signal_and_cross_validates_by_thread() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for case in range(30):
        features = rng.normal(size=(12, len(FEATURE_GROUPS["v1"])))  # 28 columns: 20 cases fit them
        labels = np.zeros(12)
        labels[case % 12] = 1.0
        features[:, 5] += 3.0 * labels  # one feature marks the right sentence, noisily
        vectors = rng.normal(size=(12, 8))
        rows.append((features, vectors, labels, f"thread{case // 2}"))
    model = fit_linear(rows, 0.001, use_vectors=False)
    assert int(np.argmax(np.abs(model.weights))) == 5 and model.weights[5] > 0
    assert model.vector_weights is None
    assert cross_validate(rows, "document", 0.001, False, 3) > 0.8  # chance: 1/12
    with_vectors = fit_linear(rows, 0.001, use_vectors=True)
    assert with_vectors.vector_weights is not None and with_vectors.vector_weights.shape == (8,)


def test_cli_command_validates_its_config(tldrlab_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_captured(["train-highlight-scorer", "--name", "x"], capsys)
    assert code == 2 and "give at least one of scitldr_train" in err and "Traceback" not in err


def test_training_refuses_missing_data(tldrlab_home: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        launch_run("highlight_scorer_train", {"scitldr_train": str(tmp_path / "missing.jsonl")})


def test_packaged_learned_scorer_through_highlight_options(store: SentenceStore, embedder: Embedder) -> None:
    scorer = load_scorer("learned_v1")
    assert scorer.version == 1 and scorer.features == FEATURE_GROUPS["v1"]
    assert set(scorer.models) == {"document", "forum", "forum_votes", "query"}
    assert {"scitldr_train", "forum_dump", "qmsum_train"} <= set(scorer.info["data"])
    thread = sample_thread()
    ingest_threads([thread], store, embedder)
    learned = thread_highlights(
        store, thread.id, HighlightOptions(k=4, scorer="learned_v1"), embedder=embedder
    )
    heuristic = thread_highlights(
        store, thread.id, HighlightOptions(k=4, scorer="heuristic"), embedder=embedder
    )
    assert len(learned) == 4 and len(heuristic) == 4
    assert [h.score for h in learned] != [h.score for h in heuristic]  # a different scorer really ran
    assert all(h.text != "Thanks!" for h in learned)
    for mode, name in DEFAULT_SCORERS.items():
        chosen = resolve_scorer("auto", mode)
        assert (chosen.name if chosen else "heuristic") == name
    # auto = the train-chosen learned_v2 in every mode; its forum models are learned_v1's, so the beer dev
    # figures measured for either hold for both
    assert set(DEFAULT_SCORERS.values()) == {"learned_v2"}
    v1_columns, v2 = scorer.columns, load_scorer("learned_v2")
    rng = np.random.default_rng(0)
    features, vectors = rng.normal(size=(7, len(FEATURES))), rng.normal(size=(7, 384))
    for mode in ("forum", "forum_votes"):
        v1_scores = scorer.relevance(features, mode, vectors)
        v2_scores = v2.relevance(features, mode, vectors)
        assert v1_scores is not None and v2_scores is not None and len(v1_columns) < len(v2.columns)
        np.testing.assert_allclose(v1_scores, v2_scores, atol=1e-6)
    with pytest.raises(ValueError):
        HighlightOptions(scorer="learned_v9")  # type: ignore[arg-type]


def test_packaged_learned_v2_finds_the_contribution_sentence_of_real_abstracts(embedder: Embedder) -> None:
    """Two SciTLDR dev abstracts where the author's labelled sentence is the first to state the contribution
    ("... we propose a new feed-forward deep network", "We propose a joint learning framework"): learned_v2,
    which has the sentence-cue features, puts it first; learned_v1 picked another sentence."""
    v2 = load_scorer("learned_v2")
    assert v2.version == 2 and v2.features == FEATURES
    assert v2.info["modes"]["document"]["feature_groups"] == ["v1", "sentence_cues"]
    assert set(v2.models) == {"document", "forum", "forum_votes", "query"}
    wanted = {"SylJ1D1C-", "SkMPNoCcKQ"}
    cases = [c for c in scitldr_cases(DATA / "scitldr" / "scitldr_a.dev.jsonl") if c.id in wanted]
    embed_cases(cases, embedder)
    assert len(cases) == 2
    for case in cases:
        assert case.vectors is not None
        top = {}
        for name in ("learned_v1", "learned_v2"):
            options = HighlightOptions(k=1, scorer=name)  # type: ignore[arg-type]
            best = rank_highlights(
                case.records, case.vectors, options, thread=case.thread, title_vector=case.title_vector
            )[0]
            top[name] = best.sentence_index
        assert case.labels[top["learned_v2"]] and not case.labels[top["learned_v1"]], case.id
        first_claim = case_features(case)[:, FEATURES.index("first_contribution_in_post")]
        assert first_claim[top["learned_v2"]] == 1.0


def test_a_bench_run_of_one_set_leaves_the_docs_plot_alone() -> None:
    import digest_quality as bench

    # the docs' image merges all three sets; a run of one set used to overwrite it with its own plot
    docs_image = (REPO / "docs" / "img" / "digest_quality.png").resolve()
    assert bench.parse_args(["--only", "qmsum"]).out.resolve() != docs_image
    assert bench.parse_args(["--merge", "a.json", "--out", str(docs_image)]).out == docs_image


@pytest.mark.slow
def test_bench_baselines_on_small_real_samples(embedder: Embedder, tmp_path: Path) -> None:
    import digest_quality as bench

    scitldr = scitldr_cases(DATA / "scitldr" / "scitldr_a.dev.jsonl", 6)
    beer = forum_cases(DATA / "stackexchange_beer" / "Posts.xml", "dev", 3)
    qmsum = qmsum_cases(tiny_qmsum(tmp_path, {2: 45}))
    for cases in (scitldr, beer, qmsum):
        embed_cases(cases, embedder, tmp_path / "vectors")
    results = bench.run_scitldr(scitldr, [])["methods"]
    assert results["title cosine"]["cases"] == 6 and "_vs" not in results["title cosine"]
    diff, low, high = results["heuristic"]["_vs"]["P@1"]
    assert low <= diff <= high
    assert 0 <= results["chance"]["P@1"] <= 1
    forum = bench.run_beer(beer, [])
    hidden = forum["votes hidden"]["methods"]
    assert set(hidden) >= {"heuristic (votes hidden)", "capped random", "title cosine", "chance"}
    assert 0 < hidden["capped random"]["top-3 has accepted"] <= 1
    shown = forum["votes shown"]["methods"]
    assert "top-voted answer, first sentences" in shown
    queries = bench.run_qmsum(qmsum, [])["methods"]
    assert queries["BM25 + MiniLM fusion"]["cases"] == len(qmsum) > 0
    # the capped random baseline respects the cap: 2 per post while other posts have sentences left
    case = beer[0]
    eligible = np.ones(len(case.records), dtype=bool)
    for order in bench.capped_random_orders(case, eligible, 5, 3):
        posts = [case.records[i].post_id for i in order]
        assert max(posts.count(p) for p in posts) <= 2
    top = bench.top_voted_first(case, eligible)
    best = max((p for p in case.thread.posts if p.kind == "answer"), key=lambda p: (p.score or 0, -p.number))
    assert case.records[top[0]].post_id == best.id and case.records[top[0]].sentence_index == 0
