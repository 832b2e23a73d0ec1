"""Training curves of several fine-tuning runs side by side (train loss, answer loss, ROUGE-L) as one PNG.

    .venv/bin/python bench/plot_finetune_curves.py --out docs/img/causal_lm_debian.png \\
        full=RUN_DIR_OR_ID lora=RUN_DIR_OR_ID

Each run's `metrics.jsonl` gives the train loss (every `log_every` steps), the validation answer loss and the
ROUGE-L of generated validation summaries (at the generating evaluations).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tldrlab.runs.atomic import read_jsonl


def run_dir(ref: str) -> Path:
    path = Path(ref)
    if path.is_dir():
        return path
    from tldrlab.runs import open_registry

    return Path(open_registry().find(ref).run_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--title", default="")
    parser.add_argument("runs", nargs="+", help="label=RUN_DIR_OR_ID")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("train_loss", "train loss (answer tokens)"), ("eval_loss", "validation answer loss"),
              ("eval_rougeL", "validation ROUGE-L (generated)")]  # fmt: skip
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.4))
    for spec in args.runs:
        label, _, ref = spec.partition("=")
        rows = read_jsonl(run_dir(ref) / "metrics.jsonl")
        for ax, (key, title) in zip(axes, panels, strict=True):
            points = [(r["step"], r[key]) for r in rows if key in r]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o" if key != "train_loss" else None, label=label)
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("optimizer step")
    for ax in axes:
        if not ax.lines:  # e.g. the runs stopped before their first generating evaluation
            ax.text(0.5, 0.5, "no points in these runs", ha="center", va="center", transform=ax.transAxes)
    axes[0].legend()
    if args.title:
        fig.suptitle(args.title, fontsize=11)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
