"""A tiny trial program for sweep tests: a fake training curve whose quality depends on --x.

    python toy_program.py --x=0.3 [--steps=8] [--sleep=0.0] [--hold_when_bad=0.0] [--fail=false]

Prints one JSON line per evaluation on stdout: {"step": s, "loss": (x - 0.7)^2 + 1/s}. Bad x -> high loss at
every step, so pruners can stop it early. The number of evaluations done is also written to
$TLDRLAB_RUN_DIR/evals.txt after every line (a pruned trial shows fewer). `hold_when_bad` seconds: a bad x
waits that long after each evaluation from the second on, so a pruner that stops it at its second finds it
still running unless the runner reads that evaluation later than that (a loaded machine lagged over 1 s).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    args = dict(a.removeprefix("--").split("=", 1) for a in argv if a.startswith("--"))
    x = float(args.get("x", 0.5))
    steps = int(args.get("steps", 8))
    sleep = float(args.get("sleep", 0.0))
    hold_when_bad = float(args.get("hold_when_bad", 0.0))
    if args.get("fail", "False").lower() == "true":
        print("failing on purpose", file=sys.stderr)
        return 3
    run_dir = Path(os.environ["TLDRLAB_RUN_DIR"])
    for step in range(1, steps + 1):
        if sleep:
            time.sleep(sleep)
        print("some ordinary output line", flush=True)
        print(json.dumps({"step": step * 10, "loss": (x - 0.7) ** 2 + 1.0 / step}), flush=True)
        (run_dir / "evals.txt").write_text(str(step))
        if hold_when_bad and step >= 2 and step < steps and (x - 0.7) ** 2 > 0.1:
            time.sleep(hold_when_bad)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
