"""Kind `lm_experiment`'s prepare step: what the pretrained model's files say about the experiment, checked
before a run exists (the command line exits 2, `POST /runs` answers 422 naming the field).

- With a compressed arm, the model must be one compression cuts (`compressible`).
- A model with learned positions (GPT-2's `n_positions`) must leave room for the chat prompt beside an answer
  of `max_target_tokens` and beside `max_new_tokens` generated tokens: documents are cut to fit the rest
  (`lm_experiment.ArmTask`, `summarize_records`), answers and generation lengths are what the config asks
  for. Here only what no prompt can fit is refused (the answer alone takes every position: the prompt's own
  length needs the tokenizer, which the run checks before its first arm trains, `check_context_fits`).
- The model is a causal LM (`check_lm_model`, the kind's check: by the function its arms' load calls).

No torch here: the API runs this too (`check_lm_model`, the kind's check, reads transformers' table of
causal-LM model types from its source, `models.transformers_tables`, as a `causal_lm` training's check does).
"""

from __future__ import annotations

from tldrlab.errors import InvalidConfigError, InvalidInputError
from tldrlab.experiments.compressible import check_experiment_compressible, model_if_there
from tldrlab.experiments.config import LMExperimentConfig, refuse_trained_eval_data
from tldrlab.models.architecture import model_positions
from tldrlab.models.causal_lm import check_causal_lm_model


def refuse_short_context(config: LMExperimentConfig) -> None:
    """InvalidConfigError naming the token budget that fills the model's every position (no prompt fits
    beside it). A model that is not there yet, or whose files do not say, is left to the run."""
    resolved = model_if_there(config.model)
    if resolved is None:
        return
    positions = model_positions(resolved)
    if positions is None:
        return
    for field, tokens in (
        ("max_target_tokens", config.max_target_tokens),
        ("max_new_tokens", config.max_new_tokens),
    ):
        if tokens >= positions:
            message = (
                f"{tokens} tokens leave no room for the chat prompt in the model's {positions} positions "
                f"(n_positions): lower {field} well below {positions}, or use a model with a longer context"
            )
            raise InvalidConfigError.at(field, message)


def check_lm_model(config: LMExperimentConfig) -> None:
    """Kind `lm_experiment`'s check before a run is created (command line and API alike): its model is a
    causal LM, by the check its arms' load makes (`models.causal_lm.check_causal_lm_model`: config.json or
    the GGUF header, against transformers' table read without importing it). With a compressed arm
    the prepare step has refused any model compression cannot cut; a baseline arm alone was accepted with a
    T5 and failed once it loaded the model. A model that is not there yet, or whose files do not say, is
    left to the run."""
    resolved = model_if_there(config.model)
    if resolved is None:
        return
    try:
        check_causal_lm_model(resolved)
    except InvalidInputError as exc:
        raise InvalidConfigError.at("model", exc.message) from None


def prepare_lm_experiment(config: LMExperimentConfig) -> LMExperimentConfig:
    """Kind `lm_experiment`'s prepare step (command line and API alike, before its run exists)."""
    check_experiment_compressible(config)
    refuse_short_context(config)
    refuse_trained_eval_data(config.data, config.eval_data, config.format)
    return config
