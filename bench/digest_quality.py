"""Highlight quality of the heuristic and learned scorers beside strong simple baselines, with paired
bootstrap 95 % intervals over papers / threads / queries.

    .venv/bin/python bench/digest_quality.py --only scitldr|beer|qmsum [--cache DIR] [--json F] [--out PNG]

- SciTLDR dev (query-free, one post titled with the paper title): P@1, P@3, Hit@3 against `source_labels`,
  and ROUGE-L F1 (x100) of the top sentence against the first TL;DR. Baselines: cosine to the title, Lead,
  LexRank, TextRank, chance.
- beer.stackexchange.com, dev side of the deterministic thread split (`highlight_cases.forum_split`; the train
  side trains the learned scorer), threads with an accepted answer and 2+ answers, accepted flag hidden:
  `votes hidden`: does the top 3 include a sentence of the accepted answer? Baselines: random with the same
  per-post cap (2 per post while other posts remain; mean of 200 draws), cosine to the title, Lead, LexRank,
  TextRank, uncapped chance. `votes shown`: is the top 1 (top 3) in the accepted answer? Baseline: the
  first sentence(s) of the top-voted answer.
- QMSum val (query-aware, each specific query; every speaker turn one unit): turn P@5 and R@10 against
  `relevant_text_span`. Baselines: BM25 + MiniLM fusion without neighbour context, vector only, BM25 only,
  Lead, LexRank, TextRank, chance.

Every method ranks the same candidate sentences (`candidates.highlight_candidates`: no boilerplate, no
quoted text). Intervals: each method minus the reference named in the output, resampling cases; each
learned scorer is also compared with the heuristic and with every learned scorer listed before it (e.g.
learned_v2 - learned_v1; a file with a re-ranker minus its base: what the re-ranker adds on QMSum). QMSum
also reports each method's ranking time per query (vectors given, so a re-ranker's MiniLM passes are what
it adds). Learned scorers: the packaged ones (`scorers.SCORER_FILES`), or `--scorer-file`
(repeatable) for unshipped files. Vectors come from `--embedder` (default minilm), kept per sentence under
`--cache` between runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from headline import add_quick, headline, need_data, scratch_png

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tldrlab.digest.baselines import BASELINES
from tldrlab.digest.candidates import highlight_candidates
from tldrlab.digest.features import ScorerMode
from tldrlab.digest.highlight_cases import (
    HighlightCase,
    case_relevance,
    embed_cases,
    forum_cases,
    qmsum_cases,
    scitldr_cases,
)
from tldrlab.digest.highlights import HighlightOptions, same_sentence_key, select_mmr
from tldrlab.digest.scorers import LinearScorer, load_scorer_file, resolve_scorer
from tldrlab.evaluate.bootstrap import paired_bootstrap_interval
from tldrlab.evaluate.metrics import RougeTokenizer

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
Order = list[int]
Method = Callable[[HighlightCase, np.ndarray], Order]
"""(case, eligible mask) -> indices of the top sentences, best first."""


def ranked(scores: np.ndarray, eligible: np.ndarray, k: int) -> Order:
    order = np.argsort(-np.where(eligible, scores, -np.inf), kind="stable")
    return [int(i) for i in order[: min(k, int(eligible.sum()))]]


def ours(options: HighlightOptions, scorer: LinearScorer | None = None, k: int = 10) -> Method:
    """Our ranking (relevance, then MMR with the per-post cap), optionally with an unshipped scorer file."""

    def order(case: HighlightCase, eligible: np.ndarray) -> Order:
        assert case.vectors is not None
        case_options = options.model_copy(update={"q": case.query}) if case.query else options
        relevance = case_relevance(case, case_options, scorer)
        groups = [r.post_id for r in case.records]
        keys = [same_sentence_key(r.text) for r in case.records]  # a repeated sentence is shown once
        return select_mmr(
            relevance, case.vectors, groups, k, options.diversity, options.max_per_post, eligible, keys
        )

    return order


def title_cosine(case: HighlightCase, eligible: np.ndarray) -> Order:
    assert case.vectors is not None and case.title_vector is not None
    return ranked(case.vectors @ case.title_vector, eligible, 10)


def classic(name: str) -> Method:
    ranker = BASELINES[name]
    cache: dict[int, np.ndarray] = {}

    def order(case: HighlightCase, eligible: np.ndarray) -> Order:
        key = id(case.records)  # a meeting's queries share one ranking
        if key not in cache:
            cache[key] = ranker([r.text for r in case.records])
        return ranked(cache[key], eligible, 10)

    return order


def capped_random_orders(case: HighlightCase, eligible: np.ndarray, draws: int, k: int) -> list[Order]:
    """Random sentence orders under the same per-post cap as ours (2 per post while other posts remain)."""
    rng = np.random.default_rng(int.from_bytes(case.id.encode()[:8].ljust(8, b"\0"), "little"))
    groups = [r.post_id for r in case.records]
    flat = np.zeros((len(groups), 1), dtype=np.float32)
    return [select_mmr(rng.random(len(groups)), flat, groups, k, 0.0, 2, eligible) for _ in range(draws)]


def outside_quotes(method: Method) -> Method:
    """The method on the candidates `outside_quotes=True` allows (quotes of outside sources count)."""

    def order(case: HighlightCase, eligible: np.ndarray) -> Order:
        return method(case, highlight_candidates(case.records, case.thread, outside_quotes=True))

    return order


def top_voted_first(case: HighlightCase, eligible: np.ndarray) -> Order:
    """The top-voted answer's first sentences (ties: the earlier answer), then the rest in thread order."""
    answers = [p for p in case.thread.posts if p.kind == "answer"]
    best = max(answers, key=lambda p: (p.score or 0, -p.number))
    first = [i for i, r in enumerate(case.records) if r.post_id == best.id and eligible[i]]
    rest = [i for i, r in enumerate(case.records) if r.post_id != best.id and eligible[i]]
    return first + rest


def summarise(
    per_case: dict[str, dict[str, list[float]]], groups: list[str], reference: str
) -> dict[str, dict[str, Any]]:
    """Mean per method and metric, and its difference from `reference` with a paired bootstrap interval."""
    out: dict[str, dict[str, Any]] = {}
    for method, metrics in per_case.items():
        row: dict[str, Any] = {"cases": len(next(iter(metrics.values())))}
        for metric, values in metrics.items():
            row[metric] = float(np.mean(values))
            if method != reference:
                diff = np.asarray(values) - np.asarray(per_case[reference][metric])
                low, high = paired_bootstrap_interval(diff, np.asarray(groups))
                row.setdefault("_vs", {"reference": reference})[metric] = [float(diff.mean()), low, high]
        out[method] = row
    return out


def comparisons(
    per_case: dict[str, dict[str, list[float]]], groups: list[str], pairs: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    rows = []
    for a, b in pairs:
        if a not in per_case or b not in per_case:
            continue
        for metric in per_case[a]:
            diff = np.asarray(per_case[a][metric]) - np.asarray(per_case[b][metric])
            low, high = paired_bootstrap_interval(diff, np.asarray(groups))
            rows.append(
                {"a": a, "b": b, "metric": metric, "diff": float(diff.mean()), "low": low, "high": high}
            )
    return rows


def scorer_methods(base: HighlightOptions, scorers: Sequence[LinearScorer], label: str) -> dict[str, Method]:
    """The heuristic and the learned scorers under the same options."""
    methods = {f"heuristic{label}": ours(base.model_copy(update={"scorer": "heuristic"}))}
    for scorer in scorers:
        methods[f"{scorer.name}{label}"] = ours(base, scorer)
    return methods


def learned_pairs(scorers: Sequence[LinearScorer], label: str, heuristic: str) -> list[tuple[str, str]]:
    """Each learned scorer minus the heuristic, and minus each learned scorer listed before it."""
    names = [f"{s.name}{label}" for s in scorers]
    return [(name, heuristic) for name in names] + [
        (later, earlier) for i, earlier in enumerate(names) for later in names[i + 1 :]
    ]


def run_scitldr(cases: list[HighlightCase], scorers: Sequence[LinearScorer]) -> dict[str, Any]:
    from rouge_score import rouge_scorer

    rouge = rouge_scorer.RougeScorer(["rougeL"], tokenizer=RougeTokenizer(use_stemmer=True))
    methods: dict[str, Method] = {
        **scorer_methods(HighlightOptions(), scorers, ""),
        "heuristic without title": ours(HighlightOptions(scorer="heuristic", title_weight=0.0)),
        "title cosine": title_cosine,
        **{name: classic(name) for name in BASELINES},
    }
    per_case: dict[str, dict[str, list[float]]] = {name: {} for name in [*methods, "chance"]}

    def add(name: str, values: dict[str, float]) -> None:
        for metric, value in values.items():
            per_case[name].setdefault(metric, []).append(value)

    for case in cases:
        labels = case.labels
        eligible = highlight_candidates(case.records, case.thread)
        target = (case.extra.get("targets") or [""])[0]  # type: ignore[index]
        for name, method in methods.items():
            order = method(case, eligible)
            hits3 = float(labels[order[:3]].sum())
            top = case.records[order[0]].text
            add(
                name,
                {
                    "P@1": float(labels[order[0]]),
                    "P@3": hits3 / 3,
                    "Hit@3": float(hits3 > 0),
                    "ROUGE-L@1": 100 * rouge.score(str(target), top)["rougeL"].fmeasure,
                },
            )
        n, r = len(labels), int(labels.sum())
        chance_rouge = float(
            np.mean([100 * rouge.score(str(target), x.text)["rougeL"].fmeasure for x in case.records])
        )
        add(
            "chance",
            {
                "P@1": r / n,
                "P@3": r / n,
                "Hit@3": 1 - math.comb(n - r, min(3, n)) / math.comb(n, min(3, n)),
                "ROUGE-L@1": chance_rouge,
            },
        )
    groups = [c.group for c in cases]
    default = default_name("document")
    return {
        "methods": summarise(per_case, groups, "title cosine"),
        "comparisons": comparisons(
            per_case, groups, [(default, "title cosine"), *learned_pairs(scorers, "", "heuristic")]
        ),
        "default": default,
    }


def default_name(mode: ScorerMode) -> str:
    shipped = resolve_scorer("auto", mode)
    return shipped.name if shipped is not None else "heuristic"


def run_beer(cases: list[HighlightCase], scorers: Sequence[LinearScorer]) -> dict[str, Any]:
    hidden = HighlightOptions(use_accepted=False, use_score=False)
    shown = HighlightOptions(use_accepted=False)
    hidden_methods: dict[str, Method] = {
        **scorer_methods(hidden, scorers, " (votes hidden)"),
        "title cosine": title_cosine,
        **{name: classic(name) for name in BASELINES},
    }
    shown_methods: dict[str, Method] = {
        **scorer_methods(shown, scorers, " (votes shown)"),
        "heuristic, outside quotes allowed (votes shown)": outside_quotes(
            ours(shown.model_copy(update={"scorer": "heuristic", "outside_quotes": True}))
        ),
        "top-voted answer, first sentences": top_voted_first,
    }
    hidden_case: dict[str, dict[str, list[float]]] = {
        n: {} for n in [*hidden_methods, "capped random", "chance"]
    }
    shown_case: dict[str, dict[str, list[float]]] = {n: {} for n in [*shown_methods, "capped random"]}

    def add(table: dict[str, dict[str, list[float]]], name: str, values: dict[str, float]) -> None:
        for metric, value in values.items():
            table[name].setdefault(metric, []).append(value)

    def measures(order: Order, labels: np.ndarray) -> dict[str, float]:
        return {
            "top-3 has accepted": float(labels[order[:3]].any()),
            "top-1 in accepted": float(labels[order[0]]),
        }

    for case in cases:
        labels = case.labels
        eligible = highlight_candidates(case.records, case.thread)
        for name, method in hidden_methods.items():
            add(hidden_case, name, measures(method(case, eligible), labels))
        for name, method in shown_methods.items():
            add(shown_case, name, measures(method(case, eligible), labels))
        draws = [measures(o, labels) for o in capped_random_orders(case, eligible, 200, 3)]
        mean = {m: float(np.mean([d[m] for d in draws])) for m in draws[0]}
        add(hidden_case, "capped random", mean)
        add(shown_case, "capped random", mean)
        n, a = int(eligible.sum()), int(labels[eligible].sum())
        add(
            hidden_case,
            "chance",
            {"top-3 has accepted": 1 - math.comb(n - a, 3) / math.comb(n, 3), "top-1 in accepted": a / n},
        )
    groups = [c.group for c in cases]
    hidden_pairs = learned_pairs(scorers, " (votes hidden)", "heuristic (votes hidden)")
    shown_pairs = learned_pairs(scorers, " (votes shown)", "heuristic (votes shown)")
    shown_pairs += [(f"{s.name} (votes shown)", "top-voted answer, first sentences") for s in scorers]
    return {
        "votes hidden": {
            "methods": summarise(hidden_case, groups, "capped random"),
            "comparisons": comparisons(hidden_case, groups, hidden_pairs),
        },
        "votes shown": {
            "methods": summarise(shown_case, groups, "top-voted answer, first sentences"),
            "comparisons": comparisons(shown_case, groups, shown_pairs),
        },
        "default": {"votes hidden": default_name("forum"), "votes shown": default_name("forum_votes")},
    }


def run_qmsum(cases: list[HighlightCase], scorers: Sequence[LinearScorer]) -> dict[str, Any]:
    def options(**update: Any) -> HighlightOptions:  # each case brings its own query
        settings: dict[str, Any] = {"q": "placeholder", "diversity": 0.0, "max_per_post": None}
        return HighlightOptions(**{**settings, "scorer": "heuristic", **update})

    methods: dict[str, Method] = {
        "heuristic (fusion + neighbours)": ours(options()),
        "BM25 + MiniLM fusion": ours(options(query_context_weight=0.0)),
        "vector only": ours(options(query_context_weight=0.0, query_vector_weight=1.0)),
        "BM25 only": ours(options(query_context_weight=0.0, query_vector_weight=0.0)),
        **{name: classic(name) for name in BASELINES},
    }
    for scorer in scorers:
        methods[scorer.name] = ours(options(scorer="auto"), scorer)
    per_case: dict[str, dict[str, list[float]]] = {name: {} for name in [*methods, "chance"]}
    seconds: dict[str, float] = dict.fromkeys(methods, 0.0)
    for case in cases:
        relevant = case.labels
        eligible = highlight_candidates(case.records, case.thread)
        for name, method in methods.items():
            started = time.perf_counter()
            order = method(case, eligible)
            seconds[name] += time.perf_counter() - started
            per_case[name].setdefault("P@5", []).append(float(relevant[order[:5]].sum() / 5))
            per_case[name].setdefault("R@10", []).append(float(relevant[order[:10]].sum() / relevant.sum()))
        share = float(relevant.sum() / len(relevant))
        per_case["chance"].setdefault("P@5", []).append(share)
        per_case["chance"].setdefault("R@10", []).append(min(10, len(relevant)) / len(relevant))
    groups = [c.group for c in cases]
    return {
        "methods": summarise(per_case, groups, "BM25 + MiniLM fusion"),
        "comparisons": comparisons(
            per_case, groups, learned_pairs(scorers, "", "heuristic (fusion + neighbours)")
        ),
        "default": default_name("query"),
        "ms_per_query": {name: round(1000 * t / max(len(cases), 1), 1) for name, t in seconds.items()},
    }


def print_results(name: str, results: dict[str, Any]) -> None:
    blocks = {k: v for k, v in results.items() if isinstance(v, dict) and "methods" in v} or {name: results}
    for block_name, block in blocks.items():
        print(f"\n== {block_name}")
        for method, row in block["methods"].items():
            shown = "  ".join(
                f"{k}={v:.3f}" for k, v in row.items() if not k.startswith("_") and k != "cases"
            )
            vs = row.get("_vs")
            extra = ""
            if vs:
                first = next(k for k in vs if k != "reference")
                d, lo, hi = vs[first]
                extra = f"   {first} vs {vs['reference']}: {d:+.3f} [{lo:+.3f}, {hi:+.3f}]"
            print(f"{method:38s} {shown}  (n={row['cases']}){extra}")
        for method, ms in (results.get("ms_per_query") or {}).items() if block_name == name else ():
            print(f"  {method}: {ms:.1f} ms per query (ranking only, vectors given)")
        for c in block.get("comparisons", []):
            print(
                f"  {c['a']} - {c['b']} {c['metric']}: {c['diff']:+.4f} [{c['low']:+.4f}, {c['high']:+.4f}]"
            )
    sys.stdout.flush()


def plot(all_results: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for bench, results in all_results.items():
        blocks = {k: v for k, v in results.items() if isinstance(v, dict) and "methods" in v} or {
            bench: results
        }
        for block_name, block in blocks.items():
            first = next(iter(block["methods"].values()))
            for metric in first:
                if metric != "cases" and not metric.startswith("_"):
                    panels.append(
                        (f"{bench}" if block_name == bench else f"{bench} {block_name}", block, metric)
                    )
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.6 * cols, 3.8 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax, (title, block, metric) in zip(axes.flat, panels, strict=False):
        names = list(block["methods"])
        values = [block["methods"][n][metric] for n in names]
        colors = ["#0b63c5" if n.startswith(("heuristic", "learned")) else "#999999" for n in names]
        ax.barh(names, values, color=colors)
        for y, name in enumerate(names):
            vs = block["methods"][name].get("_vs", {}).get(metric)
            if vs is not None:
                ref = block["methods"][block["methods"][name]["_vs"]["reference"]][metric]
                ax.plot([ref + vs[1], ref + vs[2]], [y, y], color="black", linewidth=1)
        ax.invert_yaxis()
        ax.set_title(f"{title}: {metric}", fontsize=9)
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:.3f}", va="center", fontsize=7)
        ax.set_xlim(0, max(values) * 1.3 or 1)
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle(
        "bars: mean; whiskers: 95 % paired-bootstrap interval of the difference to the reference", fontsize=9
    )
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=["scitldr", "beer", "qmsum"], action="append", default=None)
    parser.add_argument("--scitldr-limit", type=int, default=None, help="SciTLDR dev papers (default: all)")
    parser.add_argument("--qmsum-limit", type=int, default=None, help="QMSum val meetings (default: all)")
    parser.add_argument(
        "--qmsum-every", type=int, default=1, help="every N-th QMSum val meeting (default: 1)"
    )
    parser.add_argument("--beer-limit", type=int, default=None, help="beer threads (default: all)")
    parser.add_argument(
        "--beer-split", choices=["dev", "all"], default="dev", help="all: train side too (heuristic only)"
    )
    parser.add_argument("--embedder", default="minilm")
    parser.add_argument("--cache", type=Path, default=None, help="keep sentence vectors here between runs")
    parser.add_argument(
        "--scorer-file",
        type=Path,
        action="append",
        default=None,
        help="a learned scorer file, repeatable, in the order to compare (default: the packaged ones)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=scratch_png("digest_quality"),
        help="the plot (default: a scratch file, so a run of one set never replaces the docs' image, which "
        "--merge of all three sets' --json makes)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, help="only plot: merge --json files")
    add_quick(parser, scitldr_limit=60, qmsum_limit=1, beer_limit=40, out=scratch_png("digest_quality"))
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.merge:
        merged = {k: v for path in args.merge for k, v in json.loads(path.read_text()).items()}
        plot(merged, args.out)
        print(f"plot: {args.out}")
        return
    files = {
        "scitldr": DATA / "scitldr" / "scitldr_a.dev.jsonl",
        "beer": DATA / "stackexchange_beer" / "Posts.xml",
        "qmsum": DATA / "qmsum" / "qmsum.val.jsonl",
    }
    need_data(*(files[name] for name in args.only or files))
    from tldrlab.embed import get_embedder

    scorers = [load_scorer_file(f) for f in args.scorer_file] if args.scorer_file else packaged_scorers()
    embedder = get_embedder(args.embedder)
    loaders = {
        "scitldr": lambda: scitldr_cases(files["scitldr"], args.scitldr_limit),
        "beer": lambda: forum_cases(
            files["beer"], None if args.beer_split == "all" else "dev", args.beer_limit
        ),
        "qmsum": lambda: qmsum_cases(files["qmsum"], args.qmsum_limit, args.qmsum_every),
    }
    runners = {"scitldr": run_scitldr, "beer": run_beer, "qmsum": run_qmsum}
    all_results: dict[str, Any] = {}
    for name in args.only or list(runners):
        started = time.perf_counter()
        cases = loaders[name]()
        embed_cases(cases, embedder, args.cache)
        embedded = time.perf_counter() - started
        learned = [] if name == "beer" and args.beer_split == "all" else scorers  # never on its train side
        all_results[name] = runners[name](cases, learned)
        all_results[name]["seconds"] = {
            "embed": round(embedded),
            "total": round(time.perf_counter() - started),
        }
        all_results[name]["embedder"] = args.embedder
        print(
            f"\n#### {name}: {len(cases)} cases, {time.perf_counter() - started:.0f} s "
            f"(embedding {embedded:.0f} s)"
        )
        print_results(name, all_results[name])
    print_headlines(all_results)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(all_results, indent=2))
    plot(all_results, args.out)
    print(f"\nplot: {args.out}")


def print_headlines(all_results: dict[str, Any]) -> None:
    """The shipped default beside its strongest simple baseline, one ratio per bench (for `make bench`)."""
    for name, results in all_results.items():
        blocks = {k: v for k, v in results.items() if isinstance(v, dict) and "methods" in v} or {
            name: results
        }
        for block_name, block in blocks.items():
            methods = block["methods"]
            reference = next((r["_vs"]["reference"] for r in methods.values() if "_vs" in r), None)
            default = results.get("default")
            if isinstance(default, dict):
                default = default.get(block_name)
            ours_name = next((m for m in methods if default and m.startswith(str(default))), None)
            if reference is None or ours_name is None:
                continue
            metric = next(k for k in methods[reference] if k != "cases" and not k.startswith("_"))
            label = name if block_name == name else f"{name} {block_name}"
            value = methods[ours_name][metric] / max(methods[reference][metric], 1e-9)
            headline(f"highlights {label} {metric} default / {reference}", value, "> 1")


def packaged_scorers() -> list[LinearScorer]:
    from tldrlab.digest.scorers import SCORER_FILES, load_scorer

    return [load_scorer(name) for name in SCORER_FILES]


if __name__ == "__main__":
    main()
