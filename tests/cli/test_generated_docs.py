"""docs/cli.md and docs/config.md are generated from the commands and config classes: stale files fail."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from cliutil import run_captured
from tldrlab.cli.docs import GENERATED, cli_markdown, config_markdown
from tldrlab.kinds import section_class
from tldrlab.lvm.config import LVMConfig
from tldrlab.models.causal_lm import LoraSettings
from tldrlab.models.registry import MODELS

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_checked_in_generated_docs_are_current() -> None:
    for name, render in GENERATED.items():
        current = (DOCS / name).read_text(encoding="utf-8")
        assert current == render(), f"docs/{name} is stale: run `python -m tldrlab.cli.docs docs` (make docs)"


def test_generated_docs_cover_every_command_and_field() -> None:
    cli = cli_markdown()
    for command in ("`tldrlab train`", "`tldrlab experiment dendrites`", "`tldrlab runs list`"):
        assert command in cli
    assert "| `--train.lr`, `--lr` | float | Peak learning rate" in cli and "[default: 0.0003; > 0]" in cli
    config = config_markdown()
    assert "| `compression.compression_ratio` | float \\| None | `0.5` | > 0.0, <= 1.0 |" in config
    # ELM's own loop default, not TrainConfig's
    assert "| `train.batch_size` | int | `8` | >= 1, <= 65536 |" in config


def test_arguments_carry_the_names_their_help_shows() -> None:
    # arguments of commands generated from typed classes showed their internal parameter names in
    # docs/cli.md (`CFG__PATH`, `CFG__TARGET`, ...), where `--help` shows PATH and TARGET
    cli = cli_markdown()
    assert "CFG__" not in cli
    ingest = cli[cli.index("## `tldrlab ingest`") :]
    assert "| `PATH` | str | A thread file or directory" in ingest.split("## ", 2)[1]
    assert "| `RUN_ID` | str | Run id or a unique prefix of it. |" in cli  # plain typer arguments as before


def test_the_dendrite_modules_help_fits_each_commands_default() -> None:
    # `--dendrites.module-names` said "default: T5's feed-forward blocks" for `experiment lm` too, whose
    # default is the Llama-style MLP blocks
    cli = cli_markdown()
    rows = [line for line in cli.splitlines() if line.startswith("| `--dendrites.module-names`")]
    lm_rows = [row for row in rows if "LlamaMLP" in row]
    assert lm_rows and len(lm_rows) < len(rows), rows
    for row in rows:
        assert "Llama-style MLP blocks of `experiment lm`" in row and "default: T5" not in row, row


def _leaves(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every field of `model` as a dotted name, a nested section both itself and its fields."""
    names = []
    for name, info in model.model_fields.items():
        names.append(f"{prefix}{name}")
        if (section := section_class(info.annotation)) is not None:
            names += _leaves(section, f"{prefix}{name}.")
    return names


def _section(markdown: str, heading: str) -> str:
    """The table under `### heading`, up to the next heading."""
    return markdown.split(f"\n### {heading}\n", 1)[1].split("\n#", 1)[0]


def test_the_config_reference_lists_every_model_familys_settings() -> None:
    # a training's model_settings is a free-form dict checked against the class of its `model`'s family, whose
    # fields, defaults, bounds and docstrings docs/config.md never showed: a user had to read the source
    config = config_markdown()
    train = config[config.index("## `train`") : config.index("## `tokenizer`")]
    row = next(line for line in train.splitlines() if line.startswith("| `model_settings` |"))
    for family, spec in MODELS.items():
        assert f"[{family}](#train-model_settings-for-model-{family})" in row  # the heading's anchor
        table = _section(train, f"`train`: `model_settings` for `model: {family}`")
        for leaf in _leaves(spec.config_cls):
            assert f"| `model_settings.{leaf}` |" in table, (family, leaf)
    causal_lm = _section(train, "`train`: `model_settings` for `model: causal_lm`")
    target_modules = " ".join((LoraSettings.model_fields["target_modules"].description or "").split())
    assert "None: the model's attention and MLP projections" in target_modules
    lora_targets = "| `model_settings.lora.target_modules` | list[str] \\| None | `None` | length >= 1 |"
    assert f"{lora_targets} {target_modules} |" in causal_lm
    assert (
        "| `model_settings.lora` | LoraSettings \\| None | `None` |  | Train LoRA adapters only (None:"
        in causal_lm
    )
    assert "| `model_settings.lora.r` | int | `8` | >= 1, <= 1024 | Rank of each adapter. |" in causal_lm
    # an LVM training's model_settings: LVMConfig, whatever the backbone
    lvm = config[config.index("## `lvm_train`") : config.index("## `lvm_evaluate`")]
    assert "[LVMConfig](#lvm_train-model_settings)" in lvm
    table = _section(lvm, "`lvm_train`: `model_settings`")
    for leaf in _leaves(LVMConfig):
        assert f"| `model_settings.{leaf}` |" in table, leaf


def test_train_help_names_every_model_familys_settings(capsys: pytest.CaptureFixture[str]) -> None:
    # `tldrlab train --help` said `--model-settings` takes "sizes, dropout, ..." and no more
    code, out, _ = run_captured(["train", "--help"], capsys)
    flat = " ".join(out.split())
    assert code == 0
    listed = flat.split("Its fields by `model` (each explained in docs/config.md): ", 1)[1]
    families = dict(part.split(": ", 1) for part in listed.split(". [default", 1)[0].split("; "))
    assert list(families) == list(MODELS)
    for family, spec in MODELS.items():
        shown = {name.split(".")[0] for name in families[family].split(", ")}
        assert shown == set(spec.config_cls.model_fields), family
    assert "lora.r, lora.alpha, lora.dropout, lora.target_modules" in families["causal_lm"]
