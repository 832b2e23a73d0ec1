"""`tldrlab ingest`, `digest`, `highlights`, `threads`, `demo`: in-process through the real entry point."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from digest_helpers import sample_thread

from cliutil import run_captured
from tldrlab.digest.ingest import ingest_threads
from tldrlab.embed.base import Embedder
from tldrlab.runs import open_registry
from tldrlab.store.base import SentenceStore, ThreadSnapshot


@pytest.mark.slow
def test_demo_prints_a_cited_digest(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_captured(["demo"], capsys)
    assert code == 0
    assert "TL;DR" in out and "highlights" in out and "https://beer.stackexchange.com/" in out
    assert out.count(" • ") == 5 and "[1]" in out
    # once, under the thread's title (not its id)
    assert "TL;DR of What's the difference between a porter and a stout? (two_stage)" in out
    assert "note: the digest model is turned off" in out  # the tests configure none: extractive
    assert "TL;DR of 33" not in out
    tldr = out.split("highlights")[0]
    first_bullet = tldr.split(" • ")[1].split(".")[0]
    assert tldr.count(first_bullet) == 1, out
    code, out, _ = run_captured(["demo", "--json"], capsys)  # the second run is served from the cache
    digest = json.loads(out)
    assert code == 0 and digest["cached"] is True and len(digest["bullets"]) == 5


def test_ingest_digest_highlights_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "thread.json"
    path.write_text(json.dumps(sample_thread().model_dump(mode="json")))
    code, out, _ = run_captured(["ingest", str(path)], capsys)
    assert code == 0 and "ingested 1 thread(s), 4 posts: 4 embedded" in out
    code, out, _ = run_captured(["ingest", str(path)], capsys)
    assert code == 0 and "0 embedded" in out and "4 unchanged" in out

    code, out, _ = run_captured(["digest", "t-serve", "--json", "--k", "4", "--max-bullets", "2"], capsys)
    digest = json.loads(out)
    assert code == 0 and len(digest["bullets"]) == 2 and len(digest["highlights"]) == 4
    for h in digest["highlights"]:
        post = sample_thread().post(h["post_id"])
        assert post is not None and post.text[h["start"] : h["end"]] == h["text"]

    code, out, _ = run_captured(["highlights", "t-serve", "--q", "glass aroma", "--k", "1", "--json"], capsys)
    assert code == 0 and json.loads(out)[0]["post_id"] == "p4"
    code, out, _ = run_captured(["highlights", "t-serve", "--scorer", "heuristic", "--json"], capsys)
    assert code == 0 and len(json.loads(out)) == 5
    code, _, err = run_captured(["highlights", "t-serve", "--scorer", "magic"], capsys)
    assert (
        code == 2
        and "'magic' is not one of 'auto', 'heuristic', 'learned_v1', 'learned_v2'" in err
        and "Traceback" not in err
    )


def test_a_query_is_text_whatever_character_it_starts_with(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `--q` was read as JSON when it looked like JSON (its type is a constrained str): "[glass] aroma" was
    # refused as "not valid JSON", and a blank query (no query, as the API takes it) too
    path = tmp_path / "thread.json"
    path.write_text(json.dumps(sample_thread().model_dump(mode="json")))
    assert run_captured(["ingest", str(path)], capsys)[0] == 0
    code, out, err = run_captured(
        ["highlights", "t-serve", "--q", "[glass] aroma", "--k", "1", "--json"], capsys
    )
    assert code == 0 and json.loads(out)[0]["post_id"] == "p4", err
    _, unqueried, _ = run_captured(["highlights", "t-serve", "--json"], capsys)
    for blank in ("", "  "):
        code, out, err = run_captured(["highlights", "t-serve", "--q", blank, "--json"], capsys)
        assert code == 0 and out == unqueried, err
    code, out, err = run_captured(["digest", "t-serve", "--q", "{aroma}", "--json", "--k", "2"], capsys)
    assert code == 0 and len(json.loads(out)["highlights"]) == 2, err


def test_ingesting_what_holds_no_threads_is_refused_before_a_run_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a binary file, a directory of no data files or records (a summarization data set) were refused by the
    # run's read: `ingest` and `digest FILE` each left a failed ingest run behind
    binary = tmp_path / "dump.bin"
    binary.write_bytes(bytes(range(128, 256)) * 4)
    empty = tmp_path / "empty"
    empty.mkdir()
    records = tmp_path / "pairs.jsonl"
    records.write_text(json.dumps({"document": "a long text", "summary": "short"}) + "\n")
    for path, said in (
        (binary, "not UTF-8 text and not a known format"),
        (empty, "the directory holds no data files"),
        (records, "format 'pairs' holds records, not threads"),
    ):
        for command in ("ingest", "digest"):
            code, _, err = run_captured([command, str(path)], capsys)
            assert code == 2 and said in err and len(err.strip().splitlines()) == 1, (command, err)
    assert open_registry().list() == []


def test_an_unknown_embedder_is_refused_before_an_ingest_run_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `ingest --embedder nosuch` was refused by the run's first embedding: a failed ingest run stayed behind
    path = tmp_path / "thread.json"
    path.write_text(json.dumps(sample_thread().model_dump(mode="json")))
    for name in ("nosuch", "./no/such/model"):
        code, _, err = run_captured(["ingest", "--embedder", name, str(path)], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert f"--embedder: {name!r} is neither a known embedder (minilm, minilm-onnx" in err, err
    assert open_registry().list() == []


def test_threads_are_listed_and_deleted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "thread.json"
    path.write_text(json.dumps(sample_thread().model_dump(mode="json")))
    assert run_captured(["ingest", str(path)], capsys)[0] == 0
    code, out, _ = run_captured(["threads", "list"], capsys)
    assert code == 0 and "t-serve" in out
    code, out, _ = run_captured(["threads", "list", "--q", "SERVE", "--json"], capsys)
    listed = [json.loads(line) for line in out.splitlines()]  # one object per line, as every listing
    assert code == 0 and [t["id"] for t in listed] == ["t-serve"] and listed[0]["posts"] == 4

    code, out, _ = run_captured(["threads", "delete", "t-serve"], capsys)
    assert code == 0 and "deleted thread t-serve" in out
    code, out, _ = run_captured(["threads", "list"], capsys)
    assert code == 0 and "no threads" in out
    code, _, err = run_captured(["threads", "delete", "t-serve"], capsys)
    assert code == 3 and "[not_found] thread 't-serve' is not in the store" in err and "Traceback" not in err
    code, _, err = run_captured(["highlights", "t-serve"], capsys)
    assert code == 3 and "not_found" in err
    code, out, _ = run_captured(["ingest", str(path)], capsys)  # ingested afresh
    assert code == 0 and "4 embedded" in out


def test_control_characters_of_a_thread_are_shown_not_sent_to_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a post's escape sequences reached the terminal as they were: ESC [2J cleared the screen, ESC ] 0;
    # set the window title, U+009B is a CSI of its own (rich strips only BEL, BS, VT, FF and CR)
    text = "Serve \x1b[2Jlagers cold in the summer.\tAles at \x9b31mcellar temperature, \x07twelve degrees."
    thread = {
        "id": "esc",
        "title": "Beer \x1b]0;pwned\x07temperatures",
        "posts": [{"id": "a", "number": 1, "text": text}],
    }
    path = tmp_path / "thread.json"
    path.write_text(json.dumps(thread))
    code, out, _ = run_captured(["digest", str(path), "-s", "extractive", "--k", "2"], capsys)
    assert code == 0 and "TL;DR of Beer ␛]0;pwned␇temperatures (extractive)" in out, out
    code, listed, _ = run_captured(["threads", "list"], capsys)
    assert code == 0
    code, shown, _ = run_captured(["highlights", "esc", "--k", "2"], capsys)
    assert code == 0
    for printed in (out, listed, shown):
        assert not {"\x1b", "\x9b", "\x07"} & set(printed), printed
    assert "Serve ␛[2Jlagers cold in the summer." in out and "Beer ␛]0;pwned␇temperatures" in listed
    spans = re.findall(r"chars (\d+)-(\d+)\n    (.*)\n", shown)
    assert len(spans) == 2, shown
    for start, end, sentence in spans:  # symbol for symbol: the printed span still counts what is shown
        assert len(sentence) == int(end) - int(start) and text[int(start)] == sentence[0], (sentence, text)


def test_cli_errors_are_messages_not_tracebacks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_captured(["digest", "no-such-thread"], capsys)
    assert code == 3 and "not_found" in err and "Traceback" not in err
    code, _, err = run_captured(["ingest", str(tmp_path / "missing.json")], capsys)
    assert code == 3 and "no such file" in err
    code, _, err = run_captured(["digest", "x", "--summarizer", "magic"], capsys)
    assert code == 2 and "unknown summarizer" in err
    code, _, err = run_captured(["digest", "x", "--param", "oops"], capsys)
    assert code == 2 and "key=value" in err


def test_digest_of_a_missing_file_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # an argument written as a path is a file nobody has, not a thread id: say so (a not-found exit, 3)
    for target in ("./nope.json", str(tmp_path / "nope"), "nope.jsonl"):
        code, _, err = run_captured(["digest", target], capsys)
        assert code == 3 and f"no such file: {target}" in err and "not in the store" not in err, err
    code, _, err = run_captured(["digest", "nope"], capsys)  # a plain name is still a thread id
    assert code == 3 and "thread 'nope' is not in the store" in err


def test_a_two_stage_tldr_is_printed_once(
    tmp_path: Path, tiny_t5_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a local model, the draft is shown while the model writes (live, on a terminal) and the final
    bullets replace it: printed, the TL;DR appears once, whether the model's bullets or the draft won."""
    path = tmp_path / "thread.json"
    path.write_text(json.dumps(sample_thread().model_dump(mode="json")))
    argv = [
        "digest",
        str(path),
        "-s",
        "two_stage",
        "-p",
        f"model_path={tiny_t5_dir}",
        "-p",
        "max_new_tokens=24",
    ]
    code, out, err = run_captured([*argv, "--no-cache"], capsys)
    assert code == 0, err
    tldr = out.split("\nhighlights\n")[0]
    bullets = [line for line in tldr.splitlines() if line.startswith(" • ")]
    assert bullets and len(bullets) == len(set(bullets)), (
        out
    )  # before: the draft, then the same bullets again
    code, out, _ = run_captured([*argv, "--no-cache", "--json"], capsys)
    assert len(json.loads(out)["bullets"]) == len(bullets)


def test_ingesting_an_unchanged_thread_again_says_so_instead_of_an_empty_sentences_bar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The second ingest has nothing to embed: its progress showed "sentences 0/? 0.0 sentences/s", which
    # reads like a stalled or broken step rather than "everything was already stored".
    path = tmp_path / "thread.json"
    path.write_text(json.dumps(sample_thread().model_dump(mode="json")))
    code, out, err = run_captured(["ingest", str(path)], capsys)
    assert code == 0 and "sentences/s" in err, out + err  # the first ingest embeds: sentences counted
    # the bars are on stderr: stdout holds the summary only (they went to rich's default console, stdout)
    assert "sentences/s" not in out and "━" not in out, out
    code, out, err = run_captured(["ingest", str(path)], capsys)
    shown = out + err
    assert code == 0 and "4 unchanged" in out, shown
    assert "0/?" not in shown and "sentences/s" not in shown, shown
    assert "nothing to embed (4 posts unchanged)" in err, shown


def test_a_boolean_for_a_numeric_summarizer_parameter_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tldrlab digest THREAD -s extractive -p max_chars=true` printed a TL;DR of one-character bullets
    ("B…"): the boolean was taken as 1."""
    path = tmp_path / "thread.json"
    path.write_text(json.dumps(sample_thread().model_dump(mode="json")))
    argv = ["digest", str(path), "-s", "extractive", "-p", "max_chars=true", "--no-cache"]
    code, out, err = run_captured(argv, capsys)
    assert code == 2 and "TL;DR" not in out and "Traceback" not in err, (code, out, err)
    assert err.strip().splitlines()[-1] == (
        "error [invalid_config] bad extractive summarizer parameter max_chars=True: expected a number, got "
        "the boolean true"
    )


def test_digest_of_a_thread_the_file_lacks_ingests_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `digest FILE --thread ID` ingested the whole file (a run, every thread stored) before saying that ID is
    # not in it
    path = tmp_path / "thread.json"
    path.write_text(json.dumps(sample_thread().model_dump(mode="json")))
    code, _, err = run_captured(["digest", str(path), "--thread", "nope"], capsys)
    assert code == 2 and "thread 'nope' is not in" in err, err
    code, out, err = run_captured(["runs", "list"], capsys)
    assert code == 0 and "ingest" not in out + err, out
    code, _, err = run_captured(["digest", "t-serve"], capsys)
    assert code == 3 and "not in the store" in err


def test_a_digests_header_names_the_version_digested_while_the_thread_is_reingested(
    store: SentenceStore,
    embedder: Embedder,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A re-ingest (another connection, `store`) commits right after `tldrlab digest` has read the thread's
    snapshot: the header's title and the TL;DR are both of the version read. Before, the header was a
    get_thread of its own after the digest's snapshot, so it named the new title over the old TL;DR."""
    thread = sample_thread()
    ingest_threads([thread], store, embedder)
    edited = thread.model_copy(
        update={
            "title": "Retitled since",
            "posts": [p.model_copy(update={"text": "Edited since. " + p.text}) for p in thread.posts],
        }
    )
    pending = [lambda: ingest_threads([edited], store, embedder)]
    read_snapshot = type(store).thread_snapshot

    def snapshot_then_reingest(reader: SentenceStore, thread_id: str) -> ThreadSnapshot:
        snapshot = read_snapshot(reader, thread_id)
        if reader is not store and pending:  # the CLI's store, not the writer's own reads
            pending.pop()()
        return snapshot

    monkeypatch.setattr(type(store), "thread_snapshot", snapshot_then_reingest)
    code, out, err = run_captured(["digest", thread.id, "-s", "extractive", "--no-cache"], capsys)
    assert code == 0 and not pending, err  # the re-ingest committed while the CLI digested
    assert store.get_thread(thread.id).title == "Retitled since"
    assert f"TL;DR of {thread.title} (extractive)" in out, out
    assert "Retitled since" not in out and "Edited since" not in out, out


def test_a_key_sentence_added_after_the_models_bullets_is_printed_as_a_quote() -> None:
    from rich.console import Console

    from tldrlab.cli.digest import _bullet_lines
    from tldrlab.digest.summarizers import Bullet

    bullets = [
        Bullet(text="Ales go warmer", citations=["p:0"], support=0.9, supported=True),
        Bullet(text="Lagers are served cold.", citations=["p:1"], from_draft=True),
    ]
    console = Console(width=200, color_system=None)
    with console.capture() as captured:
        for line in _bullet_lines(bullets, {"p:0": 1, "p:1": 2}):
            console.print(line, highlight=False)
    assert captured.get().splitlines() == [
        " • Ales go warmer [1]",
        " • \u201cLagers are served cold.\u201d [2] (key sentence)",
    ]
