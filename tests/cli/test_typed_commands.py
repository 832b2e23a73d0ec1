"""Hand-written commands whose options are typed classes (`options.config_command`): their bounds and choices
are checked before anything runs, with a clear message and exit code 2, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest
import yaml

from cliutil import run_captured
from tldrlab.errors import NotFoundError
from tldrlab.models.gpt2 import GPT2ModelConfig
from tldrlab.models.t5 import T5ModelConfig
from tldrlab.runs import open_registry


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--log-level", "loud"], "'loud' is not one of 'critical', 'error', 'warning'"),
        (["serve", "--port", "70000"], "less than or equal to 65535"),
        (["highlights", "t", "--scorer", "magic"], "--scorer': 'magic' is not one of 'auto'"),
        (["serve", "--workers", "-1"], "greater than or equal to 0"),
        (["elm", "compare", "--data", "pairs.jsonl", "--minutes", "0"], "greater than 0"),
        # "data: Field required" named the field, not the option that gives it
        (["elm", "compare", "--minutes", "5"], "data: Field required (give --data)"),
        (["elm", "generate", "--text", "a"], "model: Field required (give --model)"),
        (["sweep", "export", "tiny-t5"], "out: Field required (give --out)"),
        (["elm", "generate", "--model", "m", "--text", "a", "--temperature", "-1"], "greater than or equal"),
        (["elm", "generate", "--model", "m", "--text", "a", "--limit", "0"], "greater than or equal to 1"),
    ],
)
def test_bad_values_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_captured(argv, capsys)
    assert code == 2 and message in " ".join(err.split()) and "Traceback" not in out + err
    # the choice's own words: typer showed pydantic's "Value error, 'loud' is not one of ..."
    assert "Value error" not in err, err


def test_elm_compare_passes_its_settings_through(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "no-such-pairs"
    code, _, err = run_captured(["elm", "compare", "--data", str(missing), "--out", str(tmp_path)], capsys)
    assert code == NotFoundError.exit_code and f"data not found: {missing}" in err


OVER = "above the limit of 700,000 (TLDRLAB_MAX_MODEL_PARAMETERS)"


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        # the default ELM: its adapter (8 prefix vectors of 64 from 384-d embeddings) is the bigger part
        (
            [],
            f"hidden_dim: 824,704 parameters (8.25e+05), {OVER} (the ELM: GPT-2 tiny from scratch, 372,480, "
            "and its adapter and drift head with hidden_dim 256, 452,224)",
        ),
        (
            ["--hidden-dim", "8", "--lm-size", "mini"],
            f"lm_size: 1,826,952 parameters (1.83e+06), {OVER} (the ELM: GPT-2 mini from scratch, 1,370,880, "
            "and its adapter and drift head with hidden_dim 8, 456,072)",
        ),
        # the ELM fits (602,248): the T5, which compare reached only after the ELM's whole training
        (
            ["--hidden-dim", "8", "--t5-size", "small"],
            f"t5_size: 8,369,920 parameters (8.37e+06), {OVER} (the T5 small from scratch, over a BPE of "
            "4,000 tokens)",
        ),
    ],
)
def test_elm_compare_over_the_parameter_budget_is_refused_before_anything_runs(
    options: list[str],
    problem: str,
    shared_data: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`elm compare` built its two models' run configs only when it reached each, so a model over the
    parameter budget failed with a pydantic traceback after embedding every document (the T5 after the
    ELM's whole training). Its options are now refused first, naming the setting that makes the model."""
    from tldrlab.config import get_settings

    monkeypatch.setenv("TLDRLAB_MAX_MODEL_PARAMETERS", "700000")
    get_settings.cache_clear()
    data, out = shared_data / "debian_descriptions", tmp_path / "out"
    argv = ["elm", "compare", "--data", str(data), "--out", str(out), "--limit", "48", "--eval-limit", "2"]
    code, printed, err = run_captured([*argv, "--minutes", "0.01", *options], capsys)
    refusal = f"error [invalid_config] invalid compare options: {problem}"
    assert (code, printed, err.strip()) == (2, "", refusal)
    assert not out.exists() and open_registry().list() == []  # nothing embedded, no run started


def _pairs(path: Path, count: int, *, documents: bool = True) -> None:
    """`count` pair records in the JSON lines file `path`, their documents blank unless `documents`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "document": f"package {i} installs a tool for task {i}" if documents else " ",
            "summary": f"tool {i}",
        }
        for i in range(count)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _layout(
    directory: Path, train_records: int, source: str, *, limit: int | None = 48, eval_limit: int | None = 2
) -> None:
    """An ELM layout in `directory` (as `elm prepare` writes it) with `train_records` training records,
    prepared from `source` with `limit`, `eval_limit` and seed 0 as its manifest records."""
    import torch

    from tldrlab.elm.prepare import MANIFEST, SPLITS, write_split

    for split in SPLITS:
        count = train_records if split == "train" else 2
        records = [
            {"task_type": "summary", "embedding_index": i, "target_text": f"tool {i}"} for i in range(count)
        ]
        write_split(directory, split, records, torch.zeros(count, 384))
    prepared = {"source": source, "embedding_dim": 384, "seed": 0, "limit": limit, "eval_limit": eval_limit}
    (directory / MANIFEST).write_text(json.dumps(prepared))


@pytest.mark.parametrize(
    "case",
    [
        "limit under a batch",
        "few records",
        "reused layout",
        "no validation records",
        "out is a file",
        "data is a layout",
    ],
)
def test_elm_compare_with_inputs_it_cannot_train_on_is_refused_before_anything_runs(
    case: str, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`elm compare` found these only once MiniLM had embedded the documents into --out (a prepared layout
    given as --data, only once the ELM had trained and its run was recorded): a --limit under its batch size
    of 16 ("the training data has 10 examples: too few for batch_size 16"), data with too few usable training
    records once val and test are held out, a layout left in --out by such a run (reused by every later
    compare, whatever its --limit), a validation split with no usable records (after embedding the training
    split: a half layout, which the next compare reused), an --out that is a file. Each is now refused
    first, in one line: nothing embedded, no run started."""
    out = tmp_path / "out"
    data = shared_data / "debian_descriptions"
    limit = "48"
    too_few = "usable training records: too few for one batch of 16, the batch size both models train with"
    if case == "limit under a batch":
        limit = "10"
        refusal = "invalid compare options: limit: Input should be greater than or equal to 16"
    elif case == "few records":  # 12 pairs, no splits: one held out for val, one for test
        data = tmp_path / "pairs.jsonl"
        _pairs(data, 12)
        refusal = f"{data} with --limit 48 has 10 {too_few}"
    elif case == "reused layout":
        _layout(out / "elm_data", 10, str(data))
        reused = f"{out / 'elm_data'} (a layout an earlier compare prepared in --out, reused)"
        refusal = f"{reused} has 10 {too_few}; give another --out to prepare the data again"
    elif case == "no validation records":
        data = tmp_path / "pairs"
        _pairs(data / "train.jsonl", 20)
        _pairs(data / "validation.jsonl", 3, documents=False)
        refusal = f"{data}: no val records with a document and a summary"
    elif case == "out is a file":
        out.write_text("notes\n")
        refusal = f"the output {out} is a file: give a directory to write the comparison in"
    else:
        data = tmp_path / "prepared"
        _layout(data, 20, str(shared_data / "debian_descriptions"))
        refusal = (
            f"{data} is a prepared ELM layout: compare embeds the documents itself and trains the T5 on "
            f"them, give the pair data it was prepared from ({shared_data / 'debian_descriptions'})"
        )
    code_name = "invalid_config" if case == "limit under a batch" else "invalid_input"
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    argv = ["elm", "compare", "--data", str(data), "--out", str(out), "--limit", limit, "--eval-limit", "2"]
    code, printed, err = run_captured([*argv, "--minutes", "0.01", "--hidden-dim", "8"], capsys)
    assert (code, printed, err.strip()) == (2, "", f"error [{code_name}] {refusal}")
    # nothing embedded (no file added under tmp_path), no run started
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before and open_registry().list() == []


@pytest.mark.parametrize("changed", ["limit", "eval limit", "data", "seed", "not recorded"])
def test_elm_compare_refuses_a_layout_in_out_prepared_with_other_options(
    changed: str, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`elm compare` reused the layout an earlier compare had prepared in --out whatever its --data, --limit
    and --eval-limit now were: the ELM trained and was scored on the earlier records, the T5 trained on the
    new ones, and the table said the new options. A layout prepared with other options (or one that does
    not record them) is now refused in one line, before anything runs, saying to give another --out."""
    out, data = tmp_path / "out", shared_data / "debian_descriptions"
    _layout(out / "elm_data", 20, str(data))  # --limit 48 --eval-limit 2 --seed 0, enough for a batch
    options = {"--limit": "48", "--eval-limit": "2", "--seed": "0"}
    layout = f"{out / 'elm_data'} (a layout an earlier compare prepared in --out)"
    reuse = "compare reuses it only for the same --data, --limit, --eval-limit and --seed"
    remedy = "give another --out to prepare the data again"
    if changed == "limit":
        options["--limit"] = "64"
        refusal = f"{layout} was prepared with --limit 48, not 64: {reuse}; {remedy}"
    elif changed == "eval limit":
        options["--eval-limit"] = "4"
        refusal = f"{layout} was prepared with --eval-limit 2, not 4: {reuse}; {remedy}"
    elif changed == "data":
        earlier, data = data, tmp_path / "pairs.jsonl"
        _pairs(data, 40)
        refusal = f"{layout} was prepared with --data {earlier}, not {data}: {reuse}; {remedy}"
    elif changed == "seed":  # the seed cuts the splits
        options["--seed"] = "3"
        refusal = f"{layout} was prepared with --seed 0, not 3: {reuse}; {remedy}"
    else:  # prepared before the limits were recorded
        manifest = out / "elm_data" / "elm_data.json"
        manifest.write_text(json.dumps({"source": str(data), "embedding_dim": 384, "seed": 0}))
        refusal = (
            f"{layout} does not record the --limit and --eval-limit it was prepared with, so compare cannot "
            f"tell whether it holds the records these options give: {remedy}"
        )
    before = {str(p): p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    argv = ["elm", "compare", "--data", str(data), "--out", str(out), "--minutes", "0.01"]
    argv += ["--hidden-dim", "8", *(x for pair in options.items() for x in pair)]
    code, printed, err = run_captured(argv, capsys)
    assert (code, printed, err.strip()) == (2, "", f"error [invalid_input] {refusal}")
    # nothing embedded or replaced, no run started
    assert {str(p): p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before
    assert open_registry().list() == []


HELP = {
    ("lvm", "generate"): ["The trained LVM: an lvm_train run id", "--steps", "[default: 1; >= 1, <= 100]"],
    ("lvm", "tmd"): ["--missing / --no-missing", "Only concepts without TMD labels yet."],
    ("lvm", "stats"): ["--samples", "Random concepts to show. [default: 5; >= 0, <= 100]", "--db", "--json"],
    ("lvm", "train"): ["--model-settings.hidden, --hidden", "Width of the backbone. [default: 256; >= 4]"],
    ("data", "inspect"): [
        "--mapping, --map",
        "pairs field mapping",
        "-o, --options, --option",
        "-f, --format",
    ],
    ("data", "register"): ["--source-url", "Where it came from (provenance).", "--license"],
    ("models", "import"): ["SOURCE", "--dtype <float32|bfloat16>", "Replace an installed model"],
    ("models", "promote"): ["--alias", "The alias to point at the run's model", "--note"],
    ("sweep", "status"): ["STUDY", "Study storage: sqlite:///PATH or postgresql://"],
    ("sweep", "export"): ["-o, --out", "Directory for trials.csv/json"],
    ("runs", "compare"): ["--plot", "Where the PNG chart goes.", "--fail-on-regression"],
    ("digest",): ["TARGET", "Which thread of the file to digest", "-p, --params, --param"],
    ("highlights",): ["THREAD_ID", "A stored thread id.", "--scorer"],
}
"""Commands generated from typed classes: their options' help is the field's docstring, with bounds."""


@pytest.mark.parametrize("command", HELP, ids=" ".join)
def test_help_comes_from_the_field_docstrings(
    command: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_captured([*command, "--help"], capsys)
    flat = " ".join(out.split())
    assert code == 0
    for fragment in HELP[command]:
        assert " ".join(fragment.split()) in flat, (command, fragment)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["lvm", "generate", "r", "--text", "a", "--steps", "0"],
            "steps: Input should be greater than or equal to 1",
        ),
        (["lvm", "generate", "r", "--split", "train"], "'train' is not one of 'val', 'test', 'cross'"),
        (["lvm", "generate", "--text", "a"], "Missing argument 'RUN'"),
        (["lvm", "stats", "--samples", "101"], "samples: Input should be less than or equal to 100"),
        (["lvm", "train", "--hidden", "2"], "hidden: Input should be greater than or equal to 4"),
        (["lvm", "train", "--model-settings", "hiden=8"], "hiden: Extra inputs are not permitted"),
        (
            ["models", "import", "x.gguf", "--dtype", "float16"],
            "'float16' is not one of 'float32', 'bfloat16'",
        ),
        (["models", "promote", "train-1"], "alias: Field required (give --alias)"),
        (["runs", "compare", "--tolerance", "0"], "Missing argument 'IDS'"),
        (
            ["runs", "compare", "a", "--tolerance", "-1"],
            "tolerance: Input should be greater than or equal to 0",
        ),
        (["data", "register", "x", "--name", ""], "name: String should have at least 1 character"),
        (["digest", "t", "--param", "[1]"], "--param expects KEY=VALUE"),
        (["digest", "t", "--param", "{oops"], "--param: not valid JSON"),
        (["highlights", "7", "--k", "0"], "k: Input should be greater than or equal to 1"),
        (["--threads", "0", "runs", "list"], "must be at least 1"),
        (["runs", "logs", "train-1", "--tail", "-1"], "Input should be greater than or equal to 0"),
    ],
)
def test_bad_values_of_generated_commands_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_captured(argv, capsys)
    assert code == 2 and message in " ".join(err.split()) and "Traceback" not in out + err
    assert open_registry().list() == []  # nothing started


def test_lvm_model_settings_flags_reach_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["lvm", "train", "--sequences", str(tmp_path / "s.npz"), "--model-settings", "lora_rank=4",
            "--hidden", "64", "--skip", "last", "--tmd-inputs", "--model-settings.pretrained-layers", "2",
            "--print-config"]  # fmt: skip
    code, out, err = run_captured(argv, capsys)
    assert code == 0, err
    settings = yaml.safe_load(out)["model_settings"]
    assert settings == {
        "lora_rank": 4,
        "hidden": 64,
        "skip": "last",
        "tmd_inputs": True,
        "pretrained_layers": 2,
    }


def test_data_register_records_the_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"document": "a b c", "summary": "a"}\n{"document": "d e f", "summary": "d"}\n')
    argv = ["data", "register", str(data), "--name", "tiny", "-f", "pairs", "--license", "CC0",
            "--source-url", "https://example.org/tiny", "--json"]  # fmt: skip
    code, out, err = run_captured(argv, capsys)
    record = json.loads(out)
    assert code == 0, err
    assert (record["name"], record["format"], record["records"], record["new"]) == ("tiny", "pairs", 2, True)
    provenance = record["extra"]["provenance"]
    assert (provenance["license"], provenance["source_url"]) == ("CC0", "https://example.org/tiny")


def test_data_inspect_passes_mapping_and_reader_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "my.csv"
    data.write_text("text;headline\nthe long text here;short\nanother text;another\n")
    argv = ["data", "inspect", str(data), "-f", "pairs", "--json", "--map", "document=text",
            "--map", "summary=headline"]  # fmt: skip
    code, out, err = run_captured([*argv, "-o", "delimiter=;"], capsys)
    assert code == 0, err
    assert json.loads(out)["total"]["records"] == 2
    code, _, err = run_captured(argv, capsys)  # without the reader's delimiter option: the cause is named
    assert code == 2 and "is ';' the delimiter? give the reader option delimiter=';'" in err, err


def test_a_required_argument_says_required_once(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_captured(["lvm", "generate", "--help"], capsys)
    arguments = out.split("Arguments:")[1].split("Options:")[0]
    assert code == 0 and "RUN" in arguments and arguments.count("required") == 1, arguments


def test_a_model_size_for_a_family_without_sizes_says_so_and_what_it_takes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # "model_settings.size: Extra inputs are not permitted" said neither that char_lstm has no named sizes
    # nor what to give instead
    data = tmp_path / "text.txt"
    data.write_text("To be, or not to be.\n" * 20)
    argv = ["train", "--model", "char_lstm", "--data", str(data), "--model-size", "tiny"]
    code, _, err = run_captured(argv, capsys)
    flat = " ".join(err.split())
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Extra inputs" not in err, err
    assert "model_settings.size: a char_lstm model has no named sizes (those of t5 and gpt2 do)" in flat, err
    assert "hidden_dim" in flat and "num_layers" in flat, err
    assert open_registry().list() == []


def test_model_size_help_names_the_sizes_the_models_take(capsys: pytest.CaptureFixture[str]) -> None:
    # the help said "tiny, mini, small" (not base) and not that only t5 and gpt2 have named sizes, so
    # `--model char_lstm --model-size tiny` ended in "invalid char_lstm model config: size: Extra inputs"
    code, out, _ = run_captured(["train", "--help"], capsys)
    flat = " ".join(out.split())
    start = flat.index("--model-size")
    help_text = flat[start : flat.index("--", start + len("--model-size"))]
    assert code == 0 and "t5" in help_text and "gpt2" in help_text and "char_lstm" in help_text
    for config in (T5ModelConfig, GPT2ModelConfig):
        for size in get_args(config.model_fields["size"].annotation):
            assert size in help_text, (config.__name__, size, help_text)
