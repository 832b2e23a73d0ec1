"""Run archives and the sha256-addressed file store: real runs, real tar files, a real server."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import httpx
import pytest

from netutil import serve_app
from tldrlab.config import get_settings
from tldrlab.errors import ConflictError, InvalidInputError, NotFoundError
from tldrlab.launch import launch_run
from tldrlab.runs import RunRecord, open_registry
from tldrlab.runs.archive import (
    INDEX,
    LIFECYCLE_FIELDS,
    directory_index,
    export_run,
    import_run,
    read_index,
    restore_run,
    upload_run,
)
from tldrlab.runs.filestore import DirectoryFileStore, HttpFileStore, StoredFile, open_file_store


def _smoke(steps: int = 6) -> RunRecord:
    launched = launch_run("smoke", {"steps": steps, "checkpoint_every": 2})
    run_dir = Path(launched.record.run_dir)
    # a symbolic link and an empty directory, as wandb and trainers leave them
    (run_dir / "wandb").mkdir()
    (run_dir / "wandb" / "offline-run-1").mkdir()
    (run_dir / "wandb" / "offline-run-1" / "run.wandb").write_bytes(os.urandom(3000))
    (run_dir / "wandb" / "latest-run").symlink_to("offline-run-1")
    (run_dir / "empty").mkdir()
    os.chmod(run_dir / "artifacts" / "result.json", 0o600)
    return launched.record


def _row(record: RunRecord) -> dict[str, object]:
    return {k: v for k, v in record.to_dict().items() if k not in LIFECYCLE_FIELDS}


def _tree(run_dir: Path) -> dict[str, object]:
    index = directory_index(run_dir)
    return {
        "files": [
            (f["path"], f["sha256"], f["size"], f["mode"], round(f["mtime"], 3)) for f in index["files"]
        ],
        "dirs": [(d["path"], d["mode"]) for d in index["dirs"]],
        "links": index["links"],
    }


def test_export_delete_import_restores_the_run_bit_for_bit(tmp_path: Path) -> None:
    record = _smoke()
    run_dir = Path(record.run_dir)
    before, row_before = _tree(run_dir), _row(open_registry().get(record.id))
    assert any(p.startswith("checkpoints/") for p, *_ in before["files"])  # type: ignore[union-attr]

    exported = export_run(record.id, tmp_path / "out")
    assert exported.path == tmp_path / "out" / f"{record.id}.tar.gz"
    assert exported.sha256 == hashlib.sha256(exported.path.read_bytes()).hexdigest()
    index = read_index(exported.path)
    assert index["run"]["id"] == record.id and len(index["files"]) == exported.files
    assert all(len(f["sha256"]) == 64 for f in index["files"])
    assert ".run.lock" not in {f["path"] for f in index["files"]}

    shutil.rmtree(run_dir)
    open_registry().delete(record.id)
    imported = import_run(exported.path)
    assert imported.run_dir == str(run_dir)
    assert _tree(run_dir) == before
    assert (run_dir / "wandb" / "latest-run").is_symlink()
    assert _row(imported) == row_before
    with pytest.raises(ConflictError):  # the same run twice
        import_run(exported.path)


def test_wandbs_absolute_links_do_not_stop_an_import(tmp_path: Path) -> None:
    """wandb's offline run links its logs/debug-core.log by absolute path to a file in the wandb/cache of the
    run it started in: the run's own (kept, made relative) or, for a final evaluation, its training run's
    (left out: it leads out of the run). Every default training run's archive was refused on import ("leaves
    the run")."""
    record = _smoke()
    run_dir = Path(record.run_dir)
    (run_dir / "wandb" / "cache").mkdir()
    (run_dir / "wandb" / "cache" / "core-debug.log").write_text("core log\n", encoding="utf-8")
    (run_dir / "wandb" / "offline-run-1" / "logs").mkdir()
    link = run_dir / "wandb" / "offline-run-1" / "logs" / "debug-core.log"
    link.symlink_to(run_dir / "wandb" / "cache" / "core-debug.log")
    (tmp_path / "elsewhere.log").write_text("another run's log\n", encoding="utf-8")
    outside = run_dir / "wandb" / "offline-run-1" / "logs" / "debug-other.log"
    outside.symlink_to(tmp_path / "elsewhere.log")
    (run_dir / "wandb" / "up").symlink_to("../../outside")

    exported = export_run(record.id, tmp_path / "out")
    shutil.rmtree(run_dir)
    open_registry().delete(record.id)
    import_run(exported.path)
    assert link.is_symlink() and os.readlink(link) == "../../cache/core-debug.log"
    assert link.read_text(encoding="utf-8") == "core log\n"
    assert not outside.is_symlink() and not (run_dir / "wandb" / "up").is_symlink()
    assert (run_dir / "wandb" / "latest-run").is_symlink()


def _rewrite(
    archive: Path, out: Path, change: dict[str, bytes | None], add: dict[str, bytes] | None = None
) -> Path:
    """A copy of `archive` with members replaced (bytes) or dropped (None), and `add`'s files appended."""
    with tarfile.open(archive, "r:gz") as src, tarfile.open(out, "w:gz") as dst:
        for member in src:
            data = src.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if member.name in change:
                data = change[member.name]
                if data is None:
                    continue
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
        for name, data in (add or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            dst.addfile(info, io.BytesIO(data))
    return out


def test_damaged_or_hostile_archives_leave_nothing_behind(tmp_path: Path) -> None:
    record = _smoke(4)
    exported = export_run(record.id, tmp_path / "good.tar.gz")
    shutil.rmtree(record.run_dir)
    open_registry().delete(record.id)
    runs_dir = get_settings().runs_dir
    metrics_member = "run/metrics.jsonl"

    flipped = _rewrite(exported.path, tmp_path / "flipped.tar.gz", {metrics_member: b'{"step": 1}\n'})
    with pytest.raises(InvalidInputError, match="sha256"):
        import_run(flipped)
    # one byte changed, the size kept: only the sha256 can tell
    with tarfile.open(exported.path, "r:gz") as tar:
        metrics = bytearray(tar.extractfile(metrics_member).read())  # type: ignore[union-attr]
    metrics[len(metrics) // 2] ^= 0x01
    same_size = _rewrite(exported.path, tmp_path / "same_size.tar.gz", {metrics_member: bytes(metrics)})
    with pytest.raises(InvalidInputError, match="sha256"):
        import_run(same_size)
    # a file the index does not list (planted after export) is refused, not restored into the run
    extra = _rewrite(exported.path, tmp_path / "extra.tar.gz", {}, add={"run/planted.txt": b"x"})
    with pytest.raises(InvalidInputError, match="does not list"):
        import_run(extra)
    dropped = _rewrite(exported.path, tmp_path / "dropped.tar.gz", {metrics_member: None})
    with pytest.raises(InvalidInputError, match="lacks"):
        import_run(dropped)
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(exported.path.read_bytes()[: exported.size // 2])
    with pytest.raises(InvalidInputError):
        import_run(truncated)

    index = read_index(exported.path)
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        body = json.dumps(
            {**index, "files": [{"path": "../../escape", "size": 1, "sha256": "0" * 64}]}
        ).encode()
        info = tarfile.TarInfo(INDEX)
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
        info = tarfile.TarInfo("run/../../escape")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(InvalidInputError, match="refused"):
        import_run(evil)
    # links that each stay inside, chained to lead out: x/y -> .. (the run), z -> x/y/.. (above the run)
    chained = tmp_path / "chained.tar.gz"
    payload = b"x"
    sha = hashlib.sha256(payload).hexdigest()
    with tarfile.open(chained, "w:gz") as tar:
        body = json.dumps(
            {
                **index,
                "dirs": [{"path": "x", "mode": 0o755}],
                "links": [{"path": "x/y", "target": ".."}, {"path": "z", "target": "x/y/.."}],
                "files": [{"path": "z/escaped.txt", "size": 1, "sha256": sha, "mode": 0o644, "mtime": 1.0}],
            }
        ).encode()
        info = tarfile.TarInfo(INDEX)
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
        info = tarfile.TarInfo("run/x")
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        for name, target in (("run/x/y", ".."), ("run/z", "x/y/..")):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
        info = tarfile.TarInfo("run/z/escaped.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(InvalidInputError, match=r"outside the run|leads out"):
        import_run(chained)
    assert not (runs_dir / "escaped.txt").exists() and not (runs_dir.parent / "escaped.txt").exists()
    not_archive = tmp_path / "plain.tar.gz"
    with tarfile.open(not_archive, "w:gz") as tar:
        tar.add(__file__, arcname="x.py")
    with pytest.raises(InvalidInputError, match="not a tldrlab run archive"):
        import_run(not_archive)

    assert not (tmp_path.parent / "escape").exists()
    assert sorted(p.name for p in runs_dir.iterdir() if not p.name.startswith(".locks")) == []
    with pytest.raises(NotFoundError):
        open_registry().get(record.id)
    assert import_run(exported.path).id == record.id  # the good archive still imports


def test_directory_store_is_content_addressed_and_checks_what_it_returns(tmp_path: Path) -> None:
    store = open_file_store()
    assert isinstance(store, DirectoryFileStore) and store.root == get_settings().home / "files"
    source = tmp_path / "blob.bin"
    source.write_bytes(os.urandom(5000))
    stored = store.put(source)
    assert stored.sha256 == hashlib.sha256(source.read_bytes()).hexdigest() and stored.size == 5000
    assert store.put(source) == stored and [f.sha256 for f in store.files()] == [stored.sha256]
    assert store.verify(stored.sha256) and store.size(stored.sha256) == 5000
    assert store.fetch(stored.sha256, tmp_path / "copy").read_bytes() == source.read_bytes()
    store.path_for(stored.sha256).write_bytes(b"rotten")
    assert not store.verify(stored.sha256)
    with pytest.raises(InvalidInputError, match="corrupt"):
        store.fetch(stored.sha256, tmp_path / "copy2")
    assert not (tmp_path / "copy2").exists()
    assert store.put(source) == stored and store.verify(stored.sha256)  # storing the bytes again heals it
    # also when the stored copy rotted without changing size (one flipped byte)
    rotten = bytearray(source.read_bytes())
    rotten[2500] ^= 0x01
    store.path_for(stored.sha256).write_bytes(bytes(rotten))
    assert not store.verify(stored.sha256)
    assert store.put(source) == stored and store.verify(stored.sha256)
    with pytest.raises(NotFoundError):
        store.fetch("a" * 64, tmp_path / "x")
    with pytest.raises(InvalidInputError):
        store.size("../../etc/passwd")


class LosingStore(DirectoryFileStore):
    """A real directory store whose disk loses what it was given right after acknowledging it (a failing
    disk, a remote store that answers before it has the bytes)."""

    def put(self, path: Path) -> StoredFile:
        stored = super().put(path)
        self.path_for(stored.sha256).write_bytes(b"lost")
        return stored


def test_an_upload_the_store_did_not_keep_intact_is_not_recorded(tmp_path: Path) -> None:
    record = _smoke(2)
    with pytest.raises(ConflictError, match="intact"):
        upload_run(record.id, store=LosingStore(tmp_path / "store"))
    after = open_registry().get(record.id)
    assert after.archive_sha256 is None and after.archived_at is None  # so retention never cleans it
    assert Path(after.run_dir).is_dir()


def test_files_api_streams_ranges_limits_and_serves_other_machines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tldrlab.service.app import create_app

    key = "kX9vQ2mZ7pL4tR8wB3nC6yD1"
    monkeypatch.setenv("TLDRLAB_API_KEY", key)
    monkeypatch.setenv("TLDRLAB_MAX_FILE_BYTES", "200000")
    get_settings.cache_clear()
    server_settings = get_settings()
    blob = os.urandom(100_000)
    sha = hashlib.sha256(blob).hexdigest()
    with serve_app(create_app(server_settings)) as url:
        auth = {"X-Api-Key": key}
        assert httpx.post(f"{url}/files", content=blob).status_code == 401
        assert httpx.get(f"{url}/files/{sha}").status_code == 401

        def chunks() -> object:
            for i in range(0, len(blob), 7000):
                yield blob[i : i + 7000]

        answer = httpx.post(f"{url}/files", content=chunks(), headers=auth, params={"sha256": sha})
        assert answer.status_code == 201, answer.text
        assert answer.json() == {"sha256": sha, "size_bytes": 100_000, "created": True}
        again = httpx.post(f"{url}/files", content=blob, headers=auth)
        assert again.json()["created"] is False
        wrong = httpx.post(f"{url}/files", content=blob[:-1], headers=auth, params={"sha256": sha})
        assert wrong.status_code == 400 and wrong.json()["code"] == "invalid_input"
        big = httpx.post(f"{url}/files", content=os.urandom(250_000), headers=auth)
        assert big.status_code == 413 and big.json()["code"] == "payload_too_large"
        incoming = server_settings.files_dir / ".incoming"
        assert not any(incoming.iterdir())
        assert len(list(server_settings.files_dir.glob("??/*"))) == 1

        whole = httpx.get(f"{url}/files/{sha}", headers=auth)
        assert whole.status_code == 200 and whole.content == blob
        part = httpx.get(f"{url}/files/{sha}", headers={**auth, "Range": "bytes=1000-1999"})
        assert part.status_code == 206 and part.content == blob[1000:2000]
        assert part.headers["content-range"] == "bytes 1000-1999/100000"
        # a range past the end or a malformed one: the API's JSON errors, not FileResponse's plain text
        past = httpx.get(f"{url}/files/{sha}", headers={**auth, "Range": "bytes=200000-200999"})
        assert past.status_code == 416 and past.headers["content-range"] == "bytes */100000"
        assert past.json()["code"] == "range_not_satisfiable" and "100000 bytes" in past.json()["message"]
        assert past.json()["request_id"] == past.headers["x-request-id"]
        for malformed in ("bytes=abc", "items=0-9", "bytes=50-10"):
            refused = httpx.get(f"{url}/files/{sha}", headers={**auth, "Range": malformed})
            assert refused.status_code == 400, malformed
            assert refused.json()["code"] == "invalid_input" and malformed in refused.json()["message"]
            assert refused.json()["request_id"]
        head = httpx.head(f"{url}/files/{sha}", headers=auth)
        assert head.status_code == 200 and head.headers["content-length"] == "100000"
        assert httpx.get(f"{url}/files/{'b' * 64}", headers=auth).status_code == 404
        bad = httpx.get(f"{url}/files/..%2F..%2Fetc", headers=auth)
        assert bad.status_code in (400, 404) and "code" in bad.json()

        # a second machine: its own home, the server's store over HTTP
        record = _smoke(4)
        remote = HttpFileStore(url, key)
        stored = upload_run(record, store=remote)
        assert remote.size(stored.sha256) == stored.size
        assert (server_settings.files_dir / stored.sha256[:2] / stored.sha256).is_file()
        uploaded = open_registry().get(record.id)
        assert uploaded.archive_sha256 == stored.sha256 and uploaded.archived_at is not None
        manifest = json.loads((Path(record.run_dir) / "manifest.json").read_text())
        assert manifest["archive"]["sha256"] == stored.sha256
        before = _tree(Path(record.run_dir))
        shutil.rmtree(record.run_dir)
        open_registry().update(record.id, cleaned_at=1.0)
        restored = restore_run(record.id, store=remote)
        assert restored.cleaned_at is None and _tree(Path(record.run_dir)) == before
        # the server's copy rots (same size): the client hashes what it downloads and keeps none of it
        stored_path = server_settings.files_dir / stored.sha256[:2] / stored.sha256
        rotten = bytearray(stored_path.read_bytes())
        rotten[len(rotten) // 2] ^= 0x01
        assert remote.verify(stored.sha256)
        stored_path.write_bytes(bytes(rotten))
        with pytest.raises(InvalidInputError, match="corrupt"):
            remote.fetch(stored.sha256, tmp_path / "fetched.tar.gz")
        assert not list(tmp_path.glob("*fetched*"))
        # ...and verify, which retention trusts before cleaning a run directory, reads it back and says so
        assert not remote.verify(stored.sha256) and not remote.verify("c" * 64)


def test_a_runs_evaluations_travel_with_it_checked_and_under_their_ids(tmp_path: Path) -> None:
    """`export_run(..., with_evaluations=...)` packs the run's evaluations, each an archive of its own, and
    import restores their rows with it; an id held here by another run, a damaged evaluation archive or an
    unfinished evaluation stops it before anything is written."""
    from tldrlab.kinds import kind_names_by_recorded_name
    from tldrlab.runs import create_run, start_run
    from tldrlab.runs.retention import delete_run

    names = kind_names_by_recorded_name()
    with start_run("train", {}) as trained:
        pass
    with start_run("eval", {}, parent_id=trained.id) as evaluation:  # recorded under the kind's old name
        pass
    queued = create_run("evaluate", {}, parent_id=trained.id)
    with pytest.raises(ConflictError, match=f"evaluate run {queued.id} is queued"):
        export_run(trained.id, tmp_path, with_evaluations=names)
    open_registry().update(queued.id, status="cancelled")
    children = sorted([evaluation.id, queued.id])
    alone = read_index(export_run(trained.id, tmp_path / "alone.tar.gz").path)  # what an upload packs
    assert alone["version"] == 1 and "evaluations" not in alone
    exported = export_run(trained.id, tmp_path / "whole.tar.gz", with_evaluations=names)
    assert sorted(exported.evaluations) == children and read_index(exported.path)["version"] == 2
    rows = {r.id: _row(r) for r in open_registry().list(limit=None)}
    delete_run(trained.id, kind_names=names)
    assert open_registry().list(limit=None) == []

    def nothing_here() -> bool:
        return not open_registry().list(limit=None) and not any(get_settings().runs_dir.glob("*-*"))

    with start_run("train", {}, run_id=evaluation.id):  # another run holds an evaluation's id
        pass
    with pytest.raises(ConflictError, match=f"run {evaluation.id}, an evaluation of {trained.id} in the"):
        import_run(exported.path)
    assert [r.id for r in open_registry().list(limit=None)] == [evaluation.id]
    delete_run(evaluation.id, kind_names=names)
    member = f"evaluations/{queued.id}.tar.gz"
    damaged = _rewrite(exported.path, tmp_path / "damaged.tar.gz", {member: b"not the archive"})
    with pytest.raises(
        InvalidInputError, match=f"{member} in the archive does not match its recorded sha256"
    ):
        import_run(damaged)
    assert nothing_here()

    assert import_run(exported.path).id == trained.id
    assert {r.id: _row(r) for r in open_registry().list(limit=None)} == rows
    assert sorted(r.id for r in open_registry().list(parent_id=trained.id)) == children


def _cleaned_run_with_an_evaluation(tmp_path: Path) -> tuple[RunRecord, RunRecord, Path]:
    """A train run with one evaluation, exported with it (archive version 2), then uploaded and cleaned by
    retention (row kept, directory gone), its evaluation deleted: (the cleaned run, the evaluation, the
    archive)."""
    from tldrlab.kinds import kind_names_by_recorded_name
    from tldrlab.runs import start_run
    from tldrlab.runs.retention import remove_run

    registry = open_registry()
    with start_run("train", {}) as trained:
        (trained.dir / "model").mkdir()
        (trained.dir / "model" / "config.json").write_text("{}")
    with start_run("evaluate", {"model_run": trained.id}, parent_id=trained.id) as evaluation:
        (evaluation.artifacts_dir / "result.json").write_text(json.dumps({"metrics": {"loss": 1.0}}))
    exported = export_run(
        trained.id, tmp_path / "whole.tar.gz", with_evaluations=kind_names_by_recorded_name()
    )
    assert exported.evaluations == (evaluation.id,)
    upload_run(trained.id)  # as a worker with upload_runs does, then retention cleans the run's directory
    remove_run(registry.get(trained.id), registry, keep_row=True)
    cleaned = registry.get(trained.id)
    assert cleaned.cleaned_at is not None and not Path(cleaned.run_dir).exists()
    gone = registry.get(evaluation.id)
    remove_run(gone, registry, keep_row=False)
    return cleaned, gone, exported.path


def test_a_directory_no_run_records_stops_an_import_before_anything_is_written(tmp_path: Path) -> None:
    """An evaluation's id naming a directory already in the runs directory with no registry row (put there
    by hand or copied from another machine) passed the import's checks, which read the registry only: the
    run was restored and extracted, the evaluation's placement failed, both were taken back, and the error
    said only "<id> already exists in the runs directory". It is refused before anything is written, saying
    nothing was imported and what to move; so is such a directory where the run itself goes."""
    cleaned, evaluation, archive = _cleaned_run_with_an_evaluation(tmp_path)
    registry = open_registry()
    stray = Path(evaluation.run_dir)
    stray.mkdir()
    (stray / "notes.txt").write_text("not the evaluation")

    with pytest.raises(ConflictError) as refused:
        import_run(archive)
    assert refused.value.message == (
        f"{archive}: nothing imported: {stray} is already in the runs directory but no run here records it "
        f"(the archive's evaluation {evaluation.id} of run {cleaned.id} goes there): move it away, then "
        "import again"
    )
    assert registry.get(cleaned.id) == cleaned and not Path(cleaned.run_dir).exists()
    assert [r.id for r in registry.list(limit=None)] == [cleaned.id]
    assert (stray / "notes.txt").read_text() == "not the evaluation"  # not the import's to remove
    assert not any((get_settings().home / "tmp").iterdir())

    registry.delete(cleaned.id)  # the run itself new here, its place taken by a directory no run records
    Path(cleaned.run_dir).mkdir()
    with pytest.raises(ConflictError) as refused:
        import_run(archive)
    assert f"nothing imported: {cleaned.run_dir} is " in refused.value.message
    assert f"(the archive's run {cleaned.id} goes there)" in refused.value.message
    assert registry.list(limit=None) == [] and not any(Path(cleaned.run_dir).iterdir())

    Path(cleaned.run_dir).rmdir()
    shutil.rmtree(stray)  # once the directories are out of the way, the same archive imports whole
    assert import_run(archive).id == cleaned.id
    assert [r.id for r in registry.list(parent_id=cleaned.id)] == [evaluation.id]


def test_a_failed_evaluation_import_takes_back_the_cleaned_runs_restored_directory(tmp_path: Path) -> None:
    """A version-2 import into a run whose directory retention cleaned (uploaded, row kept) restores that
    directory first; when one of its evaluations then cannot be placed, the restored directory stayed and
    the row read as not cleaned. Here the evaluation's own archive matches the sha256 the outer index
    records, but a file inside it does not match its own index: only its placement finds that."""
    cleaned, evaluation, archive = _cleaned_run_with_an_evaluation(tmp_path)
    registry = open_registry()
    member = f"evaluations/{evaluation.id}.tar.gz"
    with tarfile.open(archive, "r:gz") as tar:
        inner = tmp_path / "inner.tar.gz"
        inner.write_bytes(tar.extractfile(member).read())  # type: ignore[union-attr]
        index = json.loads(tar.extractfile(INDEX).read())  # type: ignore[union-attr]
    damaged = _rewrite(inner, tmp_path / "damaged-inner.tar.gz", {"run/artifacts/result.json": b"{}"})
    data = damaged.read_bytes()
    (entry,) = index["evaluations"]
    entry.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    crafted = _rewrite(
        archive, tmp_path / "crafted.tar.gz", {INDEX: json.dumps(index).encode(), member: data}
    )

    with pytest.raises(InvalidInputError, match=r"artifacts/result\.json in the archive does not match"):
        import_run(crafted)
    after = registry.get(cleaned.id)
    assert not Path(after.run_dir).exists(), "the run's restored directory was left behind"
    assert (after.cleaned_at, after.cleanup_marked_at) == (cleaned.cleaned_at, cleaned.cleanup_marked_at)
    assert [r.id for r in registry.list(limit=None)] == [cleaned.id]
    assert not Path(evaluation.run_dir).exists()

    assert import_run(archive).id == cleaned.id  # the undamaged archive imports whole
    assert registry.get(cleaned.id).cleaned_at is None and Path(after.run_dir).is_dir()
    assert [r.id for r in registry.list(parent_id=cleaned.id)] == [evaluation.id]
