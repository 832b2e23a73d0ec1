"""`make bench`: every benchmark in bench/ in its quick mode, then one table of their headline figures.

    .venv/bin/python bench/run_all.py [--only train tokenizer ...] [--timeout 900] [--full]

Each bench script with a `--quick` mode (bench/headline.py) runs in its own process, one after the other, and
prints `headline: NAME = VALUE (target TARGET)` lines; this collects them into one table, with the wall time
of each bench and what failed. Quick figures are noisier than the full runs quoted in the docs (`--full`
runs the benches as the docs do, for much longer). A bench without a quick mode prints no headline and mostly
needs arguments of its own (its docstring gives the commands): it is listed, not run, with or without --full.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

from headline import PREFIX

BENCH = Path(__file__).resolve().parent
LINE = re.compile(rf"^{re.escape(PREFIX)}(?P<name>.+?) = (?P<value>\S+) \(target (?P<target>.*)\)$")


def benches() -> dict[str, bool]:
    """Bench name -> whether it has a quick mode."""
    found = {}
    for path in sorted(BENCH.glob("*.py")):
        if path.stem not in ("run_all", "headline"):
            found[path.stem] = "add_quick(" in path.read_text(encoding="utf-8")
    return found


def run(name: str, full: bool, timeout: float) -> tuple[list[tuple[str, str, str]], str, float]:
    """(headlines, problem or "", seconds) of one bench."""
    started = time.perf_counter()
    command = [sys.executable, str(BENCH / f"{name}.py"), *([] if full else ["--quick"])]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return [], f"timed out after {timeout:.0f} s", time.perf_counter() - started
    seconds = time.perf_counter() - started
    sys.stdout.write(done.stdout)
    found = [(m["name"], m["value"], m["target"]) for m in map(LINE.match, done.stdout.splitlines()) if m]
    problem = ""
    if done.returncode != 0:
        problem = f"exit {done.returncode}: " + (done.stderr.strip().splitlines() or ["?"])[-1]
    elif not found:
        problem = "printed no headline"
    return found, problem, seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="+", help="these benches only")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per bench")
    parser.add_argument("--full", action="store_true", help="full runs, as the docs quote them (slow)")
    args = parser.parse_args()
    found = benches()
    if unknown := sorted(set(args.only or ()) - set(found)):  # a typo ran nothing and exited 0
        parser.error(f"no bench named {', '.join(unknown)}; the benches: {', '.join(found)}")
    rows: list[tuple[str, str, str, str]] = []
    problems = 0
    for name, quick in found.items():
        if args.only and name not in args.only:
            continue
        if not quick:  # no headline to collect, and most need arguments of their own (see its docstring)
            rows.append((name, "(no quick mode: not run; see its docstring)", "", ""))
            continue
        print(f"\n=== {name}", flush=True)
        found, problem, seconds = run(name, args.full, args.timeout)
        rows += [(name, headline, value, target) for headline, value, target in found]
        if problem:
            problems += 1
            rows.append((name, f"FAILED ({problem})", "", ""))
        print(f"=== {name}: {seconds:.0f} s", flush=True)
    width = max((len(r[1]) for r in rows), default=10)
    print(f"\n{'bench':<16} {'headline':<{width}} {'value':>9}  target")
    for bench, headline, value, target in rows:
        print(f"{bench:<16} {headline:<{width}} {value:>9}  {target}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
