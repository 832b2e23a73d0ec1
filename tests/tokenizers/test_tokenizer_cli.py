"""`tldrlab tokenizer train | show` end to end, including the errors users see."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cliutil import run_captured, run_cli
from mountutil import unprivileged
from tinylm import save_tiny_model, tiny_chat_tokenizer, tiny_llama
from tldrlab.errors import InvalidInputError
from tldrlab.models.store import import_model
from tldrlab.runs import create_run, open_registry
from tldrlab.tokenizers import train_tokenizer


@pytest.fixture
def corpus(tmp_path: Path, shared_data: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text((shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:20_000])
    return path


def test_train_is_a_run_and_show_reads_it(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["tokenizer", "train", "--method", "bpe", "--vocab-size", "300", str(corpus)]) == 0
    (record,) = open_registry().list(kind="tokenizer")
    assert record.status.value == "completed"
    assert record.config["vocab_size"] == 300
    run_dir = Path(record.run_dir)
    assert (run_dir / "tokenizer" / "tokenizer_manifest.json").is_file()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert any(a["path"].endswith("tokenizer.json") for a in manifest["artifacts"])
    capsys.readouterr()

    assert run_cli(["tokenizer", "show", record.id, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["method"] == "bpe" and shown["stats"]["roundtrip_rate"] == 1.0

    assert run_cli(["tokenizer", "show", str(run_dir / "tokenizer"), "--text", "To be"]) == 0
    assert "tokens:" in capsys.readouterr().out
    assert run_cli(["tokenizer", "show", record.id, "--text", "To be", "--json"]) == 0
    tokens = json.loads(capsys.readouterr().out)["tokenized"]
    assert "".join(tokens["tokens"]) == "To be" and len(tokens["ids"]) == len(tokens["tokens"])


def test_train_to_an_explicit_out_dir(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "my-tokenizer"
    argv = ["tokenizer", "train", "--method", "sentencepiece", "--model-type", "bpe", "--vocab-size", "400"]
    assert run_cli([*argv, "--out", str(out), str(corpus)]) == 0
    assert (out / "tokenizer.model").is_file() and (out / "tokenizer.json").is_file()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--method", "wordpiece"], 2, "unknown tokenizer method 'wordpiece'"),
        (["--method", "bpe", "--vocab-size", "50"], 2, "too small for bpe"),
        (["--method", "sentencepiece", "--model-type", "word"], 2, "model-type"),
        (["--method", "bpe", "--holdout", "1.5"], 2, "holdout"),
        # another method's option was ignored, and the manifest recorded it as if applied
        (["--method", "bpe", "--normalization", "nfkc"], 2, "normalization is an option of sentencepiece"),
        (["--method", "char", "--model-type", "bpe"], 2, "model_type is an option of sentencepiece"),
        # no upper bound let SentencePiece fail inside the run (a traceback, a failed run) and the Rust
        # BPE trainer abort the whole process on a multi-terabyte allocation (not run here: it would)
        (["--method", "sentencepiece", "--vocab-size", "99999999999"], 2, "less than or equal to 1048576"),
        (["--method", "char", "--vocab-size", "1048577"], 2, "less than or equal to 1048576"),
    ],
)
def test_bad_options_exit_with_a_message(
    args: list[str], code: int, message: str, corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["tokenizer", "train", *args, str(corpus)]) == code
    err = capsys.readouterr().err
    assert message in err
    assert open_registry().list(kind="tokenizer") == []  # nothing half-done is left behind


def test_a_sentencepiece_vocabulary_too_small_for_the_corpus_is_one_line(
    corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        run_cli(["tokenizer", "train", "--method", "sentencepiece", "--vocab-size", "261", str(corpus)]) == 2
    )
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "invalid_config" in line]
    assert "Traceback" not in err
    assert len(lines) == 1 and "use vocab_size" in lines[0] and "trainer_interface" not in lines[0]


def test_missing_corpus_is_a_clean_error_from_the_real_command(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tldrlab", "tokenizer", "train", str(tmp_path / "missing.txt")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3
    assert "corpus file not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_file_that_is_not_a_tokenizer_is_named(corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # `tldrlab tokenizer show corpus.txt` (or train --tokenizer corpus.txt) said "no tokenizer.json in
    # <the file's directory>", naming a directory the user never gave
    assert run_cli(["tokenizer", "show", str(corpus)]) == 3
    err = " ".join(capsys.readouterr().err.split())
    assert f"{corpus} is not a tokenizer" in err, err


def test_a_directory_corpus_is_refused_before_a_run_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # refused inside the run before: exit 2, and a failed tokenizer run stayed behind
    assert run_cli(["tokenizer", "train", "--method", "char", "--vocab-size", "50", str(tmp_path)]) == 2
    assert "is a directory; pass the files inside it" in capsys.readouterr().err
    assert open_registry().list(kind="tokenizer") == []


def test_a_corrupt_tokenizer_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a torn tokenizer.json raised the tokenizers library's bare Exception, and a torn
    # tokenizer_manifest.json a JSONDecodeError: `tokenizer show` printed a traceback (exit 1) for both
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"line {i} of a small corpus, café 🙂" for i in range(200)), encoding="utf-8")
    out = tmp_path / "tok"
    args = ["tokenizer", "train", "--method", "bpe", "--vocab-size", "300", str(corpus), "--out", str(out)]
    assert run_cli(args) == 0
    capsys.readouterr()
    manifest = (out / "tokenizer_manifest.json").read_text(encoding="utf-8")
    (out / "tokenizer_manifest.json").write_text(manifest[: len(manifest) // 2], encoding="utf-8")
    assert run_cli(["tokenizer", "show", str(out)]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"cannot read the tokenizer manifest {out / 'tokenizer_manifest.json'}" in err, err
    (out / "tokenizer_manifest.json").write_text("[1, 2]", encoding="utf-8")
    assert run_cli(["tokenizer", "show", str(out)]) == 2
    assert "not a JSON object" in capsys.readouterr().err
    (out / "tokenizer_manifest.json").write_text(manifest, encoding="utf-8")
    tokenizer = (out / "tokenizer.json").read_text(encoding="utf-8")
    (out / "tokenizer.json").write_text(tokenizer[:100], encoding="utf-8")
    assert run_cli(["tokenizer", "show", str(out), "--text", "café"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"cannot load the tokenizer in {out}" in err and "Traceback" not in err, err


def test_an_out_path_that_is_a_file_is_refused_before_a_run_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `--out notes.txt` (an existing file) died inside the run with a FileExistsError traceback from mkdir,
    # leaving a failed tokenizer run behind
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"line {i} of a corpus" for i in range(50)), encoding="utf-8")
    notes = tmp_path / "notes.txt"
    notes.write_text("precious", encoding="utf-8")
    args = ["tokenizer", "train", "--method", "char", "--vocab-size", "50", str(corpus), "--out", str(notes)]
    assert run_cli(args) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"--out {notes} is a file; give a directory" in err and "Traceback" not in err, err
    assert open_registry().list(kind="tokenizer") == []
    assert notes.read_text(encoding="utf-8") == "precious"
    # a run the API queued meets it inside the run: the same one line there
    for out in (notes, notes / "below"):
        message = re.escape(f"cannot write the tokenizer to {out}: a file is in the way")
        with pytest.raises(InvalidInputError, match=message):
            train_tokenizer("char", [corpus], 50, out)


def test_a_corpus_file_of_no_known_format_gets_advice_the_command_can_follow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the readers' "cannot detect the format ...; pass a format" reached `tokenizer train`, which has no
    # format option: the advice led nowhere
    notes, fields = tmp_path / "notes.json", tmp_path / "rows.jsonl"
    notes.write_text("plain words, not JSON at all\nmore words\n", encoding="utf-8")
    fields.write_text('{"colour": "red"}\n{"colour": "blue"}\n', encoding="utf-8")
    for corpus, reason in [(notes, "no JSON object found"), (fields, "cannot detect the format from fields")]:
        args = ["tokenizer", "train", "--method", "char", "--vocab-size", "50", str(corpus)]
        assert run_cli(args) == 2
        err = " ".join(capsys.readouterr().err.split())
        assert reason in err and "pass a format" not in err, err
        assert "a plain-text corpus file is read line by line when named .txt" in err, err
    assert open_registry().list(kind="tokenizer") == []


def test_an_empty_corpus_is_refused_before_a_run_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # refused inside the run before: the same message, but a failed tokenizer run stayed behind
    empty, blank = tmp_path / "empty.txt", tmp_path / "blank.txt"
    empty.write_text("", encoding="utf-8")
    blank.write_text("", encoding="utf-8")
    args = ["tokenizer", "train", "--method", "char", "--vocab-size", "50", str(empty), str(blank)]
    assert run_cli(args) == 2
    assert f"the corpus has no text: {empty}, {blank}" in " ".join(capsys.readouterr().err.split())
    assert open_registry().list(kind="tokenizer") == []


def test_show_of_a_tokenizer_without_a_manifest_gives_its_size_as_json_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a model directory's tokenizer (no tldrlab manifest) printed "N tokens" as text, but its --json held
    # only "dir": a script could not read the size the text showed
    tokenizer = tiny_chat_tokenizer()
    tokenizer.save_pretrained(str(tmp_path / "model"))
    assert run_cli(["tokenizer", "show", str(tmp_path / "model")]) == 0
    assert f"{len(tokenizer)} tokens (no tldrlab manifest)" in capsys.readouterr().out
    assert run_cli(["tokenizer", "show", str(tmp_path / "model"), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == {"dir": str(tmp_path / "model"), "actual_vocab_size": len(tokenizer)}


def test_show_gives_the_bytes_of_tokens_that_hold_part_of_a_character(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a byte-level BPE splits characters it has no token for into bytes, and each such token was shown
    # decoded on its own: '\ufffd' (�) for every piece of Arabic, Hebrew or an emoji, so the tokenization of
    # non-Latin text could not be read
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"line {i} of a small corpus" for i in range(100)), encoding="utf-8")
    out = tmp_path / "tok"
    args = ["tokenizer", "train", "--method", "bpe", "--vocab-size", "300", str(corpus), "--out", str(out)]
    assert run_cli(args) == 0
    capsys.readouterr()
    assert run_cli(["tokenizer", "show", str(out), "--text", "🍺 ok"]) == 0
    assert "tokens: '\\xf0' | '\\x9f'" in capsys.readouterr().out  # escaped once, as Python writes bytes
    assert run_cli(["tokenizer", "show", str(out), "--text", "שלום 🍺 ok", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["tokenized"]["tokens"]
    assert all("\ufffd" not in token for token in shown), shown
    assert "\\xf0\\x9f" in "".join(shown) and "ok" in "".join(shown), shown  # the emoji's leading bytes
    pieces = [re.split(r"\\x([0-9a-f]{2})", token) for token in shown]
    raw = b"".join(
        bytes([int(p, 16)]) if k % 2 else p.encode() for parts in pieces for k, p in enumerate(parts)
    )
    assert raw.decode("utf-8") == "שלום 🍺 ok"  # the pieces are the text's bytes, in order


def test_show_tokenizes_a_special_token_string_as_a_document_reads_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`show --text` showed "</s>" in the text as the eos token, which training and evaluation no longer
    make of a document's "</s>": it shows the text's own tokens."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"line {i} of a small corpus" for i in range(100)), encoding="utf-8")
    out = tmp_path / "tok"
    args = ["tokenizer", "train", "--method", "bpe", "--vocab-size", "300", str(corpus), "--out", str(out)]
    assert run_cli(args) == 0
    capsys.readouterr()
    assert run_cli(["tokenizer", "show", str(out), "--text", "a line</s> of<s>", "--json"]) == 0
    tokenized = json.loads(capsys.readouterr().out)["tokenized"]
    assert not {0, 1, 2, 3} & set(tokenized["ids"])  # <pad> <unk> <s> </s>
    assert "".join(tokenized["tokens"]) == "a line</s> of<s>"


def test_train_refuses_an_out_holding_a_tokenizer_unless_told_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `tokenizer train --out DIR` silently replaced the tokenizer DIR held (models trained with it then no
    # longer matched it). It is refused before a run exists, exit 4 and one line, unless --overwrite.
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"line {i} of a small corpus" for i in range(200)), encoding="utf-8")
    out = tmp_path / "tok"
    first = ["tokenizer", "train", "--method", "sentencepiece", "--vocab-size", "300", "--out", str(out)]
    assert run_cli([*first, str(corpus)]) == 0
    capsys.readouterr()
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {"tokenizer.json", "tokenizer.model", "tokenizer_manifest.json"} <= set(before)
    again = ["tokenizer", "train", "--method", "char", "--vocab-size", "50", "--out", str(out), str(corpus)]
    code = run_cli(again)
    err = capsys.readouterr().err
    assert code == 4 and err.startswith("error [conflict] ") and "--overwrite" in err, (code, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing touched
    assert len(open_registry().list(kind="tokenizer")) == 1  # and no run created
    # asked for explicitly, it is replaced, leaving no file of the old one; a new or empty --out needs nothing
    assert run_cli([*again, "--overwrite"]) == 0
    assert json.loads((out / "tokenizer_manifest.json").read_text())["method"] == "char"
    assert not (out / "tokenizer.model").exists()
    (tmp_path / "empty").mkdir()
    assert run_cli([*again[:-2], str(tmp_path / "empty"), str(corpus)]) == 0


def test_show_takes_an_installed_model_name(
    tldrlab_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tokenizer show NAME` of a model in the home's model store (as `models list` names it) shows that
    model's tokenizer, where it said "no tokenizer directory or run named"; directories, run ids and the
    ambiguity of a run id prefix are as before."""
    tokenizer = tiny_chat_tokenizer()
    source = save_tiny_model(tiny_llama(tokenizer), tokenizer, tmp_path / "tiny")
    installed = Path(import_model(source, name="tiny-chat")["path"])
    code, out, err = run_captured(["tokenizer", "show", "tiny-chat", "--text", "To be", "--json"], capsys)
    assert code == 0, err
    shown = json.loads(out)
    assert Path(shown["dir"]).resolve() == installed.resolve()
    assert shown["actual_vocab_size"] == len(tokenizer)
    assert shown["tokenized"]["ids"] == tokenizer("To be", add_special_tokens=False)["input_ids"]
    # its directory, as before
    code, out, err = run_captured(["tokenizer", "show", str(installed), "--json"], capsys)
    assert code == 0 and Path(json.loads(out)["dir"]).resolve() == installed.resolve(), err
    # a run id prefix two runs share is still refused as ambiguous, not taken for a model name
    for run_id in ("tokenizer-shared-a", "tokenizer-shared-b"):
        create_run("tokenizer", {"method": "bpe"}, run_id=run_id)
    code, _, err = run_captured(["tokenizer", "show", "tokenizer-shared"], capsys)
    assert code != 0 and "ambiguous (2 runs match: " in err and "Traceback" not in err, err
    code, _, err = run_captured(["tokenizer", "show", "no-such-model"], capsys)
    assert code != 0 and "no-such-model" in err and "Traceback" not in err, err


def test_a_corpus_of_forum_threads_is_refused_before_a_run_exists(
    shared_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a Stack Exchange Posts.xml holds threads, not records: the read inside the run refused it, and a failed
    # tokenizer run stayed behind
    posts = shared_data / "stackexchange_beer" / "Posts.xml"
    code, _, err = run_captured(
        ["tokenizer", "train", "--method", "char", "--vocab-size", "50", str(posts)], capsys
    )
    said = " ".join(err.split())
    assert code == 2 and "format 'stackexchange' holds threads, not records" in said, err
    assert open_registry().list(kind="tokenizer") == []


def test_show_takes_a_model_alias(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An alias works wherever a model is named, but `tokenizer show production` said "no tokenizer directory
    or run named 'production'"."""
    from tinylm import model_run
    from tldrlab.runs.aliases import promote

    tokenizer = tiny_chat_tokenizer()
    run = model_run(lambda d: save_tiny_model(tiny_llama(tokenizer), tokenizer, d))
    promote(run.id, "production")
    code, out, err = run_captured(["tokenizer", "show", "production", "--json"], capsys)
    assert code == 0, err
    assert Path(json.loads(out)["dir"]).resolve() == (Path(run.run_dir) / "model").resolve()
    assert json.loads(out)["actual_vocab_size"] == len(tokenizer)


def test_a_corpus_file_named_twice_is_refused_before_a_run_exists(
    corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tokenizer train a.txt ./a.txt` read the file twice: the holdout held out copies of lines the tokenizer
    was trained on, and its stats measured text it had seen."""
    args = ["tokenizer", "train", "--method", "char", "--vocab-size", "60", str(corpus), str(corpus)]
    code, _, err = run_captured(args, capsys)
    assert code == 2 and f"corpus file {corpus} is given twice: name it once" in " ".join(err.split()), err
    assert open_registry().list(kind="tokenizer") == []
    other = corpus.parent / "sub" / ".." / corpus.name
    (corpus.parent / "sub").mkdir()
    with pytest.raises(InvalidInputError, match=r"is given twice \(also as "):
        train_tokenizer("char", [corpus, other], 60, corpus.parent / "tok")


def test_an_out_dir_the_command_cannot_write_is_refused_before_a_run_exists(
    corpus: Path, tmp_path: Path
) -> None:
    # `--out` under a directory the user may not write (another user's, a read-only mount) failed inside the
    # run: "run failed with an unexpected error" and a PermissionError traceback on the console, a failed
    # run left behind. Every kind's output paths (RunKind.outputs) are checked before the run is created
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        command = [sys.executable, "-m", "tldrlab", "tokenizer", "train", "--vocab-size", "300"]
        done = subprocess.run(
            unprivileged([*command, "--out", str(locked / "tok"), str(corpus)]),
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        locked.chmod(0o755)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    said = " ".join(done.stderr.split())
    assert (
        said == f"error [invalid_input] out_dir: cannot write {locked / 'tok'}: {locked} is not writable"
    ), said
    assert open_registry().list() == [] and not (locked / "tok").exists()


def test_the_report_says_which_lines_its_stats_were_measured_on(
    corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the stats (lines 30, tokens, coverage, ...) stood beside "corpus ... (609 lines)" with nothing saying
    # they were measured on the 5% of lines held out, or, with --holdout 0, on the very lines it trained on
    for holdout, said in [("0.05", "holdout: 30 lines kept out of training"), ("0", "the training lines")]:
        argv = ["tokenizer", "train", "--method", "char", "--vocab-size", "80", "--holdout", holdout]
        code, out, err = run_captured([*argv, str(corpus)], capsys)
        assert code == 0, err
        rows = {line.split("  ")[0]: line.split("  ", 1)[1].strip() for line in out.splitlines()[3:]}
        assert rows["measured on"] == said, out


def test_a_char_vocabulary_the_corpus_cannot_give_is_refused_before_a_run_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`tokenizer train --method char` on a corpus where no character occurs min_frequency times was refused
    once the run trained it, leaving a failed run: refused before a run exists now, the same one line."""
    once = tmp_path / "once.txt"
    once.write_text("abcdefghij\nklmnopqrst\n", encoding="utf-8")  # every character once
    args = ["tokenizer", "train", "--method", "char", "--out", str(tmp_path / "tok"), str(once)]
    assert run_cli(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no character of the corpus occurs min_frequency=2" in err
    assert "use min_frequency 1 or less" in err
    assert open_registry().list() == [] and not (tmp_path / "tok").exists()
    assert run_cli([*args[:-1], "--min-frequency", "1", str(once)]) == 0  # doing what it says


def test_show_of_a_hand_edited_manifest_shows_what_it_holds(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A manifest whose stats are not an object, or whose corpus entry lacks its lines and sha256, was a
    TypeError or KeyError traceback from `tokenizer show` (a manifest that is no JSON object is refused)."""
    out = tmp_path / "tok"
    train_tokenizer("bpe", [corpus], 300, out)
    manifest = json.loads((out / "tokenizer_manifest.json").read_text(encoding="utf-8"))
    edited = {**manifest, "stats": [1, 2], "corpus": [{"path": "elsewhere.txt"}, "other.txt"]}
    (out / "tokenizer_manifest.json").write_text(json.dumps(edited), encoding="utf-8")
    code, out_text, err = run_captured(["tokenizer", "show", str(out)], capsys)
    assert code == 0 and "Traceback" not in err, err
    assert "elsewhere.txt (? lines, sha256 ?)" in out_text and "other.txt (? lines" in out_text


def test_a_plain_text_corpus_that_is_not_utf8_is_refused_before_a_run_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A .txt corpus in UTF-16 (a Windows editor's "Unicode") was refused once its run read it, and a failed
    tokenizer run stayed behind."""
    corpus = tmp_path / "notes.txt"
    corpus.write_text("hello world\nfoo bar\n", encoding="utf-16")
    args = ["tokenizer", "train", "--method", "bpe", "--vocab-size", "300", str(corpus)]
    assert run_cli(args) == 2
    assert f"corpus file {corpus} is not UTF-8 text" in " ".join(capsys.readouterr().err.split())
    assert open_registry().list(kind="tokenizer") == []


def test_a_semicolon_csv_corpus_is_refused_before_a_run_exists_with_advice_that_works_here(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A semicolon CSV was refused once its run read it, a failed run left, telling to pass the reader
    option `-o delimiter=...`, which `tokenizer train` does not have."""
    corpus = tmp_path / "pairs.csv"
    corpus.write_text("document;summary\nthe cat sat on the mat;a cat\nthe dog ran;a dog\n", encoding="utf-8")
    args = ["tokenizer", "train", "--method", "bpe", "--vocab-size", "300", str(corpus)]
    assert run_cli(args) == 2
    said = " ".join(capsys.readouterr().err.split())
    assert f"{corpus}: the header is one column ('document;summary') holding ';'" in said
    assert "save it comma-separated, or tab-separated as a .tsv" in said and "-o delimiter" not in said
    assert open_registry().list(kind="tokenizer") == []
    corpus.write_text("document,summary\nthe cat sat on the mat,a cat\nthe dog ran,a dog\n", encoding="utf-8")
    assert run_cli(args) == 0  # a comma CSV corpus trains as before
