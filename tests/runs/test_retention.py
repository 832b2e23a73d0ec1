"""Retention on real run directories: references protect runs, dry runs change nothing, the grace period
delays deletion, uploads make deletion a verified clean, and what a pass reports freed left the disk."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from cliutil import run_captured
from netutil import serve_app
from tldrlab.config import RetentionPolicy, get_settings
from tldrlab.errors import ConflictError, UnknownKindError
from tldrlab.kinds import kind_names_by_recorded_name
from tldrlab.launch import launch_run
from tldrlab.runs import RunRecord, create_run, open_registry, start_run
from tldrlab.runs.aliases import promote
from tldrlab.runs.cleanup_events import recent_events
from tldrlab.runs.filestore import open_file_store
from tldrlab.runs.registry import SUBMITTED_VIA
from tldrlab.runs.retention import disk_usage, prune
from tldrlab.service.app import create_app
from tldrlab.service.periodic import PeriodicCleanup
from tldrlab.service.worker import build_worker

DAY = 86400.0
KIND_NAMES = kind_names_by_recorded_name()


def _run(
    kind: str = "train",
    *,
    config: dict[str, Any] | None = None,
    age_days: float = 10.0,
    metric: float | None = None,
    parent: str | None = None,
    size: int = 20_000,
    fail: bool = False,
    model: bool = False,
) -> RecordHandle:
    try:
        with start_run(kind, config or {}, parent_id=parent) as run:
            (run.artifacts_dir / "weights.bin").write_bytes(os.urandom(size))
            if model:
                (run.dir / "model").mkdir()
                (run.dir / "model" / "config.json").write_text("{}")
            if metric is not None:
                run.set_summary(best_eval_loss=metric)
            if fail:
                raise ValueError("boom")
    except ValueError:
        pass
    ended = time.time() - age_days * DAY
    open_registry().update(run.id, ended_at=ended)
    return RecordHandle(run.id)


class RecordHandle(str):
    @property
    def record(self) -> RunRecord:
        return open_registry().get(self)

    @property
    def dir(self) -> Path:
        return Path(self.record.run_dir)


def _exists(run_id: str) -> bool:
    try:
        open_registry().get(run_id)
    except Exception:
        return False
    return True


def _footprint() -> int:
    home = get_settings().home
    return sum(disk_usage(home / sub).bytes for sub in ("runs", "cache") if (home / sub).exists())


POLICY = RetentionPolicy(
    older_than_days=1,
    keep_best=1,
    grace_period_s=60,
    tokenizers_unreferenced_days=0,
    checkpoints_keep_last=1,
    cache_max_bytes=15_000,
    cache_min_free_bytes=None,
)


def test_a_dry_run_says_it_would_mark_what_it_leaves_unmarked() -> None:
    """`runs prune --dry-run` printed `marked delete RUN due ...` for candidates it did not mark (a dry run
    marks nothing); a real pass, and a dry run after it, say `marked`."""
    _run(metric=1.0)
    worse = _run(metric=2.0)
    dry = prune(POLICY, kind_names=KIND_NAMES, dry_run=True)
    assert [d.target for d in dry.pending] == [worse] and worse.record.cleanup_marked_at is None
    lines = [line for line in dry.report().blocks if worse in str(line)]
    assert len(lines) == 1 and str(lines[0]).startswith("would mark delete") and "due" in str(lines[0])
    real = prune(POLICY, kind_names=KIND_NAMES)
    assert worse.record.cleanup_marked_at is not None
    for report in (real, prune(POLICY, kind_names=KIND_NAMES, dry_run=True)):
        assert next(str(b) for b in report.report().blocks if worse in str(b)).startswith("marked delete")


def test_prune_keeps_referenced_runs_respects_dry_run_and_grace_and_frees_what_it_reports() -> None:
    worse = _run(metric=2.0)
    best = _run(metric=1.0)
    for step in (1, 2, 3):
        (best.dir / "checkpoints").mkdir(exist_ok=True)
        (best.dir / "checkpoints" / f"step-{step}.pt").write_bytes(os.urandom(5000))
    (best.dir / "checkpoints" / "best").mkdir()
    (best.dir / "checkpoints" / "best" / "model.safetensors").write_bytes(b"w" * 100)
    parent = _run("sweep", metric=3.0)
    child = _run("train", parent=parent, age_days=0)  # a sweep's trial keeps its sweep
    evaluated = _run(metric=7.0)
    evaluation = _run("evaluate", parent=evaluated, config={"model_run": evaluated})  # keeps nothing
    aliased = _run(metric=4.0, model=True)
    promote(aliased, "production")
    named = _run(metric=5.0)
    user = _run("train", config={"model_settings": {"from_pretrained": named}}, age_days=0)
    failed = _run(fail=True)
    young = _run(metric=6.0, age_days=0.1)
    tokenizer_used = _run("tokenizer")
    _run("train", config={"tokenizer": {"path": f"{tokenizer_used.dir}/tokenizer"}}, age_days=0, metric=9)
    tokenizer_unused = _run("tokenizer")
    running = create_run("train", {}).id
    open_registry().update(running, status="running")
    cache = get_settings().home / "cache" / "embed"
    cache.mkdir(parents=True)
    for i, age in enumerate((300, 200, 100)):
        path = cache / f"vectors-{i}.npy"
        path.write_bytes(os.urandom(12_000))
        os.utime(path, (time.time() - age, time.time() - age))

    deletable = {worse, evaluated, evaluation, failed, tokenizer_unused}
    # a dry run with no grace period: what would go now, as events; nothing changes, nothing is marked
    footprint = _footprint()
    dry = prune(POLICY.model_copy(update={"grace_period_s": 0}), kind_names=KIND_NAMES, dry_run=True)
    assert {d.target for d in dry.actions if d.action == "delete"} == deletable
    assert {d.target for d in dry.actions} == deletable | {best, "cache"}
    assert all(d.status == "dry_run" for d in dry.actions)
    assert {e.type for e in recent_events()} == {"cleanup_dry_run"}
    assert _footprint() == footprint and all(_exists(r) for r in deletable)
    assert all(open_registry().get(r).cleanup_marked_at is None for r in deletable)
    kept = dry.kept
    assert kept[best].startswith("best 1 of train") and kept[parent].startswith("referenced: parent of train")
    assert "alias production" in kept[aliased] and "config of train run" in kept[named]
    assert "config of train run" in kept[tokenizer_used] and kept[young].startswith("ended less than")
    assert running not in kept and user in kept

    # the first real pass marks the candidates (grace period), deletes no run
    first = prune(POLICY, kind_names=KIND_NAMES)
    assert {d.target for d in first.pending} == deletable
    assert all(_exists(r) and r.dir.is_dir() for r in deletable)
    assert {d.target for d in first.actions} == {best, "cache"}  # checkpoints and caches need no grace
    assert sorted(p.name for p in (best.dir / "checkpoints").iterdir()) == ["best", "step-3.pt"]
    assert sorted(p.name for p in cache.iterdir()) == ["vectors-2.npy"]
    again = prune(POLICY, kind_names=KIND_NAMES)
    assert again.pending and all(_exists(r) for r in deletable)  # still within the grace period

    # past the grace period: deleted, and the bytes reported are the bytes gone
    footprint = _footprint()
    later = prune(POLICY, kind_names=KIND_NAMES, now=time.time() + 61)
    assert {d.target for d in later.actions} == deletable
    assert all(d.status == "done" for d in later.actions)
    assert later.bytes_freed == footprint - _footprint() and later.bytes_freed > 4 * 20_000
    assert later.files_deleted == sum(d.files for d in later.actions)
    assert not any(_exists(r) for r in deletable)
    assert not any((get_settings().runs_dir / r).exists() for r in deletable)
    survivors = {best, parent, child, aliased, named, user, young, tokenizer_used, running}
    assert all(_exists(r) for r in survivors)
    completed = [e for e in recent_events() if e.type == "cleanup_completed" and e.action == "delete"]
    assert {e.run_id for e in completed} == deletable
    assert sum(e.bytes_freed for e in completed) == later.bytes_freed


def test_with_uploads_runs_are_cleaned_only_after_a_verified_upload(monkeypatch: pytest.MonkeyPatch) -> None:
    from netutil import free_port
    from tldrlab.runs.archive import restore_run, upload_run

    monkeypatch.setenv("TLDRLAB_UPLOAD_RUNS", "1")
    monkeypatch.setenv("TLDRLAB_FILE_STORE", f"http://127.0.0.1:{free_port()}")  # nobody listens
    get_settings.cache_clear()
    policy = POLICY.model_copy(update={"grace_period_s": 0})
    fresh, rotten = _run(fail=True), _run(fail=True)
    report = prune(policy, kind_names=KIND_NAMES)
    assert {d.target: d.status for d in report.actions} == {fresh: "failed", rotten: "failed"}
    assert all("unreachable" in (d.error or "") for d in report.actions)
    assert fresh.dir.is_dir() and rotten.dir.is_dir() and fresh.record.cleaned_at is None  # nothing lost
    assert [e.type for e in recent_events() if e.target == rotten] == ["cleanup_failed"]

    monkeypatch.delenv("TLDRLAB_FILE_STORE")
    get_settings.cache_clear()
    store = open_file_store()
    first = upload_run(rotten)
    store.path_for(first.sha256).write_bytes(b"rotten")  # the store lost the archive's bytes
    report = prune(policy, kind_names=KIND_NAMES)
    assert {d.target: (d.action, d.status) for d in report.actions} == {
        fresh: ("clean", "done"),
        rotten: ("clean", "done"),
    }
    for run in (fresh, rotten):
        cleaned = run.record
        assert cleaned.cleaned_at is not None and not run.dir.exists()
        assert cleaned.archive_sha256 and store.verify(cleaned.archive_sha256)
    assert rotten.record.archive_sha256 != first.sha256  # uploaded again, not cleaned on the rotten copy
    assert restore_run(rotten).cleaned_at is None and (rotten.dir / "artifacts" / "weights.bin").is_file()


def test_delete_endpoint_cleanup_events_and_the_periodic_pass(
    browser: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tldrlab.service.app import create_app

    parent = _run("experiment", metric=1.0)
    child = _run("train", parent=parent)  # one of the experiment's arms
    running = create_run("smoke", {}).id
    with serve_app(create_app()) as url:
        refused = httpx.delete(f"{url}/runs/{parent}")
        assert refused.status_code == 409 and "parent of train run" in refused.json()["message"]
        assert httpx.delete(f"{url}/runs/{running}").status_code == 409
        assert httpx.delete(f"{url}/runs/nope").status_code == 404
        dry = httpx.delete(f"{url}/runs/{child}", params={"dry_run": "true"}).json()
        assert dry["status"] == "dry_run" and dry["bytes"] > 20_000 and child.dir.is_dir()
        done = httpx.delete(f"{url}/runs/{child}").json()
        assert done["status"] == "done" and not _exists(child)
        assert httpx.delete(f"{url}/runs/{parent}").status_code == 200  # no longer referenced
        preview = httpx.post(f"{url}/cleanup/prune", json={}).json()
        assert preview["dry_run"] is True
        events = httpx.get(f"{url}/cleanup/events").json()["events"]
        assert [e["type"] for e in events[:3]] == [
            "cleanup_completed",
            "cleanup_completed",
            "cleanup_dry_run",
        ]
        assert events[0]["run_id"] == parent and events[0]["bytes_freed"] > 20_000
        assert "/" not in str([e["reason"] for e in events])

        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(f"{url}/runs-page")
        line = page.locator("#cleanup-events li", has_text=parent)
        line.wait_for(timeout=15_000)
        assert "deleted" in line.inner_text() and "KB" in line.inner_text()
        page.close()

    monkeypatch.setenv("TLDRLAB_RETENTION__ENABLED", "true")
    monkeypatch.setenv("TLDRLAB_RETENTION__EVERY_S", "0.2")
    monkeypatch.setenv("TLDRLAB_RETENTION__GRACE_PERIOD_S", "0")
    monkeypatch.setenv("TLDRLAB_RETENTION__OLDER_THAN_DAYS", "1")
    get_settings.cache_clear()
    old = _run(fail=True)
    periodic = PeriodicCleanup(get_settings()).start()
    try:
        deadline = time.monotonic() + 20
        while _exists(old) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _exists(old)
        while periodic.passes < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert periodic.passes >= 2
    finally:
        periodic.stop()
    with pytest.raises(ConflictError):
        from tldrlab.runs.retention import delete_run

        delete_run(running, kind_names=KIND_NAMES)


def test_a_run_named_as_run_colon_id_in_another_config_is_kept() -> None:
    """`run:<id>/model` (how configs name another run's model) keeps that run, like its bare id does."""
    _run(metric=1.0)  # the best train run, kept for that reason
    named = _run(metric=5.0)
    _run("train", config={"model_settings": {"from_pretrained": f"run:{named}/model"}}, age_days=0)
    unnamed = _run(metric=6.0)
    dry = prune(POLICY.model_copy(update={"grace_period_s": 0}), kind_names=KIND_NAMES, dry_run=True)
    assert {d.target for d in dry.actions if d.action == "delete"} == {unnamed}
    assert "config of train run" in dry.kept[named]


def test_only_completed_runs_compete_for_the_best_places() -> None:
    """A failed run that logged a better metric before it failed neither keeps itself nor takes the place
    of the best completed run."""
    best = _run(metric=1.0)
    failed = _run(metric=0.5, fail=True)
    assert failed.record.status.value == "failed" and failed.record.metrics["best_eval_loss"] == 0.5
    dry = prune(POLICY.model_copy(update={"grace_period_s": 0}), kind_names=KIND_NAMES, dry_run=True)
    assert dry.kept[best].startswith("best 1 of train")
    assert {d.target for d in dry.actions if d.action == "delete"} == {failed}


def test_the_delete_endpoint_takes_only_an_exact_run_id() -> None:
    # DELETE /runs/{id} resolved unique prefixes like the CLI, so a cut-off or mistyped id deleted whichever
    # single run it prefixed, where every other /runs/{id} route answers 404 for anything but the exact id
    kept = _run("train")
    client = TestClient(create_app())
    refused = client.delete(f"/runs/{kept[:-3]}")
    assert refused.status_code == 404 and refused.json()["code"] == "not_found", refused.text
    assert _exists(kept) and kept.dir.is_dir()
    assert client.delete(f"/runs/{kept}").json()["status"] == "done" and not _exists(kept)


@pytest.mark.parametrize(
    ("query", "body", "named"),
    [
        ("?dryrun=true", None, "query.dryrun: Extra inputs are not permitted"),
        ("?dry-run=1", None, "query.dry-run: Extra inputs are not permitted"),
        ("?dry_run=true&dry_run=false", None, "query.dry_run: given more than once"),
        ("", b'{"dry_run": true}', "reads no request body"),
    ],
    ids=["misspelt", "hyphenated", "given-twice", "in-a-body"],
)
def test_a_delete_meant_as_a_dry_run_is_refused_not_done(query: str, body: bytes | None, named: str) -> None:
    # the route read `dry_run` alone and ignored everything else: a misspelt name, a second value (the last
    # one counted) or a body such as POST /cleanup/prune takes left dry_run false, and the run was deleted
    kept = _run("train")
    client = TestClient(create_app())
    headers = {"content-type": "application/json"} if body else {}
    refused = client.request("DELETE", f"/runs/{kept}{query}", content=body, headers=headers)
    assert refused.status_code == 422 and refused.json()["code"] == "invalid_input", refused.text
    assert named in refused.json()["message"] and refused.json()["request_id"], refused.text
    assert _exists(kept) and kept.dir.is_dir()


def test_the_servers_retention_kinds_take_old_kind_names_and_refuse_unknown_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `eval` is the old name of `evaluate`: a policy naming it matched no run of the kind, silently (and a
    # misspelt kind pruned nothing without a word); old runs may still be recorded under the old name
    evaluation, old_evaluation, training = _run("evaluate"), _run("eval"), _run("train")
    monkeypatch.setenv("TLDRLAB_RETENTION__KINDS", '["eval"]')
    monkeypatch.setenv("TLDRLAB_RETENTION__GRACE_PERIOD_S", "0")
    monkeypatch.setenv("TLDRLAB_RETENTION__OLDER_THAN_DAYS", "1")
    get_settings.cache_clear()
    preview = TestClient(create_app()).post("/cleanup/prune", json={"dry_run": True}).json()
    deleted = {a["target"] for a in preview["actions"] if a["action"] == "delete"}
    assert deleted == {evaluation, old_evaluation}
    assert "kind train is not pruned" in preview["kept"][training]
    periodic = PeriodicCleanup(get_settings())  # what `tldrlab serve` runs with `retention.enabled`
    assert set(periodic.settings.retention.kinds) == {"evaluate", "eval"}
    monkeypatch.setenv("TLDRLAB_RETENTION__KINDS", '["evaluate", "evel"]')
    get_settings.cache_clear()
    refused = r"retention\.kinds.*unknown run kind 'evel'; choose one of .*evaluate"
    with pytest.raises(UnknownKindError, match=refused):
        create_app()
    with pytest.raises(UnknownKindError, match="evel"):
        PeriodicCleanup(get_settings())
    with pytest.raises(UnknownKindError, match="evel"):  # workers apply the policy to each finished run
        build_worker()
    assert _exists(evaluation) and _exists(old_evaluation) and _exists(training)


def test_evaluations_recorded_under_the_old_kind_name_are_evaluations_to_retention(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # runs made before `eval` was renamed `evaluate` are recorded as `eval`: retention took such a run for a
    # primary run, so it kept its training run as "parent of eval run X" (where an `evaluate` run keeps
    # nothing), and keep_best ranked `eval` and `evaluate` runs apart, keeping the best of each name
    old_trained, new_trained = _run(age_days=0), _run()  # the first too young to go (with its evaluation)
    old = _run("eval", parent=old_trained, config={"model_run": old_trained}, metric=1.0)
    new = _run("evaluate", parent=new_trained, config={"model_run": new_trained}, metric=2.0)
    deletable = {new_trained, new}
    monkeypatch.setenv("TLDRLAB_RETENTION__KEEP_BEST", "1")
    monkeypatch.setenv("TLDRLAB_RETENTION__GRACE_PERIOD_S", "0")
    monkeypatch.setenv("TLDRLAB_RETENTION__OLDER_THAN_DAYS", "1")
    get_settings.cache_clear()

    client = TestClient(create_app())
    preview = client.post("/cleanup/prune", json={"dry_run": True}).json()  # the server's pass
    assert {a["target"] for a in preview["actions"] if a["action"] == "delete"} == deletable, preview["kept"]
    assert preview["kept"][old].startswith("best 1 of evaluate by best_eval_loss")
    code, out, err = run_captured(["runs", "prune", "--dry-run", "--json"], capsys)  # the command line's
    assert code == 0 and json.loads(out)["kept"] == preview["kept"], err
    assert {a["target"] for a in json.loads(out)["actions"] if a["action"] == "delete"} == deletable

    # a run is deleted on request once only evaluations name it, whichever name they were recorded under,
    # and its evaluations go with it
    for trained, evaluation in ((old_trained, old), (new_trained, new)):
        deleted = client.delete(f"/runs/{trained}")
        assert deleted.status_code == 200 and deleted.json()["status"] == "done", deleted.text
        assert deleted.json()["children"] == [evaluation]
    assert not any(_exists(r) for r in (old_trained, new_trained, old, new))


def test_the_default_policy_keeps_the_best_real_training_runs() -> None:
    """keep_best ranks by a summary metric real training runs record: the default named `best_val_loss`,
    which no recipe writes (they write `best_eval_loss`), so by default no training run was kept as one of
    the best and the best model went with the rest."""
    launched = [launch_run("smoke", {"steps": steps, "checkpoint_every": steps}).record for steps in (2, 8)]
    for record in launched:
        open_registry().update(record.id, ended_at=time.time() - 40 * DAY)
    losses = {r.id: open_registry().get(r.id).metrics["best_eval_loss"] for r in launched}
    best = min(losses, key=lambda run_id: losses[run_id])
    policy = RetentionPolicy(keep_best=1, grace_period_s=0)  # the defaults but one best run and no grace
    report = prune(policy, kind_names=KIND_NAMES, dry_run=True)
    assert report.kept.get(best, "").startswith("best 1 of smoke by best_eval_loss"), report.kept
    assert {a.target for a in report.actions if a.action == "delete"} == set(losses) - {best}


def _evaluation_of(trained: str, kind: str = "evaluate", *, age_days: float = 10.0) -> RecordHandle:
    """An evaluation run of `trained` with its files under `trained`'s evaluations/ (as `tldrlab eval`)."""
    evaluation = _run(kind, parent=trained, config={"model_run": trained}, age_days=age_days, size=1000)
    beside = Path(open_registry().get(trained).run_dir) / "evaluations" / evaluation
    beside.mkdir(parents=True)
    (beside / "eval_summary.json").write_text("{}")
    return evaluation


def test_deleting_a_run_deletes_its_evaluations_with_it(capsys: pytest.CaptureFixture[str]) -> None:
    # `runs delete` and DELETE /runs/{id} deleted the run and left its evaluations in the registry, rows
    # pointing at a parent and at files that no longer existed (`runs list --parent` then said "no run")
    trained = _run(model=True)
    evaluations = [_evaluation_of(trained), _evaluation_of(trained, "eval")]  # the kind's old name too
    unrelated = _evaluation_of(_run())
    # queued: one submitted over the API (`POST /runs/{id}/evaluations`), waiting for a worker
    queued = create_run("evaluate", {"model_run": trained}, parent_id=trained, tags={SUBMITTED_VIA: "api"}).id

    code, _, err = run_captured(["runs", "delete", trained], capsys)  # an unfinished evaluation blocks it
    assert code == 4 and f"its evaluate run {queued} is queued: cancel it or wait for it to end" in err, err
    client = TestClient(create_app())
    refused = client.delete(f"/runs/{trained}")
    assert refused.status_code == 409 and refused.json()["code"] == "conflict", refused.text
    assert f"its evaluate run {queued} is queued" in refused.json()["message"]
    assert client.post(f"/runs/{queued}/cancel").json()["status"] == "cancelled"
    evaluations.append(RecordHandle(queued))

    code, out, err = run_captured(["runs", "delete", trained, "--dry-run"], capsys)
    assert code == 0 and f"would delete run {trained} and its 3 evaluations (" in out, (out, err)
    assert all(e in out for e in evaluations) and all(_exists(r) for r in (trained, *evaluations))
    dirs = [trained.dir, *(e.dir for e in evaluations)]
    code, out, err = run_captured(["runs", "delete", trained, "--json"], capsys)
    done = json.loads(out)
    assert code == 0 and done["status"] == "done" and sorted(done["children"]) == sorted(evaluations), err
    assert done["bytes"] == sum(e.bytes_freed for e in recent_events(4)) and done["bytes"] > 20_000
    assert not any(_exists(r) for r in (trained, *evaluations)) and not any(d.exists() for d in dirs)
    assert open_registry().list(parent_id=trained) == [] and _exists(unrelated)

    # the API alike, and the text line says what went
    again = _run()
    evaluation = _evaluation_of(again)
    deleted = client.delete(f"/runs/{again}", params={"dry_run": "true"}).json()
    assert deleted["status"] == "dry_run" and deleted["children"] == [evaluation] and _exists(evaluation)
    assert client.delete(f"/runs/{again}").json()["children"] == [evaluation]
    assert not _exists(again) and not _exists(evaluation)
    last = _run()
    code, out, err = run_captured(["runs", "delete", last], capsys)  # no evaluations: as before
    assert code == 0 and out.startswith(f"deleted run {last}: ") and "evaluation" not in out, out


def test_prune_treats_a_run_and_its_evaluations_as_one(capsys: pytest.CaptureFixture[str]) -> None:
    # a pass deleted a training run and left its evaluations behind (their own age and rank decide for them),
    # and deleted a run while an evaluation of it was still running
    trained = _run()
    young = _evaluation_of(trained, age_days=0)  # too young to go alone: it goes with its run
    evaluated = _run()
    running = create_run("evaluate", {"model_run": evaluated}, parent_id=evaluated).id
    open_registry().update(running, status="running")
    policy = POLICY.model_copy(update={"grace_period_s": 0, "keep_best": 0})
    dry = prune(policy, kind_names=KIND_NAMES, dry_run=True)
    (action,) = [d for d in dry.actions if d.target == trained]
    assert action.children == [young] and young not in dry.kept, dry.as_dict()
    assert [d.target for d in dry.actions].count(young) == 1
    assert dry.kept[evaluated] == f"its evaluate run {running} is running"
    assert f"{trained} with its 1 evaluation" in str(dry.report().blocks)
    done = prune(policy, kind_names=KIND_NAMES)
    assert {d.target for d in done.actions if d.status == "done"} == {trained, young}
    assert not _exists(trained) and not _exists(young) and _exists(evaluated) and _exists(running)
    open_registry().update(running, status="completed")  # its evaluation ended: the run may go now
    prune(policy, kind_names=KIND_NAMES)
    assert not _exists(evaluated) and not _exists(running)


def test_prune_keeps_a_run_whose_evaluation_is_among_the_best() -> None:
    # keep_best ranks every kind's completed runs, evaluations too (by an evaluation's metric, say `loss`):
    # an evaluation kept as the best of its kind was deleted with its training run all the same (popped from
    # the pass's kept runs), so keep_best protected no evaluation whose run had aged out
    trained, other = _run(), _run()
    best = _evaluation_of(trained)
    worse = _evaluation_of(other)
    registry = open_registry()
    registry.update(best, metrics={"loss": 1.0})
    registry.update(worse, metrics={"loss": 2.0})
    policy = POLICY.model_copy(update={"grace_period_s": 0, "keep_best": 1, "metric": "loss"})
    dry = prune(policy, kind_names=KIND_NAMES, dry_run=True)
    assert dry.kept[best].startswith("best 1 of evaluate by loss"), dry.as_dict()
    assert dry.kept[trained] == f"its evaluate run {best} is best 1 of evaluate by loss (1)", dry.as_dict()
    assert {d.target for d in dry.actions} == {other, worse}, dry.as_dict()
    prune(policy, kind_names=KIND_NAMES)
    assert _exists(trained) and _exists(best) and not _exists(other) and not _exists(worse)
