"""`tldrlab ingest PATH`, `tldrlab digest PATH|THREAD_ID`, `tldrlab highlights THREAD_ID`, `tldrlab threads
list|delete`, `tldrlab demo`.

`digest` and `highlights` take their options from DigestOptions and HighlightOptions, the classes the API's
routes validate too.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterator
from contextlib import closing
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from tldrlab.cli.options import AS_JSON, config_command
from tldrlab.cli.runkinds import RunCommand, add
from tldrlab.cli.tables import emit, print_report
from tldrlab.config import get_settings
from tldrlab.data.readers.common import DATA_SUFFIXES
from tldrlab.digest.cache import open_cache
from tldrlab.errors import InvalidInputError, NotFoundError
from tldrlab.report import Column, Report, visible_controls
from tldrlab.report import Table as Listing
from tldrlab.samples import sample_path

console = Console()


def run_digest(
    target: str, options: Any, *, as_json: bool, thread_id: str | None = None, format: str | None = None
) -> None:
    """Digest `target` (a thread file or directory, ingested first, or a stored thread id) with `options`
    (DigestOptions): one JSON document, or the TL;DR streamed, then its bullets and highlights."""
    # lazy: loads numpy, torch (kept off `tldrlab --help`)
    from tldrlab.digest.highlights import highlights_report
    from tldrlab.digest.ingest import open_sentence_store, thread_to_digest
    from tldrlab.digest.pipeline import digest_events
    from tldrlab.digest.summarizers import build_summarizer

    thread_id = thread_to_digest(target, thread_id, format=format, show_progress=not as_json)
    store, embedder = open_sentence_store()
    with closing(store), closing(open_cache(get_settings())) as cache:
        if not Path(target).exists() and _looks_like_path(target):
            try:  # a stored thread id may still hold a '/' or a dot: only a missing one is a missing file
                store.get_thread(target)
            except NotFoundError:
                raise NotFoundError(f"no such file: {target}") from None
        build_summarizer(options.summarizer, options.params)  # bad options fail first, as in digest_events
        # The one version of the thread that is both digested and named in the header: a title read apart
        # from the digest's own read showed one version's title over another's TL;DR when a re-ingest
        # committed between the two. NotFoundError for an unknown thread, before any output.
        snapshot = store.thread_snapshot(thread_id)
        events = digest_events(store, thread_id, options, embedder=embedder, cache=cache, snapshot=snapshot)
        if as_json:
            for event in events:
                if event.digest is not None:
                    typer.echo(json.dumps(event.digest.model_dump(mode="json"), indent=2))
            return
        first = next(events)  # errors before any output
        title = visible_controls(snapshot.thread.title or thread_id)  # a forum's text: shown, never run
        console.print(f"[bold]TL;DR[/] of [bold]{escape(title)}[/] ({options.summarizer})", highlight=False)
        digest = _stream_until_digest(itertools.chain([first], events))
        numbers = {h.id: i for i, h in enumerate(digest.highlights, start=1)}
        fell_back = [b.text for b in digest.bullets] == [b.text for b in digest.draft]
        if digest.draft and not fell_back:
            quoted = ", then key sentences in quotes" if any(b.from_draft for b in digest.bullets) else ""
            console.print(
                f"[bold]written by the local language model[/]{quoted} [dim](numbers cite the highlights)[/]"
            )
        elif digest.draft:  # the model's bullets were not kept (a notice said why): the draft is the TL;DR
            console.print("[bold]key sentences[/] [dim](numbers cite the highlights)[/]")
        for line in _bullet_lines(digest.bullets, numbers):
            console.print(line, highlight=False)
        if digest.cached:
            console.print("[dim](cached)[/]")
        print_report(highlights_report(digest.highlights))


def _looks_like_path(target: str) -> bool:
    """A digest target written as a path (a separator, or a data file's extension such as .json): when no
    such file exists, the error is about the file, not about a thread id nobody meant."""
    return "/" in target or os.sep in target or Path(target).suffix.lower() in DATA_SUFFIXES


def _bullet_lines(bullets: list[Any], numbers: dict[str, int]) -> list[str]:
    lines = []
    for bullet in bullets:
        cites = visible_controls(" ".join(f"[{numbers.get(c, c)}]" for c in bullet.citations))
        flag = " [yellow](unsupported)[/]" if bullet.supported is False else ""
        text = escape(visible_controls(bullet.text))  # a model's or a post's words: shown, never run
        if bullet.from_draft:  # a key sentence itself, not the model's words: shown as a quote
            lines.append(f" • [dim]“{text}”[/] [cyan]{escape(cites)}[/] [dim](key sentence)[/]")
        else:
            lines.append(f" • {text} [cyan]{escape(cites)}[/]{flag}")
    return lines


def _stream_until_digest(events: Iterator[Any]) -> Any:
    """The final digest of a digest event stream. Notices are printed as they come. On a terminal, a
    two-stage draft and the streamed text are shown live meanwhile and then replaced by the final cited
    bullets, so the TL;DR is printed once; elsewhere (a pipe, a file) only the final bullets are."""
    from rich.console import Group
    from rich.live import Live
    from rich.text import Text

    draft_view = Text()
    streamed = Text(style="dim")
    with Live(Group(draft_view, streamed), console=console, transient=True, auto_refresh=False) as live:
        for event in events:
            if event.digest is not None:
                return event.digest
            if event.kind == "notice":
                console.print(f"[yellow]note:[/] {escape(visible_controls(event.text))}", highlight=False)
            elif not console.is_terminal:
                continue
            elif event.kind == "draft":
                numbers = {h.id: i for i, h in enumerate(event.highlights or [], start=1)}
                heading = "[bold]key sentences[/] [dim](at once, while the language model writes)[/]"
                lines = [heading, *_bullet_lines(event.bullets or [], numbers)]
                draft_view.append_text(Text.from_markup("\n".join(lines) + "\n"))
                live.refresh()
            else:
                streamed.append(visible_controls(event.text))
                live.refresh()
    raise InvalidInputError("the digest stream ended without a digest")


def digest_command(options: Any, as_json: bool) -> None:
    """Stream a cited TL;DR of a thread, then its cited bullets and the highlights with provenance.

    Example: tldrlab digest thread.json --k 5 --json
    """
    digest = options.digest_options()
    run_digest(options.target, digest, as_json=as_json, thread_id=options.thread, format=options.format)


def highlights_command(options: Any, as_json: bool) -> None:
    """The sentences worth reading in a stored thread, with provenance.

    Example: tldrlab highlights 33 --q "roasted barley"
    """
    # lazy: loads numpy (kept off `tldrlab --help`)
    from tldrlab.digest.highlights import highlights_report, thread_highlights
    from tldrlab.digest.ingest import open_sentence_store

    store, embedder = open_sentence_store()
    with closing(store):
        found = thread_highlights(store, options.thread_id, options, embedder=embedder)
    emit([h.model_dump() for h in found], lambda: highlights_report(found), as_json=as_json)


def demo_command(as_json: bool = AS_JSON) -> None:
    """Ingest the bundled, attributed sample thread and print its digest (what `make demo` runs): the key
    sentences at once, then the bundled language model's TL;DR citing them (extractive alone when no model
    is installed).

    Example: tldrlab demo
    """
    # lazy: loads numpy, torch (kept off `tldrlab --help`)
    from tldrlab.digest.pipeline import DigestOptions

    path = sample_path("beer_thread")
    if not as_json:
        console.print(
            f"[dim]sample: {path.name} (beer.stackexchange.com, CC BY-SA 3.0; authors linked per post)[/]"
        )
    run_digest(str(path), DigestOptions(), as_json=as_json)


threads_app = typer.Typer(help="The stored threads: list them, delete one.", no_args_is_help=True)


@threads_app.command("list")
def list_threads_command(
    q: str | None = typer.Option(None, "--q", help="Only threads whose id or title holds this text."),
    limit: int = typer.Option(20, min=1, max=1000, help="Show at most this many, newest first."),
    as_json: bool = AS_JSON,
) -> None:
    """The stored threads, newest first, with their posts and sentences.

    Example: tldrlab threads list --q lager
    """
    # lazy: loads numpy, the embedder (kept off `tldrlab --help`)
    from tldrlab.digest.ingest import open_sentence_store

    store, _ = open_sentence_store()
    with closing(store):
        found = store.list_threads(limit=limit, q=q or None)
    rows = [[t.id, visible_controls(t.title), str(t.posts), str(t.sentences)] for t in found]
    columns = [Column("id", key=True), Column("title", wrap=True), Column("posts", justify="right"),
               Column("sentences", justify="right")]  # fmt: skip
    # --json: one object per line, as every listing prints (`runs list`, `models list`, `data list`)
    listing = [asdict(t) for t in found]
    emit(listing, lambda: Listing(columns, rows), as_json=as_json, lines=True, empty="no threads")


@threads_app.command("delete")
def delete_thread_command(
    thread_id: str = typer.Argument(..., help="A stored thread's id.", metavar="THREAD_ID"),
    as_json: bool = AS_JSON,
) -> None:
    """Delete a stored thread with its sentences, their vectors and its cached digests.

    Example: tldrlab threads delete 1234
    """
    # lazy: loads numpy, the embedder (kept off `tldrlab --help`)
    from tldrlab.digest.ingest import delete_thread, open_sentence_store

    store, _ = open_sentence_store()
    with closing(store), closing(open_cache(get_settings())) as cache:
        sentences = delete_thread(thread_id, store, cache)
    deleted = {"thread_id": thread_id, "deleted": True, "sentences": sentences}
    emit(deleted, lambda: Report([f"deleted thread {thread_id} ({sentences} sentences)"]), as_json=as_json)


def register(app: typer.Typer) -> None:
    ingest = RunCommand(
        "ingest",
        "ingest",
        "tldrlab ingest ../shared/data/stackexchange_beer/Posts.xml",
        aliases={"format": "-f"},
        arguments=("path",),
    )
    add(app, ingest)
    scorer = RunCommand(
        "train-highlight-scorer",
        "highlight_scorer_train",
        "tldrlab train-highlight-scorer --scitldr-train ../shared/data/scitldr/scitldr_a.train.jsonl "
        "--name learned_v2",
        help="Train a learned highlight scorer (a listwise linear model per mode) on labelled train splits "
        "as a run; the scorer file goes to <run>/artifacts/highlight_scorer.json (docs/digest.md).",
    )
    add(app, scorer)
    reranker = RunCommand(
        "train-highlight-reranker",
        "highlight_reranker_train",
        "tldrlab train-highlight-reranker --qmsum-train ../shared/data/qmsum/qmsum.train.jsonl --steps 300",
        help="Fine-tune a MiniLM re-ranker (LoRA) of query-aware highlights on QMSum train, "
        "as a run; the scorer file and adapter go to <run>/artifacts/ (docs/digest.md).",
    )
    add(app, reranker)
    config_command(
        app,
        "digest",
        "tldrlab.digest.pipeline:ThreadDigestOptions",
        digest_command,
        aliases={
            "summarizer": "-s",
            "use_cache": "--cache/--no-cache",
            "params": ("--param", "-p"),
            "format": "-f",
        },
        arguments=("target",),
        as_json=True,
    )
    config_command(
        app,
        "highlights",
        "tldrlab.digest.pipeline:ThreadHighlightOptions",
        highlights_command,
        arguments=("thread_id",),
        as_json=True,
    )
    app.command("demo")(demo_command)
    app.add_typer(threads_app, name="threads")
