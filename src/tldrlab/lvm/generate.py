"""Text out of an LVM: predict the next concept, decode it to stored concepts, optionally smooth them into
one sentence with a local LM (text -> vectors -> text).

    window = ContextWindow.from_vectors(vectors, texts)           # the article so far
    step = generate_next(model, window, index, store, smoother=Smoother("smollm2"))
    step.nearest[0].text, step.smoothed, step.seconds             # decoded, smoothed, latency per stage

`generate` continues for several concepts: each step's context ends with the concept just decoded (its stored
vector, "snapped" to a real concept, so errors do not drift off the concept space). Smoothing asks the local
chat LM (the bundled SmolLM2-135M-Instruct by default) for the next sentence of the article given its last
sentences and the k nearest decoded concepts; greedy decoding, one sentence kept.

`measure_generation` scores the three ways of producing the next sentence on held-out windows: raw decoding
(the nearest stored concept, the context excluded), smoothed decoding, and copy-last (the context's last
sentence) against the true next sentence: BERTScore F1 (tldrlab.evaluate.metrics, offline MiniLM) and the
cosine between the produced sentence's embedding and the true next concept's vector, plus latency.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ConfigDict, Field

from tldrlab.configmodel import ConfigModel
from tldrlab.embed.base import Embedder
from tldrlab.errors import InvalidInputError
from tldrlab.evaluate.metrics import bertscore_f1_per_sample
from tldrlab.logs import progress_bar
from tldrlab.lvm.config import LVMGenerateConfig, MeasuredSplit, default_index, default_sequences
from tldrlab.lvm.decode import DecodedConcept, nearest_concepts
from tldrlab.lvm.evaluation import MethodScore, candidate_index, margin_interval, resampled_articles
from tldrlab.lvm.index import ConceptIndex
from tldrlab.lvm.ingest import load_embedder
from tldrlab.lvm.sequences import load_sequences, missing_split
from tldrlab.lvm.store import ConceptStore, StoredConcept, open_stored_concepts
from tldrlab.lvm.tmd import TMD, TMDClassifier, tmd_features
from tldrlab.report import Report
from tldrlab.runs.atomic import atomic_write_json, atomic_write_text
from tldrlab.runs.run import Run

SMOOTH_INSTRUCTION = (
    "Continue this encyclopedia article with its next sentence. Use the facts of the related sentences "
    "below. Write one sentence only."
)
"""What the local LM is asked when it smooths decoded concepts into a sentence."""

_FIRST_SENTENCE = re.compile(r"^(.+?[.!?])(?:\s|$)", re.DOTALL)


@dataclass
class ContextWindow:
    """The concepts read so far (oldest first): vectors, and texts and TMD labels when known."""

    vectors: np.ndarray
    texts: list[str] = field(default_factory=list)
    tmd: list[TMD | None] | None = None
    exclude: set[int] = field(default_factory=set)
    """Concept ids decoding may not return (the context's own concepts)."""

    def extended(
        self, vector: np.ndarray, text: str, tmd: TMD | None, concept_id: int | None
    ) -> ContextWindow:
        return ContextWindow(
            vectors=np.concatenate([self.vectors, vector[None]]),
            texts=[*self.texts, text],
            tmd=[*self.tmd, tmd] if self.tmd is not None else None,
            exclude=self.exclude | ({concept_id} if concept_id is not None else set()),
        )


@dataclass
class GeneratedConcept:
    """One generated step."""

    vector: np.ndarray
    """The predicted concept vector."""
    nearest: list[DecodedConcept]
    """The nearest stored concepts (best first), with provenance."""
    smoothed: str | None
    """The local LM's sentence (None without smoothing)."""
    seconds: dict[str, float]
    """Wall time of `predict`, `decode` and `smooth`."""

    @property
    def text(self) -> str:
        """The step's text: the smoothed sentence, else the nearest concept's text."""
        if self.smoothed:
            return self.smoothed
        return self.nearest[0].text if self.nearest else ""


def window_from_article(
    store: ConceptStore, article: str, position: int, context: int
) -> tuple[ContextWindow, StoredConcept]:
    """The `context` stored concepts before `position` of article `SOURCE/ARTICLE_ID`, and the true next
    one."""
    if "/" not in article:
        raise InvalidInputError(f"the article must be SOURCE/ARTICLE_ID, got {article!r}")
    source, article_id = article.split("/", 1)
    concepts, vectors = store.article_concepts(source, article_id)
    if len(concepts) == 1:  # "the position must be between 1 and 0"
        raise InvalidInputError(
            f"article {article} has one concept: no position has a concept before it to continue from; "
            "give an article of at least two"
        )
    if not 1 <= position < len(concepts):
        raise InvalidInputError(f"the position must be between 1 and {len(concepts) - 1} for this article")
    start = max(0, position - context)
    window = ContextWindow(
        vectors=vectors[start:position],
        texts=[c.text for c in concepts[start:position]],
        tmd=[c.tmd for c in concepts[start:position]],
        exclude={c.id for c in concepts[start:position]},
    )
    return window, concepts[position]


def window_from_texts(texts: list[str], embedder: Embedder, *, labels: bool = False) -> ContextWindow:
    """A context given as sentences: embedded now (and TMD-labelled when `labels`)."""
    texts = [t.strip() for t in texts if t.strip()]
    if not texts:
        raise InvalidInputError("the context needs at least one non-empty sentence")
    vectors = np.asarray(embedder.encode(texts), dtype=np.float32)
    tmd: list[TMD | None] | None = None
    if labels:
        tmd = list(TMDClassifier(embedder).classify(vectors, texts))
    return ContextWindow(vectors=vectors, texts=texts, tmd=tmd)


def model_inputs(
    vectors: np.ndarray, context: int, tmd: list[TMD | None] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The last `context` vectors left-padded into (1, N, d) + mask (1, N) (+ TMD features (1, N, T))."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) == 0:
        raise InvalidInputError("the context needs at least one concept")
    recent = vectors[-context:]
    contexts = np.zeros((1, context, vectors.shape[1]), dtype=np.float32)
    mask = np.zeros((1, context), dtype=bool)
    contexts[0, context - len(recent) :] = recent
    mask[0, context - len(recent) :] = True
    features = None
    if tmd is not None:
        recent_tmd = tmd_features(list(tmd[-context:]))
        features = np.zeros((1, context, recent_tmd.shape[1]), dtype=np.float32)
        features[0, context - len(recent_tmd) :] = recent_tmd
    return contexts, mask, features


def predict_next(model: Any, window: ContextWindow) -> np.ndarray:
    """The model's next-concept vector (d,) for a context window."""
    import torch

    # lazy: loads torch (this module stays light without it)
    from tldrlab.lvm.training import predict

    config = model.config
    if window.vectors.shape[1] != config.dim:
        raise InvalidInputError(
            f"context vectors are {window.vectors.shape[1]}-d; the model reads {config.dim}-d"
        )
    if config.tmd_inputs and window.tmd is None:
        raise InvalidInputError("this model reads TMD labels: give the context's labels (or its texts)")
    contexts, mask, features = model_inputs(window.vectors, config.context, window.tmd)
    with torch.no_grad():
        return predict(model, contexts, mask, tmd=features if config.tmd_inputs else None).numpy()[0]


class Smoother:
    """A local chat LM that turns decoded concepts into one fluent next sentence."""

    def __init__(self, reference: str = "smollm2", max_new_tokens: int = 48) -> None:
        # lazy: loads torch (this module stays light without it)
        from tldrlab.models.causal_lm import load_causal_lm, load_tokenizer
        from tldrlab.models.resolve import resolve_model_ref

        resolved = resolve_model_ref(reference)
        self.reference = reference
        self.tokenizer = load_tokenizer(resolved)
        self.model = load_causal_lm(resolved).eval()
        self.max_new_tokens = max_new_tokens

    def prompt(self, context_texts: list[str], candidates: list[str]) -> str:
        """The chat prompt as text (to show: the model gets `prompt_ids`)."""
        # lazy: loads torch (this module stays light without it)
        from tldrlab.models.chat import chat_prompt

        return chat_prompt(self.tokenizer, smoothing_document(context_texts, candidates), SMOOTH_INSTRUCTION)

    def prompt_ids(self, context_texts: list[str], candidates: list[str]) -> list[int]:
        """The chat prompt's ids: the article and the candidates (user text) as text, only the template's
        own turn markers as control tokens."""
        from tldrlab.models.chat import chat_prompt_ids

        document = smoothing_document(context_texts, candidates)
        return chat_prompt_ids(self.tokenizer, document, SMOOTH_INSTRUCTION)

    def __call__(self, context_texts: list[str], candidates: list[str]) -> str:
        import torch

        input_ids = torch.tensor([self.prompt_ids(context_texts, candidates)])
        ids = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
        with torch.no_grad():
            out = self.model.generate(
                **ids,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
            )
        text = str(self.tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True))
        return first_sentence(text)


def smoothing_document(context_texts: list[str], candidates: list[str]) -> str:
    """What the smoothing LM reads: the article's last sentences, then the candidate sentences."""
    article = " ".join(context_texts[-3:])
    related = "\n".join(f"- {c}" for c in candidates)
    return f"Article so far: {article}\n\nRelated sentences:\n{related}"


def first_sentence(text: str) -> str:
    """The first sentence of a generation (the whole text, stripped, when it has no sentence end)."""
    text = " ".join(text.split())
    match = _FIRST_SENTENCE.match(text)
    return match.group(1) if match else text


def generate_next(
    model: Any,
    window: ContextWindow,
    index: ConceptIndex,
    store: ConceptStore,
    *,
    k: int = 3,
    smoother: Smoother | None = None,
) -> GeneratedConcept:
    """Predict, decode (context excluded) and optionally smooth one next concept."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    vector = predict_next(model, window)
    seconds["predict"] = time.perf_counter() - started
    started = time.perf_counter()
    nearest = nearest_concepts(vector[None], index, store, k=k, exclude=[window.exclude])[0]
    seconds["decode"] = time.perf_counter() - started
    smoothed = None
    if smoother is not None and nearest:
        started = time.perf_counter()
        smoothed = smoother(window.texts, [c.text for c in nearest])
        seconds["smooth"] = time.perf_counter() - started
    return GeneratedConcept(vector=vector, nearest=nearest, smoothed=smoothed, seconds=seconds)


def generate(
    model: Any,
    window: ContextWindow,
    index: ConceptIndex,
    store: ConceptStore,
    *,
    steps: int = 1,
    k: int = 3,
    smoother: Smoother | None = None,
) -> list[GeneratedConcept]:
    """Continue the context for `steps` concepts; each step reads the concepts decoded before it."""
    if steps < 1:
        raise InvalidInputError("steps must be at least 1")
    out = []
    for _ in range(steps):
        step = generate_next(model, window, index, store, k=k, smoother=smoother)
        out.append(step)
        if not step.nearest:
            break
        best = step.nearest[0]
        stored = store.get([best.id]).get(best.id)
        best_vector = index.vectors[int(np.flatnonzero(index.ids == best.id)[0])]
        window = window.extended(best_vector, step.text, stored.tmd if stored else None, best.id)
    return out


GENERATION_METHODS = ("raw", "smoothed", "copy_last")
"""How the next sentence is produced in `measure_generation`."""


def measure_generation(
    model: Any,
    windows: Any,
    store: ConceptStore,
    candidates: ConceptIndex,
    embedder: Embedder,
    *,
    smoother: Smoother | None,
    k: int = 3,
) -> dict[str, Any]:
    """Score raw decoding, smoothed decoding (when a smoother is given) and copy-last on `windows` (a
    tldrlab.lvm.sequences.SplitArrays): per method the mean BERTScore F1 and embedding cosine to the true next
    sentence, with 95 % intervals of each method's margin over copy-last (bootstrap over articles), and the
    mean latency of each stage. `candidates` is what decoding may return (e.g. the training corpus's
    concepts: an unseen article's future sentences are not known when it is being continued)."""

    ids = {int(i) for i in windows.target_ids} | {int(i) for i in windows.context_ids.ravel() if i >= 0}
    stored = store.get(sorted(ids))
    missing = ids - set(stored)
    if missing:
        raise InvalidInputError(f"{len(missing)} concepts of these windows are not in the store (re-ingest?)")
    produced: dict[str, list[str]] = {name: [] for name in GENERATION_METHODS}
    truths: list[str] = []
    seconds: dict[str, list[float]] = {"predict": [], "decode": [], "smooth": []}
    # a smoothed window takes seconds, so the bar shows how far the measurement is
    bar = progress_bar(range(len(windows)), desc="continuations", unit="window", leave=False)
    for row in bar:
        real = windows.mask[row]
        context_ids = [int(i) for i in windows.context_ids[row][real]]
        window = ContextWindow(
            vectors=windows.contexts[row][real],
            texts=[stored[i].text for i in context_ids],
            tmd=[stored[i].tmd for i in context_ids],
            exclude=set(context_ids),
        )
        step = generate_next(model, window, candidates, store, k=k, smoother=smoother)
        for stage, value in step.seconds.items():
            seconds[stage].append(value)
        produced["raw"].append(step.nearest[0].text if step.nearest else "")
        produced["smoothed"].append(step.smoothed or "")
        produced["copy_last"].append(window.texts[-1])
        truths.append(stored[int(windows.target_ids[row])].text)
    methods = [m for m in GENERATION_METHODS if m != "smoothed" or smoother is not None]
    scores: dict[str, MethodScore] = {}
    for name in methods:
        vectors = np.asarray(embedder.encode(produced[name]), dtype=np.float32)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        targets = windows.targets / np.maximum(np.linalg.norm(windows.targets, axis=1, keepdims=True), 1e-12)
        per_window = {
            "bertscore_f1": np.asarray(bertscore_f1_per_sample(produced[name], truths), dtype=np.float64),
            "cosine": (vectors * targets).sum(1).astype(np.float64),
        }
        metrics = {metric: float(values.mean()) for metric, values in per_window.items()}
        scores[name] = MethodScore(
            name, "generation", metrics, {}, per_window=per_window, article=windows.article
        )
    results = {}
    for name, score in scores.items():
        entry: dict[str, Any] = dict(score.metrics)
        if name != "copy_last":
            margins: dict[str, dict[str, Any]] = {}
            for metric in ("bertscore_f1", "cosine"):
                margins[metric] = {"margin": score.metrics[metric] - scores["copy_last"].metrics[metric]}
                # none from one article: resampling it draws the same windows, a zero-width interval
                if resampled_articles(score) >= 2:
                    margins[metric]["interval95"] = list(margin_interval(score, scores["copy_last"], metric))
            entry["margin_over_copy_last"] = margins
        results[name] = entry
    latency = {stage: 1000 * float(np.mean(v)) for stage, v in seconds.items() if v}
    latency["total"] = sum(latency.values())
    examples = [
        {"context": stored[int(windows.context_ids[row][-1])].text, "truth": truths[row]}
        | {name: produced[name][row] for name in methods}
        for row in range(min(5, len(windows)))
    ]
    return {
        "windows": len(windows),
        "articles": len(set(windows.article.tolist())),
        "methods": results,
        "latency_ms": latency,
        "examples": examples,
    }


def lvm_generate_job(run: Run, config: LVMGenerateConfig) -> dict[str, Any]:
    """Run kind `lvm_generate`: `measure_generation` on the configured windows; generation.{json,md}."""
    # lazy: loads torch (this module stays light without it)
    from tldrlab.lvm.jobs import load_located_model, locate_run_model, refuse_seen_articles

    located = locate_run_model(config.run)
    path = Path(config.sequences or located[2].get("sequences") or default_sequences())
    seqs = load_sequences(path)
    split = config.split  # validation unless a test split is named
    windows = seqs.split_arrays(split).sample(config.windows, config.seed)
    if len(windows) == 0:  # over the API, where no command line checked it first
        raise missing_split(split, path, seqs.split_names())
    refuse_seen_articles(config, [located], path)
    run_id, model, _ = load_located_model(located)
    smoother = Smoother(config.lm) if config.smooth else None
    store = open_stored_concepts(config.store_url)
    try:
        # decoding may return what the system knows: the training corpus, not an unseen article's future
        candidates = candidate_index(seqs, "train")
        embedder = load_embedder(seqs.meta.get("embedder"))
        report = measure_generation(
            model, windows, store, candidates, embedder, smoother=smoother, k=config.k
        )
    finally:
        store.close()
    report.update(model_run=run_id, sequences=str(path), split=split, k=config.k, candidates="train")
    atomic_write_json(run.dir / "generation.json", report)
    atomic_write_text(run.dir / "generation.md", generation_markdown(report))
    for name in ("generation.json", "generation.md"):
        run.add_artifact(run.dir / name, kind="evaluation")
    run.set_summary(
        **{
            f"{m}_{metric}": value
            for m, r in report["methods"].items()
            for metric, value in r.items()
            if isinstance(value, float)
        },
        latency_ms=report["latency_ms"]["total"],
    )
    return report


def generation_markdown(report: dict[str, Any]) -> str:
    """The measurement as a table: each method's scores and its margin over copy-last with 95 % intervals."""
    lines = [
        f"{report['windows']} windows of {report['articles']} articles ({report.get('split', '?')} split); "
        "decoding among the training corpus's concepts.",
        "",
        "| method | BERTScore F1 | cosine | F1 margin over copy-last [95 %] | cosine margin [95 %] |",
        "|---|---|---|---|---|",
    ]
    for name, scores in report["methods"].items():
        margin = scores.get("margin_over_copy_last")
        cells = ["-", "-"]
        if margin:
            cells = [
                f"{margin[m]['margin']:+.4f}"
                + (
                    " [{:+.4f}, {:+.4f}]".format(*margin[m]["interval95"])
                    if margin[m].get("interval95")
                    else ""
                )
                for m in ("bertscore_f1", "cosine")
            ]
        lines.append(
            f"| {name} | {scores['bertscore_f1']:.4f} | {scores['cosine']:.4f} | {cells[0]} | {cells[1]} |"
        )
    latency = report["latency_ms"]
    lines += ["", "Latency per step (ms): " + ", ".join(f"{stage} {ms:.0f}" for stage, ms in latency.items())]
    return "\n".join(lines) + "\n"


def generation_report(run_id: str, report: dict[str, Any]) -> Report:
    windows = f"{report['windows']} {report.get('split')} windows ({report['articles']} articles)"
    where = f"run {run_id}: generation.json and generation.md in its run directory"
    return Report([f"next sentence on {windows}", generation_markdown(report), where])


@dataclass
class Continuation:
    """A context and what a model generated after it (`tldrlab lvm generate`)."""

    window: ContextWindow
    steps: list[GeneratedConcept]
    truth: StoredConcept | None
    """The article's true next concept, when the context came from a stored article."""
    position: int | None = None
    model: str | None = None
    """The model's run id (its directory's path when it is no run's)."""

    def as_dict(self) -> dict[str, Any]:
        """The continuation as data (`tldrlab lvm generate --json`): the model; the context, oldest first,
        with each concept's position in its article when it came from one (else None); per step the
        nearest stored concepts (best first, `score` their cosine to the prediction) with provenance, the
        smoothed sentence (None without smoothing), the step's text and its timings in seconds; and the
        true next concept when known (else None)."""
        first = self.position - len(self.window.texts) if self.position is not None else None
        truth = self.truth
        return {
            "model": self.model,
            "context": [
                {"position": None if first is None else first + i, "text": text}
                for i, text in enumerate(self.window.texts)
            ],
            "steps": [
                {
                    "step": number,
                    "text": step.text,
                    "nearest": [asdict(concept) for concept in step.nearest],
                    "smoothed": step.smoothed,
                    "seconds": step.seconds,
                }
                for number, step in enumerate(self.steps, start=1)
            ],
            "truth": None
            if truth is None
            else {k: getattr(truth, k) for k in ("id", "source", "article_id", "position", "text")},
        }

    def report(self, *, all_nearest: bool = False) -> Report:
        """The stored context, then per step the decoded concept (every nearest one with `all_nearest`),
        the smoothed sentence and the timings, and the true next concept."""
        report = Report()
        if self.position is not None:
            first = self.position - len(self.window.texts)
            report.blocks += [f"context {first + i}: {text}" for i, text in enumerate(self.window.texts)]
        truth = [f"true next ({self.truth.position}): {self.truth.text}"] if self.truth else []
        if all_nearest:
            report.blocks += truth
            for rank, h in enumerate(self.steps[0].nearest if self.steps else [], start=1):
                report.blocks.append(
                    f"{rank}. [{h.score:.3f}] {h.text}  ({h.source}/{h.article_id}#{h.position})"
                )
            return report
        for number, step in enumerate(self.steps, start=1):
            best = step.nearest[0] if step.nearest else None
            where = f"{best.source}/{best.article_id}#{best.position}, {best.score:.3f}" if best else "-"
            report.blocks.append(f"{number}. decoded: {best.text if best else '-'}  ({where})")
            if step.smoothed is not None:
                report.blocks.append(f"   smoothed: {step.smoothed}")
            report.blocks.append("   " + ", ".join(f"{s} {1000 * t:.0f} ms" for s, t in step.seconds.items()))
        report.blocks += truth
        return report


class ContinueOptions(ConfigModel):
    """What `continue_context` continues, and how (`tldrlab lvm generate`): a context given as sentences or
    as a stored article, or, with `measure`, a scored run of kind lvm_generate instead."""

    model_config = ConfigDict(allow_inf_nan=False, extra="forbid")

    run: str = Field(min_length=1)
    """The trained LVM: an lvm_train run id (or prefix) or its model directory."""
    text: list[str] = Field(default_factory=list)
    """Context sentences, in order (repeatable)."""
    article: str | None = None
    """A stored article as SOURCE/ARTICLE_ID, the context instead of `text`."""
    position: int | None = Field(None, ge=1)
    """With `article`: continue from this position (the concepts before it are the context)."""
    steps: int = Field(1, ge=1, le=100)
    """How many next concepts to generate."""
    k: int | None = Field(None, ge=1, le=50)
    """Nearest stored concepts per step (the smoother reads them all); None: 3, or 5 with `nearest`."""
    nearest: bool = False
    """List every nearest concept of the first step."""
    smooth: bool = False
    """Fuse each step's concepts into one sentence with the local LM."""
    lm: str = Field("smollm2", min_length=1)
    """The local LM that smooths (a model reference)."""
    vec2text: bool = False
    """Also invert the first prediction with vec2text (an optional package)."""
    corrector: str | None = None
    """With `vec2text`: the corrector model's path."""
    measure: int | None = Field(None, ge=1, le=100_000)
    """Instead: score raw / smoothed / copy-last on this many windows of `split` (a run of kind
    lvm_generate)."""
    split: MeasuredSplit = "val"
    """With `measure`: the split whose windows are scored: `val`, or, only when named, `test` or `cross` (as
    `lvm evaluate`)."""
    sequences: str | None = None
    """With `measure`: the sequences NPZ (default: the training run's)."""
    seed: int = 0
    """With `measure`: seed of the window sample."""
    index: str | None = None
    """The concept index directory (default: <home>/lvm/index)."""
    db: str | None = None
    """Concept store URL (default: <home>/lvm/concepts.db; PostgreSQL when the database URL is one)."""

    @property
    def neighbours(self) -> int:
        return self.k or (5 if self.nearest else 3)

    def measure_config(self) -> dict[str, Any]:
        """The lvm_generate config `measure` runs."""
        # the store too: `--db URL` was dropped, and the windows were decoded against the home's own store
        return dict(
            run=self.run, sequences=self.sequences, split=self.split, windows=self.measure, seed=self.seed,
            k=self.neighbours, smooth=self.smooth, lm=self.lm, store_url=self.db,
        )  # fmt: skip


def continue_context(options: ContinueOptions, smoother: Smoother | None = None) -> Continuation:
    """Continue a context with an lvm_train run's model (or model directory): the context is `options.text`
    (sentences, embedded here) or a stored `options.article` (SOURCE/ARTICLE_ID) up to `options.position`."""
    # lazy: loads torch (this module stays light without it)
    from tldrlab.lvm.index import load_index
    from tldrlab.lvm.jobs import load_run_model

    texts, article, position = options.text, options.article, options.position
    if texts and article:
        raise InvalidInputError("give the context either as --text or as --article/--position, not both")
    if not texts and not article:
        raise InvalidInputError("give a context: --text (repeatable) or --article SOURCE/ID --position P")
    if article and position is None:
        raise InvalidInputError("--article needs --position")
    run_id, model, _ = load_run_model(options.run)
    index = load_index(Path(options.index) if options.index else default_index())
    # never created here: `--db` naming a typo left an empty store behind, the run registry gained its tables
    store = open_stored_concepts(options.db)
    try:
        truth = None
        if texts:
            embedder = load_embedder(index.meta.get("embedder"))
            window = window_from_texts(list(texts), embedder, labels=model.config.tmd_inputs)
        else:
            assert article is not None and position is not None
            window, truth = window_from_article(store, article, position, model.config.context)
        produced = generate(
            model, window, index, store, steps=options.steps, k=options.neighbours, smoother=smoother
        )
    finally:
        store.close()
    return Continuation(window, produced, truth, position if article else None, model=run_id)
