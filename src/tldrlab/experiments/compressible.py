"""Which pretrained causal LMs compression can cut, known from the model's files before it is loaded.

Compression (`experiments.lm_compression`) keeps the Llama layout: grouped-query attention with separate
q/k/v/o projections and a gated MLP, as Llama, Mistral and Qwen2 models (SmolLM2 among them) have. Another
architecture was refused only once the whole model was loaded (a GGUF file de-quantized first) inside a run
that then failed; its architecture is in its `config.json` or GGUF header, read in microseconds at submit.
No torch here: the API runs this check too.
"""

from __future__ import annotations

from pathlib import Path

from tldrlab.errors import AmbiguousRunIdError, InvalidConfigError, NotFoundError
from tldrlab.experiments.config import LMCompressConfig, LMExperimentConfig
from tldrlab.models.architecture import model_architecture
from tldrlab.models.resolve import ResolvedModel, resolve_model_ref

COMPRESSIBLE_ARCHITECTURES = ("llama", "mistral", "qwen2")
"""Architectures (`config.json` model_type, GGUF general.architecture) compression cuts."""


def model_if_there(ref: str, field: str = "model") -> ResolvedModel | None:
    """The model `ref` names, or None when it is not there yet (over the API an earlier queued run may write
    it). A run id prefix several runs share is no model that may appear later: it is refused now, naming
    `field` (the run would fail on it once started, after the submit said the config was fine)."""
    try:
        return resolve_model_ref(ref)
    except AmbiguousRunIdError as exc:  # a NotFoundError: caught below, it reached the user only in the run
        message = f"{exc.message}: give more of the run id"
        raise InvalidConfigError.at(field, message) from None
    except NotFoundError:
        return None


def refuse_uncompressible(ref: str, field: str = "model") -> None:
    """InvalidConfigError naming `field` when the model `ref` names is of an architecture compression cannot
    cut. A model that is not there yet, or whose files do not say, is left to the run (over the API an
    earlier queued run may write it; loading it checks its layout again)."""
    resolved = model_if_there(ref, field)
    if resolved is None:
        return
    architecture = model_architecture(resolved)
    if architecture is None or architecture in COMPRESSIBLE_ARCHITECTURES:
        return
    message = (
        f"{ref} is a {architecture} model; compression cuts Llama-style causal LMs "
        f"({', '.join(COMPRESSIBLE_ARCHITECTURES)})"
    )
    raise InvalidConfigError.at(field, message)


def check_compressible(config: LMCompressConfig) -> LMCompressConfig:
    """Kind `lm_compress`'s prepare step (command line and API alike, before its run exists)."""
    refuse_uncompressible(config.model)
    return config


def check_compress_out(config: LMCompressConfig) -> None:
    """Kind `lm_compress`'s check before its run exists (command line and API alike): `out`, the directory
    the cut model is exported to, is not a file. `experiment compress --out notes.txt` loaded, ranked and cut
    the model, then failed at the export with a FileExistsError traceback and left a failed run. Nor is it
    the directory of the model being compressed: `experiment compress mylm --out mylm` replaced the model's
    weights and config with its cut, and the pretrained model was gone."""
    if not config.out:
        return
    if Path(config.out).is_file():
        raise InvalidConfigError.at("out", f"{config.out} is a file: give a directory to export the model to")
    source = model_if_there(config.model)
    if source is not None and Path(config.out).resolve() == source.directory.resolve():
        raise InvalidConfigError.at(
            "out",
            f"{config.out} is the directory of the model being compressed ({config.model}): the cut would "
            "replace it; give another directory to export it to",
        )


def check_experiment_compressible(config: LMExperimentConfig) -> LMExperimentConfig:
    """Part of kind `lm_experiment`'s prepare step (`lm_prepare`): with a compressed arm, the model must be
    one compression cuts (its baseline arm fine-tuned first, for as long as the budget says, before that arm
    failed)."""
    if any(arm.startswith("compressed") for arm in config.arms):
        refuse_uncompressible(config.model)
    return config
