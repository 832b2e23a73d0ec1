"""The run-kind registry: every kind carries a documented, torch-free config and an importable execute."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from cliutil import run_captured
from tldrlab.config import Settings
from tldrlab.errors import InvalidConfigError, UnknownKindError
from tldrlab.kinds import KINDS, get_kind, kind_schema, load_target, resolve_execute, validate_config
from tldrlab.models.resolve import MODEL_RUN_KINDS
from tldrlab.runs.paths import SEED_MAX
from tldrlab.runs.registry import a_kind_run

EXPECTED = {
    "train", "tokenizer", "evaluate", "generate", "score", "ingest", "elm_prepare", "elm_train",
    "elm_evaluate", "elm_optimize", "lvm_ingest", "lvm_index", "lvm_sequences", "lvm_train", "lvm_evaluate",
    "experiment", "sweep", "smoke", "lm_experiment", "lm_experiment_arm", "lm_compress", "elm_compare_lm",
}  # fmt: skip


def _models(cls: type[BaseModel]) -> list[type[BaseModel]]:
    """The class and every config class nested in its fields."""
    found = [cls]
    for field in cls.model_fields.values():
        for arg in (field.annotation, *getattr(field.annotation, "__args__", ())):
            if isinstance(arg, type) and issubclass(arg, BaseModel) and arg not in found:
                found.extend(m for m in _models(arg) if m not in found)
    return found


def test_every_kind_is_registered_with_its_whole_contract() -> None:
    assert set(KINDS) >= EXPECTED
    for name, kind in KINDS.items():
        assert kind.name == name and kind.help and callable(resolve_execute(name)), name
        for model in _models(kind.config):
            assert model.model_config.get("extra") == "forbid", model
            assert model.model_config.get("allow_inf_nan") is False, model  # no float field takes inf/nan
            undocumented = [f for f, info in model.model_fields.items() if not info.description]
            assert not undocumented, f"{model.__name__}: fields without a docstring: {undocumented}"
        if kind.prepare:
            assert callable(load_target(kind.prepare))
        if kind.follower:
            assert callable(load_target(kind.follower))
        for target in (kind.check, kind.local_check, kind.study, kind.report):
            assert target is None or callable(load_target(target)), (name, target)
        fields = set(kind.config.model_fields)
        for path in (*kind.inputs, *kind.must_exist, *kind.outputs):
            assert path.split(".")[0] in fields, (name, path)


def test_the_kinds_said_to_save_a_model_are_kinds_and_messages_name_kinds_with_their_article() -> None:
    # models.resolve keeps the kinds whose runs save a text model by hand (it sits below this registry): a
    # renamed kind would make every run of it refused as a model reference
    assert set(MODEL_RUN_KINDS) <= set(KINDS)
    assert a_kind_run("smoke") == "a smoke run" and a_kind_run("evaluate") == "an evaluate run"
    # "a lvm_index run" read wrong: lm and lvm are said letter by letter
    assert a_kind_run("lvm_index") == "an lvm_index run" and a_kind_run("lm_compress") == "an lm_compress run"


TOY_PROGRAM = Path(__file__).parents[1] / "sweep" / "toy_program.py"

NO_TORCH_PROCESSES = {
    "configs and the launch path": (
        "import tldrlab.kinds, tldrlab.launch, tldrlab.service.routes.runs as r\n"
        "[k.config.model_json_schema() for k in tldrlab.kinds.KINDS.values()]\n",
        ("torch", "transformers", "optuna", "faiss"),
    ),
    # the API's submit runs every kind's `check` in its own process (`launch.check_inputs`)
    "every kind's check before a run exists": (
        "import tldrlab.kinds, tldrlab.targets\n"
        "[tldrlab.targets.load_target(k.check) for k in tldrlab.kinds.KINDS.values() if k.check]\n",
        ("torch", "transformers", "faiss", "sentence_transformers"),
    ),
    # every `tldrlab sweep` process and sweep worker imports the sweep service; it only coordinates (optuna),
    # and torch took 2+ CPU-s to load there (through elm.optimize, elm.prepare and the trial runs' recipes)
    "the sweep service and the trial registry": (
        "import tldrlab.service.sweeps, tldrlab.sweep.trials, tldrlab.elm.search, tldrlab.elm.prepare\n",
        ("torch", "transformers", "faiss", "sentence_transformers"),
    ),
    # `tldrlab serve` builds the app (its models and summarize routes loaded torch through the model store
    # and the generation code) and warms the digest model: without one (the tests' setting) it needs none
    "a server's start without a digest model": (
        "import tldrlab.service.server\n"
        "from tldrlab.digest.local_model import warm_default_model\n"
        "from tldrlab.service.app import create_app\n"
        "create_app(local_workers=1)\n"
        "assert warm_default_model() is None\n",
        ("torch", "transformers", "faiss", "sentence_transformers"),
    ),
    # a command-line program's trials run in the sweep's process (kind `trial`); the experiment program's
    # trainer is imported only when such a trial runs
    "a command-line sweep and its trial": (
        "import json, os, pathlib\n"
        "from tldrlab.sweep.runner import run_sweep\n"
        "from tldrlab.sweep.spec import load_sweep\n"
        "sweep = pathlib.Path(os.environ['TLDRLAB_HOME'], 'toy.yaml')\n"
        f"sweep.write_text(json.dumps({{'program': {str(TOY_PROGRAM)!r}, 'method': 'random', "
        "'metric': {'name': 'loss', 'goal': 'minimize'}, 'parameters': {'x': {'value': 0.5}}}))\n"
        "summary = run_sweep(load_sweep(sweep), trials=1, echo=lambda line: None)\n"
        "assert summary['trials'] == {'COMPLETE': 1}, summary\n",
        ("torch", "transformers", "faiss", "sentence_transformers"),
    ),
}
"""What a process that does no training imports, and the heavy libraries it must not load."""


@pytest.mark.parametrize("what", sorted(NO_TORCH_PROCESSES))
def test_processes_that_do_not_train_import_no_torch(what: str, tmp_path: Path) -> None:
    code, heavy = NO_TORCH_PROCESSES[what]
    code = f"import sys\n{code}print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "TLDRLAB_HOME": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_validate_config_names_every_bad_field() -> None:
    with pytest.raises(InvalidConfigError) as caught:
        validate_config("train", {"data": {"path": "x", "val_fraction": 2}, "train": {"lr": -1}, "nope": 1})
    error = caught.value
    assert error.http_status == 422 and error.code == "invalid_config"
    locs = {tuple(e["loc"]) for e in error.details["errors"]}
    assert locs == {("data", "val_fraction"), ("train", "lr"), ("nope",)}
    assert "train.lr: Input should be greater than 0" in error.message
    refused = r"sweep.method: unknown method 'nope'; choose one of bayes, grid, random"
    with pytest.raises(InvalidConfigError, match=refused):
        validate_config("sweep", {"sweep": {"method": "nope"}})
    config = validate_config("smoke", {"steps": 3})
    assert validate_config("smoke", config) is config


def test_a_section_given_in_part_keeps_the_rest_of_its_default() -> None:
    # ELM's train section defaults to batch_size 8, lr 1e-3; the API used to validate {"max_steps": 5} into
    # TrainConfig's own defaults (16, 3e-4) while the CLI kept ELM's: one rule for both now
    config = validate_config("elm_train", {"data": "d", "train": {"max_steps": 5}})
    assert (config.train.max_steps, config.train.batch_size, config.train.lr) == (5, 8, 1e-3)
    assert config.train.best_metric == "bertscore_f1"


def test_unknown_kinds_list_the_known_ones_and_old_names_still_resolve() -> None:
    with pytest.raises(UnknownKindError, match=r"unknown run kind .*; choose one of .*smoke"):
        get_kind("rm -rf")
    assert get_kind("eval").name == "evaluate"  # runs recorded under the old name stay readable


def test_kind_schemas_carry_the_field_docstrings() -> None:
    schema = kind_schema(KINDS["train"])["schema"]
    lr = schema["$defs"]["TrainConfig"]["properties"]["lr"]
    assert lr["description"].startswith("Peak learning rate") and lr["exclusiveMinimum"] == 0


def _seed_fields(cls: type[BaseModel]) -> list[tuple[type[BaseModel], str]]:
    """(class, field name) of every seed a kind's config carries, nested config classes included."""
    names = ("seed", "seeds", "holdout_seed")
    return [(model, name) for model in _models(cls) for name in model.model_fields if name in names]


def test_every_seed_is_bounded_so_a_run_cannot_fail_after_it_started(tmp_path: Path) -> None:
    # a seed past 2**63 passed validation, and the run then failed with "Overflow when unpacking long long"
    # from torch's generator: a traceback on the CLI, an internal_error run through the API
    huge = 2**64
    refused = {
        "smoke": ({"seed": huge}, ("seed",)),
        "train": ({"data": {"path": str(tmp_path)}, "train": {"seed": huge}}, ("train", "seed")),
        "generate": ({"model_run": "m", "prompts": ["x"], "options": {"seed": huge}}, ("options", "seed")),
        "experiment": ({"data": "d", "seeds": [1, -1]}, ("seeds", "1")),
    }
    for kind, (raw, loc) in refused.items():
        with pytest.raises(InvalidConfigError) as caught:
            validate_config(kind, raw)
        assert [tuple(e["loc"]) for e in caught.value.details["errors"]] == [loc], kind
    assert validate_config("smoke", {"seed": SEED_MAX}).seed == SEED_MAX
    unbounded = set()
    for kind in KINDS.values():
        for model, name in _seed_fields(kind.config):
            field = model.model_fields[name]
            annotation = field.annotation
            if field.metadata:  # the bounds of an Annotated[int, Field(...)] are kept apart from the type
                annotation = Annotated[(annotation, *field.metadata)]
            adapter: TypeAdapter[object] = TypeAdapter(annotation)
            for value in ([huge], [-1]) if name == "seeds" else (huge, -1):
                try:
                    adapter.validate_python(value)
                except ValidationError:
                    continue
                unbounded.add(f"{model.__name__}.{name}")
    assert not unbounded, sorted(unbounded)


def test_the_largest_seed_trains_and_a_larger_one_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = ["--home", str(tmp_path), "smoke", "--steps", "2", "--seed"]
    code, _, err = run_captured([*home, str(SEED_MAX)], capsys)
    assert code == 0, err
    code, _, err = run_captured([*home, str(2**64)], capsys)
    assert code == 2 and "seed" in err and "Traceback" not in err, err


def test_fields_naming_the_embedder_settings_default_name_the_real_one() -> None:
    # lvm ingest's --embedder help said the setting's default was minilm; it has been minilm-onnx since the
    # default moved (docs/stores.md), so its help and docs/cli.md named the wrong embedder
    default = Settings.model_fields["embedder"].default
    named = {
        f"{model.__name__}.{name}": found.group(1)
        for kind in KINDS.values()
        for model in _models(kind.config)
        for name, field in model.model_fields.items()
        if (found := re.search(r"`embedder` setting \(([\w-]+)\)", field.description or ""))
    }
    assert named and all(value == default for value in named.values()), named
