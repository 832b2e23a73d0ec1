"""Helper of bench/cuda_check.sh: the check's data, its SmolLM2-shaped model, resume comparison, summary.

    python bench/cuda/cuda_check.py data OUT             # corpus.txt and pairs.jsonl from the repo's docs
    python bench/cuda/cuda_check.py tokenizer OUT        # the bundled SmolLM2 tokenizer, saved as HF files
    python bench/cuda/cuda_check.py smol OUT TOKENIZER   # a randomly initialised SmolLM2-135M-shaped Llama
    python bench/cuda/cuda_check.py compare RUN_A RUN_B  # per-step train losses of two runs, as JSON
    python bench/cuda/cuda_check.py summary OUT HOME     # OUT/stages.jsonl + the runs under HOME -> summary

Only the standard library at import: each command imports what it needs, so `summary` still runs where torch
or tldrlab does not import.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def make_data(out: Path) -> None:
    """A text corpus (the docs) for the causal LMs and ~1,000 document/summary pairs for t5 and causal_lm.

    The data comes from the repo itself because ../shared/data does not travel with a checkout copy."""
    out.mkdir(parents=True, exist_ok=True)
    sources = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    texts = [path.read_text(encoding="utf-8") for path in sources]
    (out / "corpus.txt").write_text("\n\n".join(texts), encoding="utf-8")
    pairs = []
    for text in texts:
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if len(p.strip()) > 80]
        document: list[str] = []
        for paragraph in paragraphs:
            document.append(paragraph)
            if sum(len(p) for p in document) >= 800:
                first = re.split(r"(?<=[.!?])\s", document[0], maxsplit=1)[0][:200]
                pairs.append({"id": f"doc-{len(pairs)}", "document": "\n\n".join(document), "summary": first})
                document = []
    with (out / "pairs.jsonl").open("w", encoding="utf-8") as handle:
        for pair in pairs:
            handle.write(json.dumps(pair) + "\n")
    print(f"{out}: corpus {sum(len(t) for t in texts):,} characters, {len(pairs)} pairs")


def save_tokenizer(out: Path) -> None:
    """The SmolLM2 tokenizer of the bundled GGUF as tokenizer.json & co (the GGUF is too big to carry)."""
    from transformers import AutoTokenizer

    from tldrlab.models.resolve import resolve_model_ref

    gguf = resolve_model_ref("smollm2").path
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer.save_pretrained(str(out))
    print(f"{out}: {type(tokenizer).__name__}, vocab {len(tokenizer)}")


def make_smol(out: Path, tokenizer_dir: Path) -> None:
    """SmolLM2-135M's architecture (30 layers, width 576, 9 heads, 3 KV heads), random weights."""
    import shutil

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        max_position_embeddings=8192,
        rope_theta=100000.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(out))
    for path in tokenizer_dir.iterdir():
        shutil.copy(path, out / path.name)
    print(f"{out}: {sum(p.numel() for p in model.parameters()):,} parameters")


def train_losses(run_dir: Path) -> dict[int, float]:
    """step -> train_loss of a run's metrics.jsonl (the last line of a step wins, as after a resume)."""
    losses: dict[int, float] = {}
    path = run_dir / "metrics.jsonl"
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if "train_loss" in row:
                losses[int(row["step"])] = float(row["train_loss"])
    return losses


def compare(a: Path, b: Path) -> dict[str, Any]:
    """Whether two runs logged the same per-step train losses (exact resume)."""
    first, second = train_losses(a), train_losses(b)
    common = sorted(set(first) & set(second))
    diffs = [abs(first[s] - second[s]) for s in common]
    return {
        "steps_a": len(first),
        "steps_b": len(second),
        "same_steps": sorted(first) == sorted(second),
        "equal": bool(common) and sorted(first) == sorted(second) and max(diffs) == 0.0,
        "max_abs_diff": max(diffs) if diffs else None,
        "first_diff_step": next((s for s, d in zip(common, diffs, strict=True) if d), None),
    }


def _steady_state(run_dir: Path) -> dict[str, float]:
    """Median tokens/s and MFU of the metrics lines of the run's second half: the whole-run figure counts the
    first steps' start-up (CUDA context, kernel selection) too."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    rows = [row for row in rows if "tokens_per_s" in row]
    rows = rows[len(rows) // 2 :]
    steady = {}
    for key in ("tokens_per_s", "mfu"):
        values = sorted(float(row[key]) for row in rows if row.get(key) is not None)
        if values:
            steady[key] = values[len(values) // 2]
    return steady


def run_figures(run_dir: Path) -> dict[str, Any]:
    """The figures one run logged: kind, status, throughput and MFU, last train loss, final metrics."""
    figures: dict[str, Any] = {"run": run_dir.name}
    manifest = run_dir / "manifest.json"
    if manifest.exists():
        data = json.loads(manifest.read_text(encoding="utf-8"))
        figures.update({k: data.get(k) for k in ("kind", "status") if k in data})
    log = run_dir / "log.jsonl"
    if log.exists():
        for line in log.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            for key in ("tokens_per_s", "mfu", "parameters", "device", "precision"):
                if key in row:
                    figures[key] = row[key]
            if row.get("level") in ("WARNING", "ERROR"):
                figures.setdefault("warnings", []).append(str(row.get("message"))[:300])
    steady = _steady_state(run_dir)
    if steady:
        figures["steady"] = steady
    losses = train_losses(run_dir)
    if losses:
        figures["train_steps"] = len(losses)
        figures["last_train_loss"] = losses[max(losses)]
    for name in ("eval_summary.json", "summary.json"):
        path = run_dir / name
        if path.exists():
            with contextlib.suppress(json.JSONDecodeError):
                figures[name] = json.loads(path.read_text(encoding="utf-8"))
    return figures


def _num(value: Any) -> str:
    """A figure for the table: 4 significant digits, blank when missing."""
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def summarize(out: Path, home: Path) -> dict[str, Any]:
    """summary.json and summary.md in OUT from the stage records and every run under HOME/*/runs."""
    stages = []
    records = out / "stages.jsonl"
    if records.exists():
        stages = [json.loads(line) for line in records.read_text(encoding="utf-8").splitlines() if line]
    runs = {}
    for runs_dir in sorted(home.glob("*/runs")):
        for run_dir in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
            runs[f"{runs_dir.parent.name}/{run_dir.name}"] = run_figures(run_dir)
    summary = {"stages": stages, "runs": runs}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
    lines = ["| stage | rc | seconds | note |", "| --- | --- | --- | --- |"]
    lines += [f"| {s['stage']} | {s['rc']} | {s['seconds']} | {s.get('note', '')} |" for s in stages]
    lines += [
        "",
        "| run | status | tokens/s | MFU | steady tokens/s | steady MFU | last train loss |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, fig in runs.items():
        steady = fig.get("steady", {})
        lines.append(
            f"| {name} | {fig.get('status', '')} | {_num(fig.get('tokens_per_s'))} | {_num(fig.get('mfu'))} "
            f"| {_num(steady.get('tokens_per_s'))} | {_num(steady.get('mfu'))} "
            f"| {_num(fig.get('last_train_loss'))} |"
        )
    (out / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return summary


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    command, args = argv[0], [Path(a) for a in argv[1:]]
    if command == "data":
        make_data(args[0])
    elif command == "tokenizer":
        save_tokenizer(args[0])
    elif command == "smol":
        make_smol(args[0], args[1])
    elif command == "compare":
        print(json.dumps(compare(args[0], args[1])))
    elif command == "summary":
        print((args[0] / "summary.md").read_text() if summarize(args[0], args[1]) else "")
    else:
        print(f"cuda_check.py: unknown command {command!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
