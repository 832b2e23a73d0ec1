"""Thread choice: 20 char-LSTM training steps with tldrlab's default threads vs every manual setting.

    .venv/bin/python bench/threads.py [--steps 20] [--repeats 3] [--settings auto 1 2] [--competitors 1]

Each measurement is a fresh process (threads are fixed when torch loads) that does what `tldrlab train`
does: the CLI's `configure_threads` (auto, or `--threads N`), a run (`start_run`, which fits an automatic
choice to the CPUs idle at that moment), then `run_training` of the default char_lstm (2 layers, 256 wide)
on tinyshakespeare, batch 16 x 128 characters, one evaluation at the end; the figure is the loop's own
time for the steps (`TrainResult.seconds`), not the process start. OMP_NUM_THREADS and friends are removed
from the children's environment, so `auto` is what a user without them gets; torch's own default (one
thread per core of the host) is the manual setting equal to the CPU count.

Two scenarios, settings interleaved within each repeat, best (least disturbed) of `--repeats` per setting:
`quiet` (nothing else started by the bench) and `competing` (`--competitors` CPU-bound busy-loop processes
running throughout). The load average is printed with each scenario: a quiet scenario is only quiet if the
machine was. Goal: `auto` within 10 % of the best manual setting in both scenarios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from headline import add_quick, headline, need_data

REPO = Path(__file__).resolve().parents[1]
SHAKESPEARE = REPO.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
BUSY_LOOP = "while True: pass"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS")


def child(setting: str, steps: int, corpus: str, tokenizer: str, home: str) -> None:
    """One measurement (runs in its own process)."""
    os.environ["TLDRLAB_HOME"] = home
    from tldrlab.threads import configure_threads

    configure_threads(None if setting == "auto" else int(setting))  # what the CLI's root callback does
    import torch

    from tldrlab.runs import start_run
    from tldrlab.train.config import TrainJobConfig
    from tldrlab.train.jobs import run_training

    job = TrainJobConfig.model_validate(
        {
            "model": "char_lstm",
            "data": {"path": corpus, "block_size": 128},
            "tokenizer": {"path": tokenizer},
            "train": {
                "max_steps": steps,
                "batch_size": 16,
                "eval_every": steps,
                "checkpoint_every": 0,
                "progress": False,
                "plot": False,
            },
            "wandb": "disabled",
        }
    )
    with start_run("train", job) as run:
        result = run_training(run, job)
        manifest = json.loads((run.dir / "manifest.json").read_text())
    print(
        json.dumps(
            {"seconds": result.seconds, "torch_threads": torch.get_num_threads(), "plan": manifest["threads"]}
        )
    )


def measure(setting: str, args: argparse.Namespace, corpus: Path, tokenizer: Path, home: Path) -> dict:  # type: ignore[type-arg]
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS and not k.startswith("TLDRLAB_THREAD")}
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    argv = [
        sys.executable,
        __file__,
        "--child",
        setting,
        str(args.steps),
        str(corpus),
        str(tokenizer),
        str(home),
    ]
    try:
        proc = subprocess.run(
            argv, env=env, capture_output=True, text=True, check=False, timeout=args.timeout_s
        )
    except subprocess.TimeoutExpired:  # counted as the time limit: the real figure is higher still
        return {"seconds": float(args.timeout_s), "torch_threads": None, "plan": None, "timed_out": True}
    if proc.returncode != 0:
        raise SystemExit(f"measurement {setting} failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def scenario(name: str, args: argparse.Namespace, corpus: Path, tokenizer: Path, home: Path) -> dict:  # type: ignore[type-arg]
    competitors = []
    if name == "competing":
        competitors = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(args.competitors)]
        time.sleep(1.0)
    best: dict[str, dict] = {}  # type: ignore[type-arg]
    load_before = os.getloadavg()[0]
    try:
        for repeat in range(args.repeats):
            for setting in args.settings:
                got = measure(setting, args, corpus, tokenizer, home)
                print(
                    f"  {name} repeat {repeat} {setting:>4}: {got['seconds']:.2f} s "
                    f"({got['torch_threads']} torch threads; plan {got['plan']})",
                    flush=True,
                )
                if setting not in best or got["seconds"] < best[setting]["seconds"]:
                    best[setting] = got
    finally:
        for proc in competitors:
            proc.kill()
            proc.wait()
    manual = {s: v for s, v in best.items() if s != "auto"}
    best_manual = min(manual, key=lambda s: manual[s]["seconds"])
    return {
        "scenario": name,
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
        "best": best,
        "best_manual": best_manual,
        "auto_over_best": best["auto"]["seconds"] / manual[best_manual]["seconds"]
        if "auto" in best
        else None,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        setting, steps, corpus, tokenizer, home = sys.argv[2:7]
        child(setting, int(steps), corpus, tokenizer, home)
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--settings", nargs="+", default=None, help="auto and manual counts (default: auto 1..CPUs)"
    )
    parser.add_argument("--competitors", type=int, default=1, help="busy processes in the competing scenario")
    parser.add_argument("--scenarios", nargs="+", default=["quiet", "competing"])
    parser.add_argument(
        "--timeout-s", type=float, default=300, help="stop a measurement after this long (shown as >= it)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    add_quick(parser, steps=4, repeats=1, timeout_s=60)
    args = parser.parse_args()
    need_data(SHAKESPEARE)

    sys.path.insert(0, str(REPO / "src"))
    from tldrlab.threads import available_cpus

    cpus = available_cpus()
    args.settings = args.settings or ["auto", *[str(n) for n in range(1, cpus + 1)]]
    print(f"available CPUs {cpus} (os.cpu_count {os.cpu_count()}); settings {args.settings}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TLDRLAB_HOME"] = str(Path(tmp) / "home")
        from tldrlab.tokenizers import train_tokenizer

        corpus = Path(tmp) / "shakespeare.txt"
        corpus.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:200_000], encoding="utf-8")
        train_tokenizer("char", [corpus], 100, Path(tmp) / "tokenizer")
        results = [
            scenario(name, args, corpus, Path(tmp) / "tokenizer", Path(tmp) / "home")
            for name in args.scenarios
        ]
    print(
        "\n| scenario | load avg (before, after) | " + " | ".join(args.settings) + " | auto / best manual |"
    )
    print("|---|---|" + "---|" * len(args.settings) + "---|")
    for r in results:
        cells = []
        for s in args.settings:
            got = r["best"][s]
            shown = f"{'>= ' if got.get('timed_out') else ''}{got['seconds']:.2f} s"
            cells.append(shown + (f" ({got['torch_threads']} thr)" if s == "auto" else ""))
        ratio = f"{r['auto_over_best']:.2f} (best: {r['best_manual']})" if r["auto_over_best"] else "-"
        loads = f"{r['load_average_before']}, {r['load_average_after']}"
        print(f"| {r['scenario']} | {loads} | " + " | ".join(cells) + f" | {ratio} |")
    for r in results:
        if r["auto_over_best"]:
            headline(f"threads auto / best manual, {r['scenario']}", r["auto_over_best"], "<= 1.10")
    if args.json:
        args.json.write_text(json.dumps({"cpus": cpus, "steps": args.steps, "results": results}, indent=2))


if __name__ == "__main__":
    main()
