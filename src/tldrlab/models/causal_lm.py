"""`causal_lm`: any pretrained Hugging Face causal LM (Llama, Qwen2, Mistral, ...), loaded from a local model
directory, a GGUF file, an installed model, a run, or the bundled SmolLM2-135M-Instruct (the default).

    model = build_model("causal_lm", {"path": "smollm2", "lora": {"r": 8}, "num_layers": 15}, tokenizer)
    tokenizer = family_tokenizer(CausalLMConfig(path="smollm2"))   # the model's own tokenizer (chat template)

The family brings its own tokenizer (a run never trains one). Options: drop layers (keep `num_layers` evenly
spaced, first and last included), gradient checkpointing, and LoRA adapters (`peft`) with only the adapters
trainable. `export_model` writes safetensors + config.json + tokenizer (with its chat template) that plain
`transformers` loads offline; a LoRA model is merged into its base there, and its adapters are saved too in
`adapter/`. The instruction the model is asked with (`models.chat`) is kept in its config.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from tldrlab.configmodel import ConfigModel
from tldrlab.errors import CheckpointError, ConfigError, InvalidConfigError, InvalidInputError, NotFoundError
from tldrlab.models.architecture import ARCHITECTURE_KEY, gguf_header, model_layers, model_type
from tldrlab.models.chat import DEFAULT_INSTRUCTION
from tldrlab.models.gguf_reading import check_gguf_file, gguf_parsed_once
from tldrlab.models.layers import decoder_layers, evenly_spaced
from tldrlab.models.resolve import BUNDLED_NAME, ResolvedModel, resolve_model_ref
from tldrlab.models.transformers_tables import causal_lm_model_types, config_model_types
from tldrlab.runs.paths import ModelRef
from tldrlab.runs.registry import RunStatus, open_registry
from tldrlab.runs.weights import save_pretrained

ADAPTER_SUBDIR = "adapter"
"""Where an exported LoRA model also keeps its (unmerged) adapters, loadable with peft."""


class LoraSettings(ConfigModel):
    """LoRA adapters (peft): low-rank updates on the named linear layers; everything else is frozen."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    r: int = Field(default=8, ge=1, le=1024)
    """Rank of each adapter."""

    alpha: int = Field(default=16, ge=1)
    """Scaling numerator: the update is scaled by alpha / r."""

    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    """Dropout on the adapter's input."""

    target_modules: list[str] | None = Field(default=None, min_length=1)
    """Names of the linear layers that get adapters; None: the model's attention and MLP projections, found
    in the model itself (every linear layer of its decoder layers, as its architecture names them: q_proj ...
    down_proj on a Llama, c_attn, c_proj and c_fc on a GPT-2, query_key_value ... on a Falcon)."""


class CausalLMConfig(ConfigModel):
    """A pretrained causal LM, optionally with fewer layers, gradient checkpointing and LoRA."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    path: Annotated[str, ModelRef()] = BUNDLED_NAME
    """Model reference: a directory, a .gguf file, an installed model name, a run id, or `smollm2`."""

    from_pretrained: Annotated[str | None, ModelRef()] = None
    """Same as `path` (the name the other families use); set one of the two."""

    num_layers: int | None = Field(default=None, ge=1)
    """Keep only this many transformer layers, evenly spaced (first and last kept); None keeps all."""

    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about a third more compute."""

    lora: LoraSettings | None = None
    """Train LoRA adapters only (None: full fine-tuning of every weight)."""

    instruction: str = DEFAULT_INSTRUCTION
    """The request put before each document (kept in the exported config for generation)."""

    dtype: Literal["float32", "bfloat16"] = "float32"
    """Weight dtype when loading (training on a CPU wants float32; bf16 autocast is the loop's precision)."""

    def reference(self) -> str:
        return self.from_pretrained or self.path


def _torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


def load_tokenizer(resolved: ResolvedModel) -> Any:
    """The model's own tokenizer (with its chat template), with a pad token set (eos when it has none)."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    path, kwargs = resolved.from_pretrained_args()
    with gguf_parsed_once(resolved.kind == "gguf"):
        if resolved.kind == "gguf":
            check_gguf_file(resolved.path)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path, **kwargs)
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"cannot load the tokenizer of {resolved.path}: {exc}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_causal_lm(resolved: ResolvedModel, *, dtype: str = "float32") -> Any:
    """The model (eval mode off: as transformers returns it); a GGUF file is de-quantized to `dtype`."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM

    check_causal_lm_model(resolved)
    path, kwargs = resolved.from_pretrained_args()
    with gguf_parsed_once(resolved.kind == "gguf"):  # the config and the weights read the same metadata
        if resolved.kind == "gguf":  # a truncated file is the user's input, not a corrupt checkpoint of ours
            check_gguf_file(resolved.path)
        try:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=_torch_dtype(dtype), **kwargs)
        except Exception as exc:  # safetensors, GGUF readers and transformers raise many kinds
            raise CheckpointError(f"cannot load a causal LM from {resolved.path}: {exc}") from exc
    if resolved.kind == "gguf":
        # The weights are plain de-quantized tensors now; a saved copy must not claim to be GGUF.
        _forget_gguf_origin(model)
    return model


def check_causal_lm_model(resolved: ResolvedModel) -> None:
    """InvalidInputError when the model's files name a model type that is no causal LM: a directory's
    config.json (a t5 or char_lstm run's model, an encoder), a GGUF file's header (a T5 GGUF). Without this
    check transformers' refusal surfaced as a `checkpoint_corrupt` error (the files are fine) listing its two
    hundred causal-LM config classes. Only those few bytes are read, so a load (`load_causal_lm`) and a
    submit (`check_causal_lm`) make this one check alike. transformers' tables of model types are read from
    its source (`transformers_tables`): importing it imports torch, which the API's process does not need
    to refuse a T5."""
    found = model_type(resolved)
    if found is None:
        return
    causal_lms, configs = causal_lm_model_types(), config_model_types()
    if causal_lms is None or configs is None:  # a transformers whose source builds them otherwise: ask it
        from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        causal_lms, configs = frozenset(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES), frozenset(CONFIG_MAPPING_NAMES)
    if found in causal_lms:
        return
    if resolved.kind == "gguf" and found not in configs:
        # llama.cpp names architectures transformers has no model of (command-r, deepseek2, ...): not known
        # to be no causal LM, so the load says what transformers cannot read, as it did
        return
    raise InvalidInputError(
        f"{resolved.path} holds a {found} model, not a causal LM (a decoder-only transformers "
        "model such as llama, qwen2 or gpt2); a tldrlab t5 or char_lstm run's model is used through its "
        "run (tldrlab generate / eval / score RUN)"
    )


def meta_causal_lm(resolved: ResolvedModel) -> Any:
    """The causal LM `resolved` holds, built from its config alone (a directory's config.json, a GGUF file's
    header) on the `meta` device: its modules without weights read or memory given to them. None when the
    files give no config transformers builds a causal LM from (left to the load)."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        if resolved.kind == "gguf":
            config = _gguf_config(resolved)
            if config is None:
                return None
        else:
            config = AutoConfig.from_pretrained(str(resolved.path))
        # torch's device context (thread-local) rather than accelerate's init_empty_weights, which patches
        # nn.Module for every thread: the API checks submits in a thread pool
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config)
    except Exception:  # transformers raises many kinds: what the load meets there, it reports
        return None


@dataclass(frozen=True)
class ModuleTree:
    """What LoRA's checks read of a model's modules (`resolve_lora`, `lora_parameter_count`), without the
    model: each module's name, the projections LoRA goes on when no targets are named, and the shape of
    each weight. Built from a model by `module_tree`, or for a model's files by `meta_module_tree`."""

    model_class: str
    """The model's class name (for a refusal's words)."""
    names: tuple[str, ...]
    """Every module's dotted name, in module order."""
    projections: tuple[str, ...]
    """`projection_targets` of the model."""
    weight_shapes: tuple[tuple[str, tuple[int, ...]], ...]
    """(module name, its weight's shape) of each module that has a weight."""

    def to_json(self) -> str:
        return json.dumps(
            {
                "model_class": self.model_class,
                "names": self.names,
                "projections": self.projections,
                "weight_shapes": self.weight_shapes,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ModuleTree:
        value = json.loads(text)
        return cls(
            model_class=str(value["model_class"]),
            names=tuple(value["names"]),
            projections=tuple(value["projections"]),
            weight_shapes=tuple((str(name), tuple(shape)) for name, shape in value["weight_shapes"]),
        )


def module_tree(model: Any) -> ModuleTree:
    """The `ModuleTree` of a (loaded, or meta) torch model."""
    modules = list(model.named_modules())
    return ModuleTree(
        model_class=type(model).__name__,
        names=tuple(name for name, _ in modules),
        projections=tuple(projection_targets(model)),
        weight_shapes=tuple(
            (name, tuple(int(size) for size in weight.shape))
            for name, module in modules
            if (weight := getattr(module, "weight", None)) is not None and hasattr(weight, "shape")
        ),
    )


META_TREE_TIMEOUT_S = 300.0
"""How long the process building a model's `ModuleTree` (`meta_module_tree`) may take: importing torch and
transformers takes seconds, more on a loaded machine. One that takes longer leaves the checks to the run."""


def meta_module_tree(resolved: ResolvedModel) -> ModuleTree | None:
    """The `ModuleTree` of the causal LM `resolved` holds, from the model built on the meta device
    (`meta_causal_lm`), for LoRA's checks before a run exists; None when the files give no model (left to
    the run). Kept per file version (a GGUF file, a directory's config.json: path, size, modification time).

    The meta model needs torch and transformers: a process that has not imported them (the API's, which
    validates what clients submit without torch) builds it in a child process of its own, which prints the
    tree, so its own memory and imports stay as they were; a process that has them (a training run's, a
    test's) builds it itself. The API imported torch and transformers for the first LoRA config submitted
    (seconds, hundreds of MB), into a process that serves without them."""
    described = resolved.path if resolved.kind == "gguf" else resolved.path / "config.json"
    try:
        stat = described.stat()
    except OSError:
        return None
    return _meta_module_tree(resolved, stat.st_size, stat.st_mtime_ns, "torch" in sys.modules)


@functools.lru_cache(maxsize=16)
def _meta_module_tree(resolved: ResolvedModel, size: int, mtime_ns: int, here: bool) -> ModuleTree | None:
    if here:
        meta = meta_causal_lm(resolved)
        return None if meta is None else module_tree(meta)
    # the tldrlab this process runs, whether installed or on PYTHONPATH
    source = str(Path(__file__).resolve().parents[2])
    python_path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH", "")) if p)
    code = (
        "import sys; from pathlib import Path; "
        "from tldrlab.models.causal_lm import meta_causal_lm, module_tree; "
        "from tldrlab.models.resolve import ResolvedModel; "
        "meta = meta_causal_lm(ResolvedModel(Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4])); "
        "print(meta and module_tree(meta).to_json())"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, str(resolved.path), resolved.kind, resolved.source, resolved.ref],
            capture_output=True,
            text=True,
            timeout=META_TREE_TIMEOUT_S,
            check=False,
            env={**os.environ, "PYTHONPATH": python_path, "HF_HUB_OFFLINE": "1"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None  # what it could not say, the run's own load and checks will
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines or lines[-1] == "None":
        return None
    try:
        return ModuleTree.from_json(lines[-1])
    except (ValueError, KeyError, TypeError):
        return None


def _gguf_config(resolved: ResolvedModel) -> Any:
    """A transformers config of the GGUF file's model from its header's sizes, renamed as transformers' GGUF
    loader renames them. Its config from `AutoConfig.from_pretrained(..., gguf_file=...)` parses all the
    metadata, the vocabulary and merges too: 1 to 9 s for the bundled SmolLM2, where the header takes ms."""
    from transformers import AutoConfig
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

    header = gguf_header(resolved.path)
    architecture, found = header.get(ARCHITECTURE_KEY), model_type(resolved)
    if not isinstance(architecture, str) or found is None:
        return None
    renames = GGUF_CONFIG_MAPPING.get(found) or GGUF_CONFIG_MAPPING.get(architecture.lower())
    prefix, settings = f"{architecture}.", {}
    for key, value in header.items():  # e.g. llama.block_count -> num_hidden_layers
        renamed = renames.get(key.removeprefix(prefix)) if isinstance(renames, dict) else None
        if key.startswith(prefix) and isinstance(renamed, str) and isinstance(value, int):
            settings[renamed] = value
    return AutoConfig.for_model(found, **settings)


def _forget_gguf_origin(model: Any) -> None:
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    for attr in ("hf_quantizer", "quantization_method"):
        if getattr(model, attr, None) is not None:
            setattr(model, attr, None)
    if hasattr(model, "is_quantized"):
        model.is_quantized = False


def family_tokenizer(config: CausalLMConfig) -> Any:
    return load_tokenizer(resolve_model_ref(config.reference()))


def keep_layers(model: Any, num_layers: int) -> list[int]:
    """Drop decoder layers in place, keeping `num_layers` evenly spaced ones; returns the kept indices."""
    from torch import nn

    layers = decoder_layers(model, "num_layers")
    total = len(layers)
    check_layer_count(num_layers, total)
    if num_layers == total:
        return list(range(total))
    kept = evenly_spaced(total, num_layers)
    new_layers = nn.ModuleList([layers[i] for i in kept])
    for position, layer in enumerate(new_layers):
        # The KV cache is indexed by each attention's layer_idx: renumber so they are 0..n-1 again.
        attention = getattr(layer, "self_attn", None)
        if attention is not None and hasattr(attention, "layer_idx"):
            attention.layer_idx = position
        if hasattr(layer, "layer_idx"):
            setattr(layer, "layer_idx", position)  # noqa: B010 (an nn.Module attribute mypy cannot see)
    model.model.layers = new_layers
    config = model.config
    config.num_hidden_layers = len(kept)
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) == total:
        config.layer_types = [layer_types[i] for i in kept]
    return kept


def check_layer_count(num_layers: int, layers: int) -> None:
    """ConfigError when `num_layers` asks for more layers than the model's `layers`: of the loaded model
    (`keep_layers`), or read from its files at submit (`check_causal_lm`)."""
    if num_layers > layers:
        raise ConfigError(f"num_layers {num_layers} exceeds the model's {layers} layers")


def projection_targets(model: Any) -> list[str]:
    """The names (last name part, in module order) of the model's attention and MLP projections: every
    `nn.Linear` or transformers `Conv1D` (GPT-2's) inside the model's repeated blocks (the elements of an
    `nn.ModuleList`: its decoder layers), so neither the LM head nor the embeddings nor an OPT's
    project_in/out. A name that also names a module outside the blocks, or one of another type inside
    them, is left out: peft matches names by their end, and would put adapters there too (or refuse the
    type).

    Read from the module tree rather than from peft's per-model-type defaults
    (`TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING`), which name the attention alone for most types
    (q_proj and v_proj on a Llama, c_attn on a GPT-2: no MLP), and only the types listed there: the tree
    gives every architecture transformers builds (OPT, Phi, Falcon, Bloom, GPT-NeoX, ...) its projections,
    and a Llama's and a GPT-2's are the ones tldrlab used before (q/k/v/o and gate/up/down; c_attn, c_proj
    and c_fc). It works alike on the loaded model (`apply_lora`) and the one built on the meta device at
    submit (`check_causal_lm`, `elm.prepare.check_elm_lm`), so both resolve the same targets."""
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    modules = list(model.named_modules())
    lists = {name for name, module in modules if isinstance(module, nn.ModuleList)}
    inside: dict[str, None] = {}  # ordered
    elsewhere: set[str] = set()
    for name, module in modules:
        parts = name.split(".")
        in_block = any(parts[i].isdigit() and ".".join(parts[:i]) in lists for i in range(1, len(parts)))
        if in_block and isinstance(module, nn.Linear | Conv1D):
            inside[parts[-1]] = None
        else:
            elsewhere.add(parts[-1])
    return [name for name in inside if name not in elsewhere]


def resolve_lora(model: Any, lora: LoraSettings) -> LoraSettings:
    """`lora` with the target modules the model gets adapters on: those it names (each checked to be in
    the model, `check_lora_targets`), else its attention and MLP projections (`projection_targets`).
    ConfigError when it names one the model lacks, or names none and the model has no projections found.
    The run (`apply_lora`, on the model) and the submit checks (on the `ModuleTree` of the model built on
    the meta device, `meta_module_tree`) call this alike."""
    tree = model if isinstance(model, ModuleTree) else module_tree(model)
    if lora.target_modules is not None:
        check_lora_targets(tree.names, lora)
        return lora
    if not tree.projections:
        raise ConfigError(
            f"no attention or MLP projections found for LoRA in {tree.model_class} (no nn.Linear in "
            "its decoder layers): name the layers in lora.target_modules"
        )
    return lora.model_copy(update={"target_modules": list(tree.projections)})


def lora_modules(model: Any) -> list[str]:
    """The names (last name part, in module order) of the layers of `model` that hold LoRA adapters: what a
    run records as the targets it trained (empty without LoRA)."""
    found: dict[str, None] = {}
    for name, _ in model.named_modules():
        if name.endswith(".lora_A"):
            found[name.rsplit(".", 2)[-2]] = None
    return list(found)


def lora_parameter_count(model: Any, lora: LoraSettings) -> int:
    """Parameters of the LoRA adapters `apply_lora` puts on `model` (the loaded LM, or the `ModuleTree` of
    the one built on the meta device at submit): `lora.r` x (in + out features) for each layer its targets
    name (`resolve_lora`; peft matches them by the last name part), from the layers' weight shapes, so
    nothing is allocated (nn.Linear keeps its weight as (out, in), GPT-2's Conv1D as (in, out): the sum is
    the same)."""
    tree = model if isinstance(model, ModuleTree) else module_tree(model)
    targets = set(resolve_lora(tree, lora).target_modules or ())
    return sum(
        lora.r * sum(shape) for name, shape in tree.weight_shapes if name.rsplit(".", 1)[-1] in targets
    )


def check_lora_targets(module_names: Iterable[str], lora: LoraSettings) -> None:
    """ConfigError naming the `lora.target_modules` that no module of the model (named `module_names`) is
    called: the built model's (`apply_lora`) or the one built on the meta device at submit
    (`check_causal_lm`)."""
    names = {name.rsplit(".", 1)[-1] for name in module_names}
    missing = [t for t in lora.target_modules or () if t not in names]
    if missing:
        raise ConfigError(f"LoRA target modules not in the model: {', '.join(missing)}")


def apply_lora(model: Any, lora: LoraSettings) -> Any:
    """The model wrapped by peft with adapters on `lora.target_modules` (None: the model's projections,
    `resolve_lora`); only the adapters train."""
    from peft import LoraConfig, get_peft_model

    targets = resolve_lora(model, lora).target_modules or []
    modules = list(model.named_modules())
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(targets),
        # GPT-2's Conv1D projections keep their weights transposed: peft would set this itself, with a warning
        fan_in_fan_out=any(
            type(module).__name__ == "Conv1D" and name.rsplit(".", 1)[-1] in targets
            for name, module in modules
        ),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def _check_one_reference(config: CausalLMConfig) -> None:
    if config.from_pretrained and config.path != BUNDLED_NAME and config.path != config.from_pretrained:
        raise ConfigError("set either path or from_pretrained for causal_lm, not both")


def check_causal_lm(config: CausalLMConfig) -> None:
    """The family's check before a run is created (`ModelSpec.check`: the command line and the API's submit):
    one model reference, naming a model that is there, that is a causal LM (`check_causal_lm_model`), with
    at least `num_layers` layers and every LoRA target module named, or with none named projections to put
    LoRA on (`resolve_lora`, as the run resolves them), read from its files (config.json, the GGUF header;
    the modules from the model built on the meta device), not loaded.
    Each was refused once the run loaded the model, which stayed a failed run. Each refusal names its field
    (`InvalidConfigError`: from_pretrained, path, num_layers, lora.target_modules), in the words of the run's
    own checks (`build`, `load_causal_lm`, `keep_layers`, `apply_lora`: the same functions).

    Only a model this process finds and whose files say is checked, since a refusal here must be certain and
    the run's checks remain: a training run still queued or running whose model it names is left to the run
    (over the API the run may save it first), and so are files that do not say (an unreadable config.json, a
    config transformers cannot build, a GGUF architecture transformers does not know), which the run loads
    and decides on with these same checks. A reference found nowhere is refused as it was before (the API
    confines model paths to its read roots first, `service.confine.resolve_model`).

    The model's type is checked without torch (transformers' causal-LM list is read from its source).
    LoRA's check needs the modeling code of the meta model (torch and transformers): a process without them
    (the API's) has a child process build it (`meta_module_tree`), 4 + 4 CPU-s measured on this 2-core
    machine under a load of 5, once per model file version; it imported them into the API's process."""
    try:
        _check_one_reference(config)
    except ConfigError as exc:
        raise InvalidConfigError.at("from_pretrained", exc.message) from None
    try:
        resolved = resolve_model_ref(config.reference())
    except NotFoundError as exc:
        run_id = exc.details.get("run_id")
        if isinstance(run_id, str) and open_registry().get(run_id).status in (
            RunStatus.QUEUED,
            RunStatus.RUNNING,
        ):
            return
        raise
    try:
        check_causal_lm_model(resolved)
    except InvalidInputError as exc:
        raise InvalidConfigError.at(
            ("from_pretrained" if config.from_pretrained else "path",), exc.message
        ) from None
    layers = model_layers(resolved)
    if config.num_layers is not None and layers is not None:
        try:
            check_layer_count(config.num_layers, layers)
        except ConfigError as exc:
            raise InvalidConfigError.at("num_layers", exc.message) from None
    if config.lora is not None and (tree := meta_module_tree(resolved)) is not None:
        try:
            resolve_lora(tree, config.lora)
        except ConfigError as exc:
            raise InvalidConfigError.at(("lora", "target_modules"), exc.message) from None


def build(config: CausalLMConfig, tokenizer: Any) -> Any:
    """Load the referenced model and apply the layer count, checkpointing and LoRA settings."""
    _check_one_reference(config)
    model = load_causal_lm(resolve_model_ref(config.reference()), dtype=config.dtype)
    if tokenizer is not None and len(tokenizer) > model.config.vocab_size:
        model.resize_token_embeddings(len(tokenizer))
    if config.num_layers is not None:
        keep_layers(model, config.num_layers)
    model.config.tldrlab_instruction = config.instruction
    if config.gradient_checkpointing:
        # Non-reentrant checkpointing works with frozen inputs (LoRA) without enable_input_require_grads.
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if config.lora is not None:
        model = apply_lora(model, config.lora)
    return model


def is_peft_model(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # peft is a dependency; a broken install just means no LoRA models exist
        return False
    return isinstance(model, PeftModel)


def export_model(model: Any, out_dir: Path) -> None:
    """Write the model into `out_dir` (which exists) so plain transformers loads it: LoRA merged into the base
    (its adapters also saved under `adapter/`), safetensors, config.json with caching back on."""
    if is_peft_model(model):
        save_pretrained(model, out_dir / ADAPTER_SUBDIR, safe_serialization=True)
        # Merge a copy: the caller's model keeps its adapters (training may go on).
        model = copy.deepcopy(model).merge_and_unload()
    config = model.config
    restore_cache = config.use_cache
    config.use_cache = True
    try:
        save_pretrained(model, out_dir, safe_serialization=True)
    finally:
        config.use_cache = restore_cache


def load_exported(directory: Path) -> Any:
    """A model directory written by `export_model` or by transformers."""
    return load_causal_lm(ResolvedModel(directory, "directory", "path", str(directory)))
