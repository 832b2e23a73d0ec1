"""A bad file given to an LVM kind is refused in one line naming the file and what is wrong with it, never a
traceback or a 500 (`tldrlab.lvm.npz.read_npz`, the one reader of the NPZ files the kinds are given).

An empty `sequences.npz` given to `lvm_evaluate` or `lvm_generate` was a 500 over the API and a traceback on
the command line (numpy's EOFError); a truncated one a zipfile.BadZipFile; text a ValueError about pickles;
an index's vectors.npz, or sequences whose arrays have another shape or dtype, were accepted at submit and
broke the run with a KeyError, an AxisError or a ValueError. `lvm_train` checked only that the file existed.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from cliutil import run_captured
from sequencesutil import npz_bytes, sequences_arrays
from tldrlab.runs import open_registry
from tldrlab.service.app import create_app


def damaged() -> bytes:
    """A sequences NPZ whose vectors' last byte was changed after it was written (its CRC no longer matches):
    every header reads (the first 4 KiB of a member), the whole of the vectors does not."""
    vectors = np.eye(4, 2048, dtype=np.float32)
    data = npz_bytes(sequences_arrays(vectors=vectors))
    end = data.index(vectors.tobytes()) + vectors.nbytes
    return data[: end - 1] + b"\x7f" + data[end:]


BAD_SEQUENCES: dict[str, tuple[Callable[[Path], None], str]] = {
    "empty": (lambda p: p.write_bytes(b""), "is empty"),
    "truncated": (
        lambda p: p.write_bytes(npz_bytes(sequences_arrays())[:600]),
        "not an NPZ archive (cut short, or a file of another format)",
    ),
    "text": (lambda p: p.write_text("context,target\n1,2\n"), "not an NPZ archive"),
    "npy": (lambda p: p.write_bytes(_npy()), "not an NPZ archive"),
    "missing_split": (
        lambda p: p.write_bytes(npz_bytes(sequences_arrays(split=None))),
        "is not a sequences file: it lacks the arrays split",
    ),
    "index_vectors": (  # what `lvm index` writes beside its index, given as sequences
        lambda p: p.write_bytes(npz_bytes({"vectors": np.eye(4, dtype=np.float32), "ids": np.arange(4)})),
        "(it holds ids, vectors)",
    ),
    "context_shape": (
        lambda p: p.write_bytes(npz_bytes(sequences_arrays(context_index=np.array([0, 2])))),
        "its array context_index is (2,) int64, where a sequences file holds (n, N) integer",
    ),
    "split_length": (
        lambda p: p.write_bytes(npz_bytes(sequences_arrays(split=np.array([0, 1, 1], dtype=np.int8)))),
        "its array split is (3,) int8, where a sequences file holds (n) integer",
    ),
    "vectors_dtype": (
        lambda p: p.write_bytes(npz_bytes(sequences_arrays(vectors=np.full((4, 4), "x")))),
        "its array vectors is (4, 4) <U1, where a sequences file holds (M, d) float",
    ),
    "directory": (lambda p: p.mkdir(), "is a directory, not a sequences file"),
}


def _npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.eye(3))
    return buffer.getvalue()


@pytest.mark.parametrize("case", list(BAD_SEQUENCES))
def test_a_bad_sequences_file_is_refused_in_one_line_before_a_run_exists(
    case: str, tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write, said = BAD_SEQUENCES[case]
    data = tldrlab_home / "data"
    data.mkdir(parents=True)
    write(data / "seqs.npz")
    model = data / "model"  # located, not loaded: the sequences are refused first
    model.mkdir()
    (model / "lvm_model.json").write_text("{}")
    client = TestClient(create_app(), raise_server_exceptions=False)
    for kind, config in (
        ("lvm_evaluate", {"sequences": "seqs.npz"}),
        ("lvm_generate", {"run": "model", "sequences": "seqs.npz"}),
        ("lvm_train", {"sequences": "seqs.npz"}),
    ):
        request = {"kind": kind, "config": config}
        response = client.post("/runs", json=request, headers={"X-Request-ID": "r-1"})
        body = response.json()
        assert response.status_code == 422 and body["code"] == "invalid_config", (kind, response.text)
        assert body["request_id"] == "r-1" and said in body["message"], (kind, body)
        assert "seqs.npz" in body["message"] and str(tldrlab_home) not in body["message"]
    sequences = str(data / "seqs.npz")
    for argv in (
        ["lvm", "evaluate", "--sequences", sequences],
        ["lvm", "generate", str(model), "--measure", "2", "--sequences", sequences],
        ["lvm", "train", "--sequences", sequences, "--steps", "1"],
    ):
        code, _, err = run_captured(argv, capsys)
        assert code == 2 and "Traceback" not in err, (argv, err)
        assert err.strip().count("\n") == 0 and said in err and sequences in err, (argv, err)
    assert open_registry().list() == []  # nothing was created, nothing stored changed


FOUND_IN_THE_RUN: dict[str, tuple[Callable[[], bytes], str]] = {
    "damaged": (damaged, "is not a readable sequences file: a damaged NPZ"),
    "index_out_of_range": (
        lambda: npz_bytes(sequences_arrays(target_index=np.array([1, 9]))),
        "target_index holds values outside 0..3",
    ),
}


@pytest.mark.parametrize("case", list(FOUND_IN_THE_RUN))
def test_a_sequences_file_found_bad_in_the_run_fails_it_in_one_line(
    case: str, tldrlab_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What only reading all of the file finds (the submit reads the headers and the split codes) fails the
    run with the same kind of message, not with a traceback."""
    sequences = tldrlab_home / "seqs.npz"
    sequences.parent.mkdir(parents=True)
    contents, said = FOUND_IN_THE_RUN[case]
    sequences.write_bytes(contents())
    code, _, err = run_captured(["lvm", "evaluate", "--sequences", str(sequences)], capsys)
    assert code == 2 and "Traceback" not in err and said in err and str(sequences) in err, err
    (run,) = open_registry().list()
    assert run.status == "failed" and run.message is not None and said in run.message, run
    assert run.error_code == "invalid_input" and "\n" not in run.message


def test_a_bad_concept_index_or_model_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], tldrlab_home: Path
) -> None:
    """`lvm generate --index DIR` read the index with FAISS and numpy unguarded, and a model directory's
    lvm_model.json with json and a KeyError."""
    from tldrlab.lvm.index import build_index
    from tldrlab.lvm.models import LVMConfig, build_lvm, save_lvm

    model = save_lvm(build_lvm("gru", LVMConfig(dim=4, hidden=4, context=2)), tmp_path / "model")
    good = tmp_path / "good"
    build_index(np.eye(4, dtype=np.float32), np.arange(4)).save(good)

    def index_with(name: str, write: Callable[[Path], None]) -> Path:
        directory = tmp_path / f"index-{name}"
        directory.mkdir()
        for part in good.iterdir():
            (directory / part.name).write_bytes(part.read_bytes())
        write(directory)
        return directory

    file_index = tmp_path / "index-file"
    file_index.write_text("not a directory")
    cases = [
        (file_index, "is a file, not a concept index directory"),
        (index_with("meta", lambda d: (d / "index.json").write_text("{")), "not a concept index's"),
        (index_with("kind", lambda d: (d / "index.json").write_text('{"kind": "hnsw"}')), "kind 'hnsw'"),
        (index_with("vectors", lambda d: (d / "vectors.npz").write_bytes(b"")), "vectors file"),
        (
            index_with("sequences", lambda d: (d / "vectors.npz").write_bytes(npz_bytes(sequences_arrays()))),
            "lacks the arrays ids",
        ),
        (index_with("faiss", lambda d: (d / "index.faiss").write_text("hello")), "is not a FAISS index"),
    ]
    for index, said in cases:
        argv = ["lvm", "generate", str(model), "--text", "One sentence.", "--index", str(index)]
        code, _, err = run_captured(argv, capsys)
        assert code == 2 and "Traceback" not in err and said in err and str(index) in err, (index, err)
        assert err.strip().count("\n") == 0, err
    for broken, said in (("{", "Expecting property name"), ('{"config": {}}', "no 'name' field")):
        (model / "lvm_model.json").write_text(broken)
        argv = ["lvm", "generate", str(model), "--text", "One sentence.", "--index", str(good)]
        code, _, err = run_captured(argv, capsys)
        assert code == 8 and "checkpoint_corrupt" in err and "Traceback" not in err, err
        assert f"{model / 'lvm_model.json'} is not a saved LVM's lvm_model.json: {said}" in err, err
        assert err.strip().count("\n") == 0, err
