"""The bench scripts as `make bench` and a checkout without ../shared/data meet them: one-line errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_benches_name_missing_shared_data_in_one_line(tmp_path: Path) -> None:
    # a checkout without ../shared/data got a FileNotFoundError / NotFoundError traceback from deep inside a
    # reader (and `make bench` showed only its last line, e.g. "exit 1: FileNotFoundError: [Errno 2] ...")
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO / "bench", checkout / "bench")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    wanted = {
        "tokenizer": "tinyshakespeare/input.txt",
        "threads": "tinyshakespeare/input.txt",
        "embed": "stackexchange_beer/Posts.xml",
        "digest_quality": "scitldr/scitldr_a.dev.jsonl",
    }
    for bench, missing in wanted.items():
        done = subprocess.run(
            [sys.executable, str(checkout / "bench" / f"{bench}.py"), "--quick"],
            capture_output=True,
            text=True,
            env=env,
            cwd=checkout,
            timeout=120,
        )
        assert done.returncode == 1, (bench, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr, (bench, done.stderr)
        assert lines[0].startswith(f"{bench}.py: missing {tmp_path / 'shared' / 'data' / missing}"), lines
        assert "../shared/data" in lines[0]
    # the documented command of a bench that takes its data set as an argument
    documented = ["--data", "../shared/data/debian_descriptions", "--split", "validation"]
    done = subprocess.run(
        [sys.executable, str(checkout / "bench" / "summary_baselines.py"), *documented],
        capture_output=True,
        text=True,
        env=env,
        cwd=checkout,
        timeout=120,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("summary_baselines.py: missing ../shared/data/debian_descriptions: ")


def test_make_bench_refuses_an_unknown_bench_name() -> None:
    # `bench/run_all.py --only tokenzier` (a typo) ran nothing, printed an empty table and exited 0
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run_all.py"), "--only", "tokenzier", "train"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout
    assert "no bench named tokenzier; the benches: digest_citations, " in done.stderr, done.stderr


def test_a_full_bench_run_lists_the_benches_without_a_headline_instead_of_failing_them() -> None:
    # `run_all.py --full` ran the benches without a quick mode too: plot_finetune_curves (which needs --out
    # and runs) exited 2 and summary_baselines (--data) likewise, so a full run always ended FAILED
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run_all.py"), "--full", "--only", "plot_finetune_curves"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (row,) = [line for line in done.stdout.splitlines() if line.startswith("plot_finetune_curves")]
    assert row.split(None, 1)[1].strip() == "(no quick mode: not run; see its docstring)", done.stdout


def test_the_lvm_bench_names_a_missing_sequences_file_in_one_line(tmp_path: Path) -> None:
    # `bench/lvm_baseline_mix.py` before `tldrlab lvm sequences` (or with a mistyped path) printed
    # load_sequences' NotFoundError as a traceback
    missing = tmp_path / "sequences.npz"
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "lvm_baseline_mix.py"), str(missing)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"},
        timeout=120,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip() == (
        f"lvm_baseline_mix.py: no sequences file {missing}: run `tldrlab lvm sequences` first"
    )


def test_the_lvm_bench_measures_validation_unless_told_and_names_the_flag_without_it(tmp_path: Path) -> None:
    # it scored the test split by default; sequences built with `--val 0` now get one line naming --split
    import numpy as np

    from tldrlab.lvm.sequences import build_sequences
    from tldrlab.lvm.store import ConceptTable

    rng = np.random.default_rng(0)
    articles, length = 10, 6 + np.arange(10)  # articles of 6 to 15 concepts
    table = ConceptTable(
        ids=np.arange(1, int(length.sum()) + 1),
        article_keys=[f"demo/a{a}" for a in range(articles) for _ in range(length[a])],
        positions=np.concatenate([np.arange(n) for n in length]),
        vectors=rng.normal(size=(int(length.sum()), 8)).astype(np.float32),
        embedder="random",
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}

    def bench(sequences: Path, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, str(REPO / "bench" / "lvm_baseline_mix.py"), str(sequences), *args]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)

    split = build_sequences(table, context=3, val_fraction=0.2, test_fraction=0.2)
    done = bench(split.save(tmp_path / "split.npz"))
    val = len(split.split_arrays("val"))
    assert done.returncode == 0 and done.stdout.startswith(
        f"{tmp_path / 'split.npz'} (val: {val} windows)"
    ), done
    no_val = build_sequences(table, context=3, val_fraction=0.0, test_fraction=0.2)
    done = bench(no_val.save(tmp_path / "no-val.npz"))
    assert done.returncode == 1 and "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1, (
        done
    )
    assert "the val split of" in done.stderr and "--split test" in done.stderr, done.stderr
    done = bench(tmp_path / "no-val.npz", "--split", "test")
    assert done.returncode == 0 and "(test: " in done.stdout, done
