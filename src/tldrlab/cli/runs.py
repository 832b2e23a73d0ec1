"""`tldrlab runs list | show | logs | cancel | compare | export | import | upload | restore | prune | delete`:
the run registry from the terminal, runs side by side, moving runs in and out of it as archives, and
retention."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from tldrlab.cli.options import AS_JSON, config_command, path_parser
from tldrlab.cli.tables import emit, err_console, json_text
from tldrlab.config import RetentionPolicy, get_settings
from tldrlab.errors import ConflictError, NotFoundError
from tldrlab.kinds import kind_names_by_recorded_name, recorded_kind_names
from tldrlab.launch import ORPHAN_RULES, refuse_stored_state
from tldrlab.report import Report
from tldrlab.runs import RunRegistry, open_registry
from tldrlab.runs.archive import directory_gone, export_run, import_archive, restore_run, upload_run
from tldrlab.runs.atomic import read_jsonl
from tldrlab.runs.compare import CompareChart, compare_runs
from tldrlab.runs.reconcile import (
    SETTLE_LOCK_WAIT_S,
    Reconciled,
    cancel_with_descendants,
    reconcile_here,
    repair_manifests,
)
from tldrlab.runs.registry import RunQuery, RunRecord, RunStatus, runs_table
from tldrlab.runs.retention import delete_run, prune, size_text
from tldrlab.runs.run import LOG, MANIFEST, read_manifest
from tldrlab.service.worker import live_workers
from tldrlab.track.plots import plot_comparison

runs_app = typer.Typer(help="List and inspect runs.", no_args_is_help=True)
# the argument named in capitals, as the generated commands name theirs (MODEL_RUN, IDS) and docs/cli.md shows
# it: without a metavar, help and `Missing argument 'run_id'.` used the Python parameter's name
RUN_ID = typer.Argument(..., help="Run id or a unique prefix of it.", metavar="RUN_ID")


def reconciled_registry() -> RunRegistry:
    """The registry, once the runs a killed process of this machine left `running` are settled: a home
    with no worker to reconcile them would otherwise show them running for good (with live workers, their
    reconcile requeues them, as the API's views leave them too). Settling is the view's side
    job: when it fails (a read-only home or database) the runs are shown as they are, with one warning."""
    registry = open_registry()
    # settled through a connection that waits briefly for another process's write lock (left for the next
    # view), not the registry's 30 s
    settling = open_registry(lock_wait_s=SETTLE_LOCK_WAIT_S)
    try:
        try:
            workers = live_workers(settling)
        except Exception as exc:  # not knowing whether workers exist, settling could take their runs
            warning = f"runs whose process died were not settled: cannot tell whether workers run ({exc})"
            err_console.print(f"[yellow]warning[/] {escape(warning)}", highlight=False, soft_wrap=True)
            return registry
        if workers:
            # their reconcile requeues and resumes such a run: settled here first, it would wait for --resume
            done = Reconciled(failed=repair_manifests(settling))
        else:
            done = reconcile_here(settling, heartbeat_s=get_settings().run_heartbeat_s, rules=ORPHAN_RULES)
    finally:
        settling.db.close()
    if done.warning:
        err_console.print(f"[yellow]warning[/] {escape(done.warning)}", highlight=False, soft_wrap=True)
    return registry


def list_command(query: RunQuery, as_json: bool) -> None:
    """List runs, newest first.

    Example: tldrlab runs list --kind train --status completed
    """
    # a kind's runs under every name they may be recorded under (evaluate and eval, whichever is given);
    # a typo is an error listing the kinds, not an empty table
    kinds = recorded_kind_names(query.kind) if query.kind else None
    registry = reconciled_registry()
    # the parent as people type it (a unique prefix); an unknown one is an error, not an empty table
    parent = registry.find(query.parent_id).id if query.parent_id else None
    records = registry.list(**{**query.model_dump(mode="json"), "kind": kinds, "parent_id": parent})
    # as `models list` and `data list` say so: a bare header read like a listing that failed. (--json stays
    # JSON lines, one object per run: none when there are none)
    filtered = query.kind or query.status or query.parent_id or query.offset
    empty = "no runs match" if filtered else "no runs yet: `tldrlab --help` lists the kinds of run to start"
    rows = [record.to_dict() for record in records]
    emit(rows, lambda: runs_table(records), as_json=as_json, lines=True, empty=empty)


@runs_app.command("show")
def show_run(run_id: str = RUN_ID) -> None:
    """Show a run's registry row and manifest as JSON.

    Example: tldrlab runs show train-20260101
    """
    record = reconciled_registry().find(run_id)
    typer.echo(json_text({"run": record.to_dict(), "manifest": _manifest(record)}, indent=2))


def _manifest(record: RunRecord) -> dict[str, Any] | None:
    """The run's manifest, or None with a warning saying why there is none: the registry row is shown either
    way. A cleaned run (retention removed its directory, by design) was `[os_error] No such file`, exit 1,
    and a manifest cut short (a full disk, a hand edit) a JSONDecodeError traceback."""
    try:
        return read_manifest(record.run_dir)
    except FileNotFoundError:
        why = f"no manifest: {directory_gone(record)}"
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not valid JSON"
        why = f"its manifest {Path(record.run_dir) / MANIFEST} cannot be read ({reason})"
    err_console.print(
        f"[yellow]warning[/] {escape(f'run {record.id}: {why}')}", highlight=False, soft_wrap=True
    )
    return None


@runs_app.command("cancel")
def cancel_command(run_id: str = RUN_ID, as_json: bool = AS_JSON) -> None:
    """Cancel a run and the runs it started: a queued one at once, a running one between two of its steps (a
    run of any process or worker of this home), as the API's cancel does.

    Example: tldrlab runs cancel train-20260101
    """
    registry = reconciled_registry()  # a killed run is settled first, not asked to stop
    record = registry.find(run_id)
    if record.status.finished:
        raise ConflictError(f"run {record.id} already {record.status.value}")
    cancel_with_descendants(registry, record)
    now = registry.get(record.id)
    said = (
        f"cancelled run {now.id}"
        if now.status is RunStatus.CANCELLED
        else f"cancel requested: run {now.id} stops after its current step"
    )
    emit(now.to_dict(), lambda: Report([said]), as_json=as_json)


def _log_field(row: dict[str, Any], name: str) -> str:
    """A log line's field as text: a line not written here may hold `"level": null` or a number, which the
    width of the level column refused with a TypeError traceback."""
    value = row.get(name)
    return "" if value is None else str(value)


@runs_app.command("logs")
def show_logs(
    run_id: str = RUN_ID,
    tail: int = typer.Option(50, min=0, help="Show the last N lines (0 for all)."),
    raw: bool = typer.Option(False, "--raw", "--json", help="Print the JSON lines as stored."),
) -> None:
    """Print a run's structured log.

    Example: tldrlab runs logs train-20260101 --tail 20
    """
    record = open_registry().find(run_id)
    if not Path(record.run_dir).is_dir():  # printed nothing and exited 0, as for a run that logged nothing
        raise NotFoundError(f"run {record.id} has no log here: {directory_gone(record)}")
    rows = read_jsonl(Path(record.run_dir) / LOG)[-tail:]  # -0: every line
    text = [
        f"{_log_field(row, 'time')} {_log_field(row, 'level'):7} {_log_field(row, 'message')}" for row in rows
    ]
    emit(rows, lambda: Report([*text]), as_json=raw, lines=True)


def compare_command(query: CompareChart, as_json: bool) -> None:
    """Print and plot runs' metrics side by side, flagging regressions against a baseline run.

    A run's metrics are its summary plus its final evaluation (`eval.*`, from the eval_summary.json next to
    its model; the output names that evaluation run, which a later `tldrlab eval` never replaces); lower is
    better for losses, perplexities, MSE, unknown-token rates and times (train_s, *_seconds), higher for
    ROUGE, BERTScore, F1, AUC, cosine, top-k, coverage and throughput (the table that picks a training run's
    best checkpoint); other metrics are only shown. Times and throughputs move with the machine's load, so
    they are gated only when named with --metric.

    Example: tldrlab runs compare train-20260101 train-20260102 --baseline train-20260101 --tolerance 0.02
    """
    refuse_stored_state("--plot", Path(query.plot))
    comparison = compare_runs(
        query.ids, baseline=query.baseline, metrics=query.metric or None, tolerance=query.tolerance
    )
    plot_comparison(comparison, Path(query.plot))
    emit({**comparison.as_dict(), "plot": query.plot}, comparison.report, as_json=as_json)
    if not as_json:
        typer.echo(f"chart: {query.plot}")
    if query.fail_on_regression and (comparison.regressions or comparison.unchecked):
        raise typer.Exit(1)


@runs_app.command("export")
def export_command(
    run_id: str = RUN_ID,
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Archive file or directory (default: ./RUN_ID.tar.gz).",
        parser=path_parser("--out"),
    ),
    as_json: bool = AS_JSON,
) -> None:
    """Write a finished run's directory into one archive with the sha256 of every file, and its finished
    evaluations (generations, scores) with it.

    Example: tldrlab runs export train-20260101 --out /backups/
    """
    reconciled_registry()  # a killed run is not `running` (refused) for good
    exported = export_run(run_id, out, with_evaluations=kind_names_by_recorded_name())
    emit(exported.as_dict(), exported.report, as_json=as_json)


@runs_app.command("import")
def import_command(
    archive: Path = typer.Argument(
        ...,
        help="An archive written by `tldrlab runs export`.",
        parser=path_parser("ARCHIVE"),
        metavar="ARCHIVE",
    ),
    as_json: bool = AS_JSON,
) -> None:
    """Restore the run an archive holds with the evaluations it packs, under their ids (every file checked
    against its sha256 first).

    Example: tldrlab runs import /backups/train-20260101-120000-ab12cd.tar.gz
    """
    imported = import_archive(archive)
    emit(imported.as_dict(), imported.report, as_json=as_json)


@runs_app.command("upload")
def upload_command(run_id: str = RUN_ID, as_json: bool = AS_JSON) -> None:
    """Pack a finished run and put it into the file store (the `file_store` setting), recording its file id.

    Example: tldrlab runs upload train-20260101
    """
    reconciled_registry()  # a killed run is not `running` (refused) for good
    stored = upload_run(run_id)
    line = f"uploaded run {run_id}: file {stored.sha256} ({stored.size:,} bytes)"
    emit(stored.__dict__, lambda: Report([line]), as_json=as_json)


@runs_app.command("restore")
def restore_command(run_id: str = RUN_ID, as_json: bool = AS_JSON) -> None:
    """Bring a cleaned run's directory back from its archive in the file store (verified).

    Example: tldrlab runs restore train-20260101
    """
    record = restore_run(run_id)
    emit(record.to_dict(), lambda: Report([f"run {record.id} is in {record.run_dir}"]), as_json=as_json)


def prune_command(policy: RetentionPolicy, as_json: bool) -> None:
    """Delete runs, old checkpoints and cache files by the retention policy (settings, then these flags).

    Referenced runs (aliases, parents, runs named in other runs' configs) and the best runs are kept; a
    candidate is marked first and deleted once its grace period passed; with uploads on, only runs whose
    archive is verified in the file store are cleaned (and restorable).

    Example: tldrlab runs prune --dry-run --older-than-days 14 --keep-best 3
    """
    if policy.kinds:  # as in `runs list` and the server: eval or evaluate prunes the runs recorded under
        # either name; a typo is an error, not "would free 0 B"
        policy = policy.model_copy(update={"kinds": list(recorded_kind_names(*policy.kinds))})
    reconciled_registry()  # a killed run is not `running` (never pruned) for good
    report = prune(policy, kind_names=kind_names_by_recorded_name(), dry_run=policy.dry_run)
    emit(report.as_dict(), report.report, as_json=as_json)


@runs_app.command("delete")
def delete_command(
    run_id: str = typer.Argument(
        ...,
        help="The run's whole id (deleting takes no prefix: a prefix is refused, naming its runs).",
        metavar="RUN_ID",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only report what would be deleted."),
    as_json: bool = AS_JSON,
) -> None:
    """Delete a finished run now (directory and registry row) with its evaluations (generations, scores);
    refused while something references it or it or one of its evaluations is queued or running.

    Example: tldrlab runs delete train-20260101
    """
    reconciled_registry()  # a killed run is not `running` (refused) for good
    done = delete_run(run_id, kind_names=kind_names_by_recorded_name(), dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    line = f"{verb} {done.what()}: {size_text(done.bytes)} in {done.files} files"
    emit(done.as_dict(), lambda: Report([line]), as_json=as_json)


def register(app: typer.Typer) -> None:
    config_command(
        runs_app,
        "list",
        RunQuery,
        list_command,
        aliases={"parent_id": "--parent"},
        as_json=True,
        defaults={"limit": 20},
    )
    config_command(runs_app, "compare", CompareChart, compare_command, arguments=("ids",), as_json=True)
    config_command(
        runs_app,
        "prune",
        RetentionPolicy,
        prune_command,
        aliases={"statuses": "--status", "kinds": "--kind"},
        as_json=True,
        exclude=("enabled", "every_s"),
        base=lambda: get_settings().retention.model_dump(),
    )
    app.add_typer(runs_app, name="runs")
