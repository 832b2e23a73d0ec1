"""Every command example in README.md and docs/*.md works, so the docs cannot rot.

Each `tldrlab ...` (and `make ...`) line of a fenced code block, and each `Example: tldrlab ...` line of the
generated docs/cli.md, is

1. parsed by the real command line (the command exists, every option exists, every value converts), and
2. run at tiny size, each its own test case, in one home per test process: the commands really do what the
   docs say they do. The working directory holds tiny copies of the data sets at the paths the docs use
   (`../shared/data/...`), and the files the examples name (`thread.json`, `news.csv`, `job.yaml` from
   docs/training.md, ...); sizes are clamped (`--max-steps 2`, ...); placeholders (`RUN`, `<run>`,
   `CORPUS...`) become the runs the docs' earlier examples made (run first in that home when not run yet).

Beyond the examples, every command line a page *mentions* (inline code in the prose and tables, the
`[optional]` parts of fenced lines) names commands and options the command line has, and so does every
`--option` the prose names on its own; every `TLDRLAB_*` setting and every `tldrlab.module.name` a page names
exists; every relative link between the docs resolves (file and heading); every API route a page names
(`GET /runs/{id}/eval`) is a route of the app.

Examples that cannot run here (hours of training, services, an external endpoint, a multi-process launch) are
listed in NOT_RUN with the reason and the test that runs their tiny equivalent; they are still parsed. A new
example that is neither runnable nor listed fails the test.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer

from cliutil import run_captured
from tldrlab.cli.main import app
from tldrlab.runs import open_registry

REPO = Path(__file__).resolve().parents[1]
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

NOT_RUN: list[tuple[str, str, str]] = [
    # (doc file, regex on the command, why it is not run here)
    (
        r"docs/models.md",
        r"^tokenizer show my-smol\b",
        "needs a model installed under that name (tldrlab models import): "
        "tests/tokenizers/test_tokenizer_cli.py imports a tiny Llama into the store and shows it by name",
    ),
    ("README.md", r"^make test", "the whole suite, of which this test is a part"),
    (
        r".*",
        r"^(serve|worker|discord-bot)\b",
        "a long-running service: tests/service start `serve` and "
        "workers for real (test_serve_cli.py, test_worker_*.py); the bot needs a Discord token",
    ),
    (
        r"docs/digest.md",
        r"-s (openai|two_stage)\b",
        "needs an OpenAI-compatible endpoint: "
        "tests/digest/test_summarizers.py runs both against a real local streaming server",
    ),
    (
        r"docs/scale-out.md",
        r"^train .*(--config job.yaml|--model (t5|gpt2))",
        "a multi-process launch "
        "(torchrun / accelerate) on many GPUs: tests/train/test_distributed.py runs two CPU processes",
    ),
    (
        r"docs/scale-out.md",
        r"^train .*--model char_lstm",
        "torchrun with two processes: tests/train/test_distributed.py runs exactly this",
    ),
    (
        r"docs/lvm.md",
        r".*",
        "the LVM pipeline on Wikipedia (hours of CPU): tests/lvm/test_cli_pipeline.py "
        "runs ingest, index, sequences, train, evaluate, decode and generate at tiny size",
    ),
    (
        r"docs/elm.md",
        r".*",
        "the ELM on Debian descriptions (tens of minutes): tests/elm run prepare, "
        "train, generate, evaluate, optimize and compare at tiny size",
    ),
    (
        r"docs/dendrites.md",
        r".*",
        "the three-arm experiment (hours): tests/experiments/"
        "test_dendrite_experiment.py and tests/test_console.py run it at tiny size",
    ),
    (
        r"docs/sweeps.md",
        r"^sweep (run|status|best|export)\b",
        "six T5 trials (minutes): tests/sweep/"
        "test_runner.py and test_cli.py run sweeps, status, best and export at tiny size",
    ),
    (r"docs/sweeps.md", r"^runs list --limit 20", "lists the sweep's trial runs above (not run here)"),
    (
        r"docs/digest.md",
        r"^train-highlight-scorer\b",
        "trains the highlight scorer on SciTLDR, the beer dump and QMSum (long): "
        "tests/digest/test_highlight_scorer.py launches the same run kind at tiny size",
    ),
    (
        r"docs/digest.md",
        r"^train-highlight-reranker\b",
        "LoRA-tunes MiniLM on QMSum train (13 CPU-min): "
        "tests/digest/test_highlight_reranker.py launches the same run kind at tiny size",
    ),
    (
        r"docs/models.md",
        r"^models import",
        "writes a 540 MB model (or needs a user's GGUF file): "
        "tests/models/test_causal_lm.py runs `models import` on a tiny GGUF the test writes, "
        "tests/models/test_bundled_smollm2.py converts the bundled one",
    ),
    (
        r"docs/models.md",
        r"^train --model causal_lm",
        "fine-tunes the 135M-parameter SmolLM2: tests/train/test_chat_sft.py runs the same task at tiny size",
    ),
    (
        r"docs/models.md",
        r"^eval smollm2\b",
        "evaluates the real 135M-parameter SmolLM2 (minutes): tests/models/test_bundled_smollm2.py "
        "loads and runs it, tests/train/test_chat_sft.py evaluates a tiny chat LM the same way",
    ),
    (
        r"docs/training.md",
        r"^train --resume",
        "needs a run stopped by Ctrl-C: tests/train/test_jobs.py::"
        "test_cli_ctrl_c_checkpoints_cancels_and_resume_finishes interrupts one and resumes it",
    ),
    (r"docs/cli.md", r".*", "the --help examples: parsed here; the commands run in the docs above"),
    (
        r"docs/benchmarks.md",
        r"^make bench",
        "every benchmark's quick mode (minutes of CPU): tests/test_bench_scripts.py runs bench/run_all.py",
    ),
]

# option -> value (or function of the value) for a tiny run
CLAMPS: dict[str, Any] = {
    "--max-steps": "2",
    "--warmup-steps": "0",
    "--train.max-steps": "2",
    "--eval-every": "1",
    "--checkpoint-every": "1",
    "--max-samples": "3",
    "--max-minutes": "1",
    "--batch-size": lambda v: str(min(int(v), 4)),
    "--vocab-size": lambda v: str(min(int(v), 400)),
    "--generate-every": "1",
}


@dataclass(frozen=True)
class Example:
    file: str
    line: int
    text: str
    argv: tuple[str, ...]
    """After `tldrlab` (or `make` then its target)."""
    make: bool = False

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.text}"


def _expand(line: str, variables: dict[str, str]) -> str:
    return re.sub(r"\$(\w+)|\$\{(\w+)\}", lambda m: variables.get(m[1] or m[2], m[0]), line)


def _argv(command: str, *, optional: bool = False) -> tuple[list[str], bool] | None:
    """The tldrlab arguments of a shell command line (None: not a tldrlab / make command); `[optional]`
    parts are left out, or with `optional` kept (their brackets dropped)."""
    if optional:
        command = command.replace("[", " ").replace("]", " ")
    else:  # optional parts: left out
        command = re.sub(r"\[[^\[\]]*\]", " ", re.sub(r"\[[^\[\]]*\]", " ", command))
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        return None
    while words and (re.match(r"^\w+=", words[0]) or words[0] in ("nohup", "$", "env", "time")):
        words.pop(0)
    if words[:1] == ["nice"]:
        words = words[3:] if words[1:2] == ["-n"] else words[1:]
    if "-m" in words and words[words.index("-m") + 1 : words.index("-m") + 2] == ["tldrlab"]:
        return words[words.index("-m") + 2 :], False  # torchrun / accelerate launch -m tldrlab ...
    if not words:
        return None
    if words[0].endswith("tldrlab") and "/" not in words[0].replace(".venv/bin/", ""):
        return words[1:], False
    if words[0] == "make" and len(words) > 1:
        return words[1:2], True
    return None


def doc_examples() -> list[Example]:
    found: list[Example] = []
    for path in DOC_FILES:
        name = str(path.relative_to(REPO))
        lines = path.read_text(encoding="utf-8").splitlines()
        in_block, variables, number = False, {}, 0
        while number < len(lines):
            line, start = lines[number], number + 1
            number += 1
            if line.strip().startswith("```"):
                in_block, variables = not in_block, {}
                continue
            if not in_block:
                if match := re.match(r"^(?:.*\. )?Example: (tldrlab .*)$", line):
                    parsed = _argv(match[1])
                    if parsed:
                        found.append(Example(name, start, match[1], tuple(parsed[0])))
                continue
            while line.rstrip().endswith("\\") and number < len(lines):
                line = line.rstrip()[:-1] + " " + lines[number].strip()
                number += 1
            text = line.strip().removeprefix("$ ")
            if assignment := re.match(r"^(\w+)=\"?([^\"]*)\"?$", text):
                variables[assignment[1]] = assignment[2]
                continue
            if loop := re.match(r"^for (\w+) in ([^;]+); do (.*); done$", text):
                variables[loop[1]] = loop[2].split()[0]
                text = loop[3]
            parsed = _argv(_expand(text, variables))
            if parsed:
                found.append(Example(name, start, text, tuple(parsed[0]), make=parsed[1]))
    return found


EXAMPLES = doc_examples()


def doc_command_mentions() -> list[Example]:
    """Every tldrlab command line the docs name, not only the examples run: fenced lines with their
    `[optional]` parts, and inline code in the prose (`tldrlab runs show RUN`, `tldrlab elm prepare|train`,
    table cells), partial as such mentions are (placeholders, `...`, options shown without values)."""
    found: list[Example] = []
    for path in DOC_FILES:
        name = str(path.relative_to(REPO))
        if name == "docs/cli.md":  # generated from the commands themselves
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        in_block, number = False, 0
        while number < len(lines):
            line, start = lines[number], number + 1
            number += 1
            if line.strip().startswith("```"):
                in_block = not in_block
                continue
            if in_block:
                while line.rstrip().endswith("\\") and number < len(lines):
                    line = line.rstrip()[:-1] + " " + lines[number].strip()
                    number += 1
                spans = [line.strip().removeprefix("$ ")]
            else:
                spans = re.findall(r"`(tldrlab [^`]+)`", line)
            for span in spans:
                parsed = _argv(span, optional=True)
                if parsed and not parsed[1]:
                    found.append(Example(name, start, span, tuple(parsed[0])))
    return found


@functools.cache
def _cli() -> Any:
    return typer.main.get_command(app)


def unknown_names(argv: list[str]) -> list[str]:
    """The commands and options of `argv` the real command line does not have. Only names are checked, so a
    partial mention passes: the command path is followed while words name subcommands (`a|b` alternatives
    each checked, then the walk stops), and every `--option` / `-o` must be one of the command reached."""
    command: Any = _cli()
    path, unknown = ["tldrlab"], []
    for word in argv:
        if re.match(r"^--?[A-Za-z]", word):
            option = word.split("=", 1)[0]
            known = {name for param in command.params for name in (*param.opts, *param.secondary_opts)}
            if option not in known | {"--help"}:
                unknown.append(f"option {option} of {' '.join(path)}")
        elif hasattr(command, "get_command"):
            names = word.split("|")
            found = [command.get_command(None, name) for name in names]
            unknown += [
                f"command {name} of {' '.join(path)}"
                for name, sub in zip(names, found, strict=True)
                if sub is None and re.fullmatch(r"[a-z][a-z0-9-]*", name)
            ]
            if len(names) > 1 or found[0] is None:  # alternatives, or a placeholder (`<command>`, `...`)
                break
            command, path = found[0], [*path, word]
    return unknown


MENTIONS = doc_command_mentions()


def not_run_reason(example: Example) -> str | None:
    command = " ".join(example.argv) if not example.make else "make " + " ".join(example.argv)
    for file, pattern, reason in NOT_RUN:
        if re.fullmatch(file, example.file) and re.search(pattern, command):
            return reason
    return None


def parse(argv: list[str]) -> None:
    """Parse like the real command line, without running anything (raises on a bad command or option)."""
    command = _cli()  # parsing leaves the command as it was: one for every example (~11 ms each, traced)
    ctx = command.make_context("tldrlab", list(argv))
    group: Any = command
    while True:
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        if not hasattr(group, "resolve_command") or not rest:
            return
        name, group, rest = group.resolve_command(ctx, rest)
        ctx = group.make_context(name, rest, parent=ctx)


def test_the_docs_have_examples_to_check() -> None:
    files = {e.file for e in EXAMPLES}
    assert {"README.md", "docs/digest.md", "docs/training.md", "docs/models.md", "docs/cli.md"} <= files
    assert len(EXAMPLES) > 80


def test_every_test_a_not_run_reason_names_exists() -> None:
    """A skipped example points at the test that covers it instead; that pointer must not go stale."""
    named = {path for _, _, reason in NOT_RUN for path in re.findall(r"tests/[\w/]+\.py", reason)}
    assert named, "NOT_RUN reasons name the tests that run the tiny equivalents"
    assert sorted(p for p in named if not (REPO / p).is_file()) == []


@pytest.mark.parametrize("example", [e for e in EXAMPLES if not e.make], ids=str)
def test_every_example_parses(example: Example) -> None:
    argv = [a for a in example.argv if a not in ("...", "RUN ...")]
    parse(argv)


def test_every_command_the_docs_mention_exists_with_its_options() -> None:
    """A renamed command or option fails here wherever a page names it, prose and `[optional]` parts too."""
    assert len(MENTIONS) > len([e for e in EXAMPLES if e.file != "docs/cli.md"])
    assert any(e.text.startswith("tldrlab ") and e.file == "README.md" for e in MENTIONS)
    stale = [f"{mention}: no {name}" for mention in MENTIONS for name in unknown_names(list(mention.argv))]
    assert stale == []


def test_unknown_names_finds_a_renamed_option_or_command() -> None:
    assert unknown_names(["runs", "list", "--kind", "train", "--json"]) == []
    assert unknown_names(["elm", "prepare|train|evaluate|optimize"]) == []
    assert unknown_names(["--threads", "N", "<command>"]) == []
    assert unknown_names(["runs", "shwo", "RUN"]) == ["command shwo of tldrlab runs"]
    assert unknown_names(["lvm", "ingest|indx"]) == ["command indx of tldrlab lvm"]
    assert unknown_names(["eval", "RUN", "--max-sample", "3"]) == ["option --max-sample of tldrlab eval"]


OTHER_TOOLS_OPTIONS = {
    "--no-deps": "pip's (README.md: how perforatedai is installed)",
    "--check": "ruff format's",
    "--master_port": "torchrun's",
    "--nproc_per_node": "torchrun's",
    "--x": "docs/extending.md: how a boolean field's option is spelled (`--x/--no-x`)",
    "--no-x": "docs/extending.md: the same",
    "--yes": "docs/extending.md: a boolean alias's pair (`--yes/--no`)",
    "--no": "docs/extending.md: the same",
    "--flag": "docs/sweeps.md: W&B's `${args_no_boolean_flags}` macro",
}
"""Options the prose names that belong to other tools, or stand for any option."""


def test_every_option_the_prose_names_exists() -> None:
    """An `--option` in the prose (`--stop-on-eos false`, `--freeze-lm`) is one of some tldrlab command, of
    a bench script (its `add_argument`s), or of another tool listed above: a renamed option leaves none
    behind."""
    names = {"--help"}

    def collect(command: Any) -> None:
        names.update(name for param in command.params for name in (*param.opts, *param.secondary_opts))
        for sub in getattr(command, "commands", {}).values():
            collect(sub)

    collect(_cli())
    for script in (REPO / "bench").glob("*.py"):
        names.update(re.findall(r"add_argument\(\s*\"(--[\w-]+)\"", script.read_text(encoding="utf-8")))
    unknown = []
    for path in DOC_FILES:
        if path.name == "cli.md":
            continue
        text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
        for span in re.findall(r"`[^`\n]+`", text):
            for option in re.findall(r"(?<![\w-])--[a-z][\w.-]*[\w]", span):
                if option.replace("_", "-") not in names and option not in OTHER_TOOLS_OPTIONS:
                    unknown.append(f"{path.relative_to(REPO)}: {option} (in {span})")
    assert unknown == []


def test_every_setting_the_docs_name_exists() -> None:
    """`TLDRLAB_X` in a page is a field of the settings (`TLDRLAB_RETENTION__KEEP_BEST`: a nested one; the
    notifiers' own settings too) or an environment variable the code reads by that name
    (`TLDRLAB_OPENAI_BASE_URL`)."""
    from tldrlab.config import Settings
    from tldrlab.service.notify.base import NotifySettings

    source = "\n".join(path.read_text(encoding="utf-8") for path in (REPO / "src" / "tldrlab").rglob("*.py"))
    unknown = set()
    for path in DOC_FILES:
        for variable in set(re.findall(r"\bTLDRLAB_[A-Z0-9_]*[A-Z0-9]", path.read_text(encoding="utf-8"))):
            field, _, nested = variable.removeprefix("TLDRLAB_").lower().partition("__")
            section = Settings.model_fields.get(field) or NotifySettings.model_fields.get(field)
            if section is not None and (
                not nested or nested in getattr(section.annotation, "model_fields", {})
            ):
                continue
            if f'"{variable}"' not in source and f"'{variable}'" not in source:
                unknown.add(f"{path.relative_to(REPO)}: {variable}")
    assert sorted(unknown) == []


NOT_CODE = {
    "tldrlab.toml": "the settings file",
    "tldrlab.cleanup": "the retention logger's name",
    "tldrlab.experiment": "a sweep program's name (docs/sweeps.md)",
}


def _defines(module: Path, name: str) -> bool:
    """Whether a module's source defines or imports `name` at its top level (read, not imported: cheap)."""
    source = module.read_text(encoding="utf-8")
    return bool(
        re.search(rf"^(?:async def|def|class) {name}\b|^{name}\b *[:=]", source, re.M)
        or re.search(rf"^(?:from [\w.]+ )?import \(?[^)]*?\b{name}\b", source, re.M | re.S)
    )


def test_every_code_name_the_docs_give_exists() -> None:
    """`tldrlab.train.jobs.train_job`, `tldrlab.kinds.KINDS`, `from tldrlab.models import build_model`: each
    module a page names is a module of the package, and the name after it is defined (or imported) there."""
    src = REPO / "src"
    named = set()
    for path in DOC_FILES:
        if path.name in ("cli.md", "config.md"):  # generated from the code
            continue
        text = path.read_text(encoding="utf-8")
        named |= {(path, ref) for ref in re.findall(r"`(tldrlab(?:\.\w+)+)(?:\([^`]*\))?`", text)}
        named |= {(path, f"{m}.{a}") for m, a in re.findall(r"`(tldrlab(?:\.\w+)+):(\w+)`", text)}
        for module, names in re.findall(r"^ *from (tldrlab[\w.]*) import ([\w, ]+)$", text, re.M):
            named |= {(path, f"{module}.{name.strip()}") for name in names.split(",")}
    assert len(named) > 50
    missing = []
    for path, ref in sorted(named):
        if ref in NOT_CODE:
            continue
        parts = ref.split(".")
        for cut in range(len(parts), 0, -1):
            base = src.joinpath(*parts[:cut])
            module = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
            if module.is_file():
                break
        else:
            missing.append(f"{path.relative_to(REPO)}: {ref}: no such module")
            continue
        if cut < len(parts) and not _defines(module, parts[cut]):
            missing.append(
                f"{path.relative_to(REPO)}: {ref}: {parts[cut]} is not in {module.relative_to(src)}"
            )
    assert missing == []


def _heading_anchors(path: Path) -> set[str]:
    """The anchors of a page's headings, as GitHub makes them (lower case, punctuation dropped, spaces
    to -)."""
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    headings = re.findall(r"^#+ +(.*?) *$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_links_between_the_docs_resolve() -> None:
    """Every relative link of README.md and docs/*.md names a file of the repository, and its #anchor a
    heading of that page."""
    broken = []
    for path in DOC_FILES:
        text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            linked = (path.parent / file).resolve() if file else path
            if not linked.exists():
                broken.append(f"{path.relative_to(REPO)}: {target}: no such file")
            elif anchor and linked.suffix == ".md" and anchor not in _heading_anchors(linked):
                broken.append(f"{path.relative_to(REPO)}: {target}: no such heading")
    assert broken == []


def test_every_api_route_the_docs_name_exists() -> None:
    """`GET /runs/{id}/eval`, `POST /datasets`, ...: each method and path a page names is a route of the
    app."""
    from tldrlab.service.app import create_app

    def routes(entries: list[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
        for route in entries:
            if hasattr(route, "original_router"):  # an included router
                yield from routes(route.original_router.routes, prefix + route.include_context.prefix)
            else:
                yield from ((method, prefix + route.path) for method in getattr(route, "methods", None) or ())

    patterns = [
        (
            method,
            re.compile(
                "^"
                + re.sub(r"\\\{[^}]*?(:path)?\\\}", lambda m: ".+" if m[1] else "[^/]+", re.escape(path))
                + "$"
            ),
        )
        for method, path in routes(create_app().routes)
    ]
    named = {
        (f"{path.relative_to(REPO)}", method, route)
        for path in DOC_FILES
        for method, route in re.findall(
            r"\b(GET|POST|PUT|DELETE|PATCH|HEAD) (/[^\s`),;?]*)", path.read_text(encoding="utf-8")
        )
    }
    assert len(named) > 30
    missing = [
        f"{file}: {method} {route}"
        for file, method, route in sorted(named)
        if not any(
            m == method and p.match(re.sub(r"\{[^}]*\}", "x", route.rstrip(".:"))) for m, p in patterns
        )
    ]
    assert missing == []


# -- running them ----------------------------------------------------------------------------------------
def _tiny_shared_data(root: Path, shared: Path) -> None:
    """Tiny copies of the data sets at the paths the docs use."""
    data = root / "shared" / "data"
    (data / "tinyshakespeare").mkdir(parents=True)
    text = (shared / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    (data / "tinyshakespeare" / "input.txt").write_text(text[:20_000], encoding="utf-8")
    (data / "debian_descriptions").mkdir()
    for split, n in (("train", 60), ("validation", 16)):
        name = f"debian_descriptions.{split}.jsonl"
        rows = (shared / "debian_descriptions" / name).read_text(encoding="utf-8").splitlines(keepends=True)
        (data / "debian_descriptions" / name).write_text("".join(rows[:n]), encoding="utf-8")
    (data / "stackexchange_beer").mkdir()
    keep = {"1", "2", "3", "5", "8"}  # a few questions (thread 5 is the docs' example) and their answers
    rows = []
    for row in (shared / "stackexchange_beer" / "Posts.xml").read_text(encoding="utf-8-sig").splitlines():
        ids = re.findall(r' (?:Id|ParentId)="(\d+)"', row)
        if not row.lstrip().startswith("<row") or set(ids) & keep:
            rows.append(row)
    (data / "stackexchange_beer" / "Posts.xml").write_text("\n".join(rows) + "\n", encoding="utf-8")


def _example_files(cwd: Path, shared: Path) -> None:
    """The files the examples name, made the way a reader would."""
    from tldrlab.samples import sample_path

    (cwd / "thread.json").write_text(sample_path("beer_thread").read_text(encoding="utf-8"))
    text = (shared / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:20_000]
    for name in ("input.txt", "corpus.txt"):
        (cwd / name).write_text(text, encoding="utf-8")
    (cwd / "news.csv").write_text(
        "text,headline\nHops were added late to keep the aroma.,Late hops\n"
        "The stout was aged in oak for a year.,Oak-aged stout\n"
    )
    training = (REPO / "docs" / "training.md").read_text(encoding="utf-8")
    job = re.search(r"```yaml\n(model: .*?)```", training, re.S)
    assert job, "docs/training.md lost its job.yaml example"
    tiny = {"vocab_size": 300, "n_positions": 64, "block_size": 64, "max_steps": 2, "batch_size": 4}
    tiny |= {"warmup_steps": 0, "eval_every": 1, "checkpoint_every": 1, "grad_accum_steps": 1}
    yaml_text = job[1].replace("path: corpus.txt", f"path: {cwd / 'corpus.txt'}")
    for key, value in tiny.items():
        yaml_text = re.sub(rf"\b{key}: \d+", f"{key}: {value}", yaml_text)
    (cwd / "job.yaml").write_text(yaml_text)


def _tiny(argv: list[str], runs: dict[str, str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word in CLAMPS and i + 1 < len(argv):
            clamp = CLAMPS[word]
            out += [word, clamp(argv[i + 1]) if callable(clamp) else clamp]
            i += 2
            continue
        if "<run>" in word:
            word = word.replace("<run>", runs["seq2seq"])
        if word in ("RUN", "train-20260101", "train-20261121-064113-3a242f"):
            word = runs["seq2seq"] if word != "train-20261121-064113-3a242f" else runs["first_train"]
        elif word == "tokenizer-2026":
            word = runs["tokenizer"]
        elif word == "CORPUS...":
            word = "corpus.txt"
        out.append(word)
        i += 1
    return out


RUN_ORDER = [
    "docs/training.md",
    "docs/models.md",
    "docs/scale-out.md",
    "docs/formats.md",
    "docs/digest.md",
    "docs/sweeps.md",
    "docs/service.md",
    "README.md",
]
RUNNABLE = [e for file in RUN_ORDER for e in EXAMPLES if e.file == file and not_run_reason(e) is None]


def _example_id(example: Example) -> str:
    return f"{example.file}:{example.line}"


def _producer(file: str, test: Any, *, last: bool = False) -> Example:
    found = [e for e in RUNNABLE if e.file == file and test(e.argv)]
    assert found, f"{file} lost the example whose run the later examples use"
    return found[-1] if last else found[0]


# What a placeholder stands for, and the example that makes it: the run the examples met when they all ran in
# document order in one home (the newest completed T5 training of docs/training.md, the first tokenizer run of
# docs/models.md), and the beer dump ingested before any `digest` / `highlights` of thread 5 (or of a file).
SEQ2SEQ = _producer(
    "docs/training.md",
    lambda argv: argv[:1] == ("train",) and "t5" in argv and "--config" not in argv,
    last=True,
)
TOKENIZER = _producer("docs/models.md", lambda argv: argv[:2] == ("tokenizer", "train"))
INGEST = _producer("docs/digest.md", lambda argv: argv[:1] == ("ingest",))


def _needs(example: Example) -> list[tuple[str, Example]]:
    words = set(example.argv)
    needs = []
    if words & {"RUN", "train-20260101"} or any("<run>" in word for word in example.argv):
        needs.append(("seq2seq", SEQ2SEQ))
    if "tokenizer-2026" in words:
        needs.append(("tokenizer", TOKENIZER))
    if example.argv[:1] in (("digest",), ("highlights",)):
        needs.append(("ingest", INGEST))
    return needs


@dataclass
class ExampleHome:
    """One home and working directory for the examples a worker process runs, and what they made there."""

    root: Path
    runs: dict[str, str]
    """placeholder -> the run id standing for it"""
    made: dict[Example, list[tuple[str, str]]]
    """example -> the (kind, id) of each completed run it made (each example runs once here)"""


@pytest.fixture(scope="session")
def example_home(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> ExampleHome:
    root = tmp_path_factory.mktemp("doc-examples")
    _tiny_shared_data(root, shared_data)
    (root / "work").mkdir()
    _example_files(root / "work", shared_data)
    return ExampleHome(root, {}, {})


def _run_example(example: Example, home: ExampleHome, capsys: pytest.CaptureFixture[str]) -> None:
    """Run one example in the shared home (its placeholders made first), and check it worked."""
    for placeholder, producer in _needs(example):
        if producer not in home.made:
            _run_example(producer, home, capsys)
        if placeholder != "ingest":
            kind = "train" if placeholder == "seq2seq" else placeholder
            made = [run for made_kind, run in home.made[producer] if made_kind == kind]
            assert len(made) == 1, f"{producer}: made the completed {kind} runs {made}, expected one"
            home.runs[placeholder] = made[0]
    registry = open_registry()
    before = {run.id for run in registry.list(limit=None, with_config=False)}
    argv = ["demo"] if example.make and example.argv == ("demo",) else _tiny(list(example.argv), home.runs)
    code, out, err = run_captured(argv, capsys)
    assert code == 0, f"{example}\n  ran: tldrlab {shlex.join(argv)}\n{err[-3000:]}"
    assert out.strip() or err.strip(), f"{example}: printed nothing"
    after = registry.list(limit=None, with_config=False)
    home.made[example] = [
        (run.kind, run.id) for run in after if run.id not in before and run.status.value == "completed"
    ]


def test_every_runnable_example_has_its_place() -> None:
    unplaced = sorted({e.file for e in EXAMPLES if not_run_reason(e) is None} - set(RUN_ORDER))
    assert not unplaced, f"examples in {unplaced}: make them runnable here or list them in NOT_RUN"
    assert len(RUNNABLE) >= 30, [str(e) for e in RUNNABLE]


@pytest.mark.slow
# One worker runs them all (tests/conftest.py): spread over the workers, each worker trained the T5 run and
# ingested the beer dump the `RUN` and `digest 5` examples it got name, again in its own home.
@pytest.mark.xdist_group("doc-examples")
@pytest.mark.parametrize("example", RUNNABLE, ids=_example_id)
def test_every_runnable_example_runs_at_tiny_size(
    example: Example,
    example_home: ExampleHome,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each example its own case (xdist spreads them over the workers); the runs an example names are made
    first in the worker's home by the examples that make them in the docs."""
    from tldrlab.config import get_settings

    monkeypatch.setenv("TLDRLAB_HOME", str(example_home.root / "home"))
    get_settings.cache_clear()
    monkeypatch.chdir(example_home.root / "work")
    monkeypatch.setenv("COLUMNS", "100")
    _run_example(example, example_home, capsys)
