"""transformers' tables of model types, read from its source without importing it (which imports torch), are
the tables transformers itself builds; a table its source changes in a way not read is unknown, never a
wrong table the submit check would refuse a causal LM by."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from tldrlab.models.transformers_tables import causal_lm_model_types, config_model_types


def test_the_tables_read_from_the_installed_source_are_transformers_own() -> None:
    assert causal_lm_model_types() == frozenset(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    assert config_model_types() == frozenset(CONFIG_MAPPING_NAMES)
    assert {"llama", "gpt2", "qwen2"} <= causal_lm_model_types() and "t5" not in causal_lm_model_types()


GENERATED = """
from collections import OrderedDict

CONFIG_MAPPING_NAMES = OrderedDict([("llama", "LlamaConfig"), ("t5", "T5Config")])
"""
CONFIGURATION = """
from .auto_mappings import CONFIG_MAPPING_NAMES

CONFIG_MAPPING_NAMES.update({"mimi_decoder": "MimiDecoderConfig"})
CONFIG_MAPPING_NAMES = OrderedDict(**{"gpt-sw3": "GPT2Config"}, **CONFIG_MAPPING_NAMES)
CONFIG_MAPPING = _LazyConfigMapping(CONFIG_MAPPING_NAMES)  # reads it only
"""
MODELING = """
MODEL_FOR_CAUSAL_LM_MAPPING_NAMES = OrderedDict([("llama", "LlamaForCausalLM")])
for name in extra_causal_lms():
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[name] = name
"""


def test_a_table_built_by_a_statement_not_read_is_unknown(tmp_path: Path) -> None:
    """In a fresh interpreter (this one imported transformers: found there, not on the path) with another
    transformers source first on the path."""
    auto = tmp_path / "transformers" / "models" / "auto"
    auto.mkdir(parents=True)
    (tmp_path / "transformers" / "__init__.py").write_text("raise ImportError('never imported')\n")
    for name, source in (
        ("auto_mappings.py", GENERATED),
        ("configuration_auto.py", CONFIGURATION),
        ("modeling_auto.py", MODELING),
    ):
        (auto / name).write_text(source)
    script = (
        "import json\n"
        "from tldrlab.models.transformers_tables import causal_lm_model_types, config_model_types\n"
        "configs = config_model_types()\n"
        "print(json.dumps([causal_lm_model_types(), sorted(configs) if configs is not None else None]))\n"
    )
    path = os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "PYTHONPATH": path},
    )
    causal_lms, configs = json.loads(out.stdout)
    assert causal_lms is None  # an item set in a loop: not read, so not known
    assert configs == ["gpt-sw3", "llama", "mimi_decoder", "t5"]
