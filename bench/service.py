"""Trainer service benchmark: queue latency (POST -> running) and GET /runs/{id} throughput.

    .venv/bin/python bench/service.py [--runs 20] [--seconds 5] [--clients 8] [--out PNG]

Starts real processes in a temporary home: the API (`tldrlab serve --workers 0`), one `tldrlab worker`, and
for the Redis queue a private `redis-server`. For each queue it submits `--runs` tiny smoke runs one at a
time (POST /runs: the same `submit_run` path as POST /runs/train) and measures the time from sending the
POST to the run's `started_at` (set when a worker starts executing it). Then 8 client threads hammer
GET /runs/{id} for `--seconds`; the baseline, measured the same way in the same process, is GET /healthz
(no database). Ratios: rq latency / sqlite latency, and runs-RPS / healthz-RPS.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the loopback helpers of the tests
from headline import add_quick, headline, scratch_png
from netutil import free_port, start_redis, wait_for_port


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def queue_latency(base: str, runs: int) -> list[float]:
    latencies = []
    pauses = random.Random(0)
    with httpx.Client(base_url=base, timeout=30) as client:
        for _ in range(runs):
            time.sleep(pauses.uniform(0, 0.5))  # submit at a random phase of the worker's idle polling
            sent = time.time()
            run = client.post("/runs", json={"kind": "smoke", "config": {"steps": 1}}).json()
            while True:
                detail = client.get(f"/runs/{run['id']}").json()
                if detail["started_at"]:
                    latencies.append(detail["started_at"] - sent)
                    break
                time.sleep(0.005)
            while client.get(f"/runs/{run['id']}").json()["status"] not in ("completed", "failed"):
                time.sleep(0.01)  # one job at a time: the worker is idle again before the next POST
    return latencies


def throughput(url: str, clients: int, seconds: float) -> float:
    counts = [0] * clients
    stop = time.monotonic() + seconds

    def hammer(i: int) -> None:
        with httpx.Client(timeout=30) as client:
            while time.monotonic() < stop:
                assert client.get(url).status_code == 200
                counts[i] += 1

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / seconds


def measure(queue: str, args: argparse.Namespace, home: Path, redis_url: str | None) -> dict[str, Any]:
    env = {**os.environ, "TLDRLAB_HOME": str(home / queue), "WANDB_MODE": "disabled"}
    env.pop("TLDRLAB_QUEUE_URL", None)
    if redis_url:
        env["TLDRLAB_QUEUE_URL"] = redis_url
    port = free_port()
    api = subprocess.Popen(
        [sys.executable, "-m", "tldrlab", "serve", "--workers", "0", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "tldrlab", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=60)
        base = f"http://127.0.0.1:{port}"
        queue_latency(base, 2)  # warm-up: the worker imports torch on its first job
        latencies = queue_latency(base, args.runs)
        run_id = httpx.get(f"{base}/runs", params={"limit": 1}).json()["runs"][0]["id"]
        healthz = throughput(f"{base}/healthz", args.clients, args.seconds)
        runs_rps = throughput(f"{base}/runs/{run_id}", args.clients, args.seconds)
    finally:
        for proc in (worker, api):
            proc.terminate()
            proc.wait(timeout=60)
    return {
        "queue": queue,
        "latencies": latencies,
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "mean": statistics.mean(latencies),
        "healthz_rps": healthz,
        "runs_rps": runs_rps,
    }


def plot(results: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.boxplot(
        [[x * 1000 for x in r["latencies"]] for r in results], tick_labels=[r["queue"] for r in results]
    )
    left.set_ylabel("POST -> running (ms)")
    left.set_title("queue latency")
    names = [f"{r['queue']}\n{what}" for r in results for what in ("healthz", "runs/{id}")]
    values = [v for r in results for v in (r["healthz_rps"], r["runs_rps"])]
    right.bar(names, values, color=["#9ca3af", "#2563eb"] * len(results))
    right.set_ylabel("requests / s (8 clients)")
    right.set_title("API throughput")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("docs/img/service_bench.png"))
    add_quick(parser, runs=3, seconds=1.0, clients=2, out=scratch_png("service"))
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="tldrlab-bench-"))
    results = [measure("sqlite", args, home, None)]
    redis_bin = shutil.which("redis-server")
    if redis_bin:
        port = free_port()
        redis = start_redis(port, home)
        try:
            results.append(measure("rq", args, home, f"redis://127.0.0.1:{port}/0"))
        finally:
            redis.terminate()
            redis.wait(timeout=10)
    else:
        print("redis-server not found: the rq queue is not measured")
    base = results[0]
    print(
        f"{'queue':8} {'p50 ms':>8} {'p95 ms':>8} {'xp50 vs sqlite':>15} {'runs rps':>9} "
        f"{'healthz rps':>12} {'runs/healthz':>13}"
    )
    for r in results:
        print(
            f"{r['queue']:8} {r['p50'] * 1000:8.1f} {r['p95'] * 1000:8.1f} {r['p50'] / base['p50']:15.2f} "
            f"{r['runs_rps']:9.0f} {r['healthz_rps']:12.0f} {r['runs_rps'] / r['healthz_rps']:13.2f}"
        )
    for r in results:
        headline(
            f"GET /runs/{{id}} rps / GET /healthz rps ({r['queue']})", r["runs_rps"] / r["healthz_rps"], "-"
        )
        if r is not base:
            headline(f"queue latency p50 {r['queue']} / sqlite", r["p50"] / base["p50"], "-")
    plot(results, args.out)
    print(f"plot: {args.out}")
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
