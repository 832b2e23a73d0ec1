"""`tldrlab ingest PATH`, `tldrlab digest PATH|THREAD_ID`, `tldrlab highlights THREAD_ID`, `tldrlab demo`."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import typer
from rich.console import Console
from rich.markup import escape

from tldrlab.cli.runkinds import RunCommand, add
from tldrlab.config import get_settings
from tldrlab.digest.cache import open_cache
from tldrlab.errors import InvalidInputError
from tldrlab.samples import sample_path

console = Console()
err_console = Console(stderr=True)


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """`key=value` pairs; values parse as JSON when they can (numbers, booleans), else stay text."""
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInputError(f"--param expects key=value, got {item!r}")
        try:
            params[key.strip()] = json.loads(value)
        except ValueError:
            params[key.strip()] = value
    return params


def print_highlights(highlights: list[Any]) -> None:
    """One block per highlight: rank, score, provenance (thread, post, sentence, span), text, link."""
    console.print("[bold]highlights[/]")
    for h in highlights:
        where = f"thread {h.thread_id} · post #{h.post_number} ({h.post_id}) · sentence {h.sentence_index}"
        console.print(
            f"[cyan][{h.rank}][/] {h.score:.3f}  {where} · chars {h.start}-{h.end}", highlight=False
        )
        console.print(f"    {h.text}", highlight=False)
        if h.url:
            console.print(f"    [dim]{h.url}[/]", highlight=False)


def run_digest(
    target: str,
    *,
    summarizer: str,
    params: dict[str, Any],
    k: int,
    q: str | None,
    max_bullets: int,
    as_json: bool,
    use_cache: bool,
    thread_id: str | None = None,
    format: str | None = None,
) -> None:
    # lazy: loads numpy, torch (kept off `tldrlab --help`)
    from tldrlab.digest.pipeline import DigestOptions, digest_events
    from tldrlab.embed import get_embedder
    from tldrlab.store import open_store

    settings = get_settings()
    if Path(target).exists():
        # lazy: loads numpy (kept off `tldrlab --help`)
        from tldrlab.digest.ingest import ingest_path

        stats, _ = ingest_path(target, format=format, show_progress=not as_json)
        if not stats.thread_ids:
            raise InvalidInputError(f"no threads in {target}")
        if thread_id is not None and thread_id not in stats.thread_ids:
            raise InvalidInputError(f"thread {thread_id!r} is not in {target}")
        thread_id = thread_id or stats.thread_ids[0]
    else:
        thread_id = thread_id or target
    options = DigestOptions(
        summarizer=summarizer, params=params, k=k, q=q, max_bullets=max_bullets, use_cache=use_cache
    )
    embedder = get_embedder(settings.embedder)
    store = open_store(settings, dim=embedder.dim, embedder=embedder.name)
    cache = open_cache(settings)
    try:
        if as_json:
            for event in digest_events(store, thread_id, options, embedder=embedder, cache=cache):
                if event.digest is not None:
                    print(json.dumps(event.digest.model_dump(mode="json"), indent=2))
            return
        events = digest_events(store, thread_id, options, embedder=embedder, cache=cache)
        first = next(events)  # bad options, unknown threads: errors before any output
        title = store.get_thread(thread_id).title or thread_id
        console.print(f"[bold]TL;DR[/] of [bold]{escape(title)}[/] ({summarizer})", highlight=False)
        digest = _stream_until_digest(itertools.chain([first], events))
        numbers = {h.id: i for i, h in enumerate(digest.highlights, start=1)}
        fell_back = [b.text for b in digest.bullets] == [b.text for b in digest.draft]
        if digest.draft and not fell_back:
            console.print(
                "[bold]written by the local language model[/] [dim](numbers cite the highlights)[/]"
            )
        elif digest.draft:  # the model's bullets were not kept (a notice said why): the draft is the TL;DR
            console.print("[bold]key sentences[/] [dim](numbers cite the highlights)[/]")
        print_bullets(digest.bullets, numbers)
        if digest.cached:
            console.print("[dim](cached)[/]")
        print_highlights(digest.highlights)
    finally:
        store.close()
        cache.close()


def print_bullets(bullets: list[Any], numbers: dict[str, int]) -> None:
    for line in _bullet_lines(bullets, numbers):
        console.print(line, highlight=False)


def _bullet_lines(bullets: list[Any], numbers: dict[str, int]) -> list[str]:
    lines = []
    for bullet in bullets:
        cites = " ".join(f"[{numbers.get(c, c)}]" for c in bullet.citations)
        flag = " [yellow](unsupported)[/]" if bullet.supported is False else ""
        lines.append(f" • {escape(bullet.text)} [cyan]{escape(cites)}[/]{flag}")
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
                console.print(f"[yellow]note:[/] {escape(event.text)}", highlight=False)
            elif not console.is_terminal:
                continue
            elif event.kind == "draft":
                numbers = {h.id: i for i, h in enumerate(event.highlights or [], start=1)}
                heading = "[bold]key sentences[/] [dim](at once, while the language model writes)[/]"
                lines = [heading, *_bullet_lines(event.bullets or [], numbers)]
                draft_view.append_text(Text.from_markup("\n".join(lines) + "\n"))
                live.refresh()
            else:
                streamed.append(event.text)
                live.refresh()
    raise InvalidInputError("the digest stream ended without a digest")


def digest_command(
    target: str = typer.Argument(..., help="A thread file/directory (ingested first) or a stored thread id."),
    summarizer: str = typer.Option(
        "two_stage",
        "--summarizer",
        "-s",
        help="two_stage (extractive draft, then the local LM's cited bullets)|extractive|local|openai",
    ),
    param: list[str] | None = typer.Option(None, "--param", "-p", help="Summarizer parameter key=value."),
    k: int = typer.Option(8, "--k", min=1, max=50, help="Highlights to pick."),
    q: str | None = typer.Option(None, "--q", help="Focus query (query-aware highlights)."),
    max_bullets: int = typer.Option(5, "--max-bullets", min=1, max=20),
    thread: str | None = typer.Option(None, "--thread", help="Which thread of the file to digest."),
    format: str | None = typer.Option(None, "--format", "-f", help="Input format when TARGET is a file."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document (for scripts)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Ignore and do not store cached digests."),
) -> None:
    """Stream a cited TL;DR of a thread, then its cited bullets and the highlights with provenance.

    Example: tldrlab digest thread.json --k 5 --json
    """
    run_digest(
        target,
        summarizer=summarizer,
        params=parse_params(param),
        k=k,
        q=q,
        max_bullets=max_bullets,
        as_json=as_json,
        use_cache=not no_cache,
        thread_id=thread,
        format=format,
    )


def highlights_command(
    thread_id: str = typer.Argument(..., help="A stored thread id."),
    k: int = typer.Option(5, "--k", min=1, max=100),
    q: str | None = typer.Option(None, "--q", help="Focus query (hybrid vector + BM25)."),
    scorer: str = typer.Option(
        "auto",
        "--scorer",
        help="auto (per mode, the default scorer), heuristic, learned_v1 or learned_v2 (docs/digest.md).",
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The sentences worth reading in a stored thread, with provenance.

    Example: tldrlab highlights 33 --q "roasted barley"
    """
    # lazy: loads numpy (kept off `tldrlab --help`)
    from tldrlab.digest.highlights import HighlightOptions, thread_highlights
    from tldrlab.digest.scorers import ScorerName
    from tldrlab.embed import get_embedder
    from tldrlab.store import open_store

    if scorer not in get_args(ScorerName):
        choices = ", ".join(get_args(ScorerName))
        raise typer.BadParameter(f"{scorer!r}; choose from {choices}", param_hint="--scorer")
    options = HighlightOptions(k=k, q=q, scorer=scorer)  # type: ignore[arg-type]
    settings = get_settings()
    embedder = get_embedder(settings.embedder)
    store = open_store(settings, dim=embedder.dim, embedder=embedder.name)
    try:
        found = thread_highlights(store, thread_id, options, embedder=embedder)
    finally:
        store.close()
    if as_json:
        print(json.dumps([h.model_dump() for h in found], indent=2))
    else:
        print_highlights(found)


def demo_command(
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Ingest the bundled, attributed sample thread and print its digest (what `make demo` runs): the key
    sentences at once, then the bundled language model's TL;DR citing them (extractive alone when no model
    is installed).

    Example: tldrlab demo
    """

    path = sample_path("beer_thread")
    if not as_json:
        console.print(
            f"[dim]sample: {path.name} (beer.stackexchange.com, CC BY-SA 3.0; authors linked per post)[/]"
        )
    run_digest(
        str(path),
        summarizer="two_stage",
        params={},
        k=8,
        q=None,
        max_bullets=5,
        as_json=as_json,
        use_cache=True,
    )


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
    app.command("digest")(digest_command)
    app.command("highlights")(highlights_command)
    app.command("demo")(demo_command)
