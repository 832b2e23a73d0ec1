"""Run kinds `evaluate`, `generate` and `score`: the API's requests against a trained model, as queued runs.

Each run's config names the training run (`model_run`, set by the API) plus the request's options. The work
itself is tldrlab.evaluate's (`evaluate_model`, `generate`, `score_text`); the return value becomes the run's
`artifacts/result.json`, which `GET /runs/{id}/generate/{request_id}` (and score, eval) returns.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tldrlab.errors import InvalidInputError
from tldrlab.runs import Run
from tldrlab.runs.paths import InputPath, SettingsOf

GENERATE_OPTIONS = "tldrlab.evaluate.generate:GenerateOptions"


class GenerateRequest(BaseModel):
    """`POST /runs/{id}/generate` config."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    model_run: str
    """The training run whose model generates."""
    prompts: list[str] = Field(min_length=1, max_length=64)
    """Inputs: documents to summarise (seq2seq) or text to continue (LM)."""
    options: Annotated[dict[str, Any], SettingsOf("", GENERATE_OPTIONS)] = Field(default_factory=dict)
    """tldrlab.evaluate.GenerateOptions fields (max_new_tokens, temperature, top_k, top_p, seed, ...)."""


class ScoreRequest(BaseModel):
    """`POST /runs/{id}/score` config."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    model_run: str
    """The training run whose model scores."""
    text: str = Field(min_length=1, max_length=100_000)
    """Text to score (the summary, for seq2seq models)."""
    source: str = ""
    """Seq2seq: the document the text summarises."""
    top_k: int = Field(default=5, ge=0, le=50)
    """Top predictions reported per token."""


class EvaluateRequest(BaseModel):
    """`POST /runs/{id}/evaluate` config: EvalConfig overrides (data defaults to the run's)."""

    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)

    model_run: str
    """The training run to evaluate."""

    data: Annotated[str | None, InputPath()] = None
    """Evaluate on this data instead of the training run's."""

    generation: Annotated[dict[str, Any] | None, SettingsOf("", GENERATE_OPTIONS)] = None
    """Decoding options (tldrlab.evaluate.GenerateOptions fields)."""

    @model_validator(mode="after")
    def _known_overrides(self) -> EvaluateRequest:
        from tldrlab.evaluate.run_eval import EvalConfig

        unknown = sorted(set(self.model_extra or {}) - set(EvalConfig.model_fields))
        if unknown:
            raise ValueError(f"unknown evaluation settings: {', '.join(unknown)}")
        return self


def _parse(model: type[BaseModel], config: dict[str, Any]) -> Any:
    try:
        return model.model_validate(config)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InvalidInputError(f"invalid request: {problems}") from exc


def _load(run: Run, model_run: str) -> tuple[Any, Any, str]:
    from tldrlab.models import load_model

    run.log(f"loading the model of run {model_run}")
    model, tokenizer, name = load_model(model_run)
    if tokenizer is None:
        raise InvalidInputError(f"run {model_run} saved no tokenizer")
    return model, tokenizer, name


def generate_job(run: Run) -> dict[str, Any]:
    from tldrlab.evaluate import GenerateOptions, generate

    request: GenerateRequest = _parse(GenerateRequest, run.config)
    options = _parse(GenerateOptions, request.options)
    model, tokenizer, name = _load(run, request.model_run)
    outputs = generate(model, tokenizer, request.prompts, options)
    run.set_summary(prompts=len(request.prompts))
    return {"model": name, "outputs": outputs}


def score_job(run: Run) -> dict[str, Any]:
    from tldrlab.evaluate import score_text

    request: ScoreRequest = _parse(ScoreRequest, run.config)
    model, tokenizer, name = _load(run, request.model_run)
    result = score_text(model, tokenizer, request.text, request.top_k, source=request.source)
    run.set_summary(**{k: v for k, v in result.items() if k in ("loss", "perplexity", "tokens")})
    return {"model": name, **result}


def evaluate_job(run: Run) -> dict[str, Any]:
    from tldrlab.evaluate.run_eval import eval_config_for, evaluate_model

    request: EvaluateRequest = _parse(EvaluateRequest, run.config)
    overrides = dict(request.model_extra or {})
    overrides.update({k: v for k, v in (("data", request.data), ("generation", request.generation)) if v})
    config, _, _ = eval_config_for(request.model_run, **overrides)
    model, tokenizer, name = _load(run, request.model_run)
    run.log(f"evaluating {name} on split {config.split}")
    result = evaluate_model(model, tokenizer, name, config, run.dir)  # eval.json + samples.jsonl here
    numeric = {k: v for k, v in result["metrics"].items() if isinstance(v, int | float)}
    run.log_metrics(0, **numeric)
    run.set_summary(**numeric)
    return result
