"""What runs of the kinds `evaluate`, `generate` and `score` execute (see tldrlab.kinds).

Each takes the run and its validated config and returns the result the API serves as the run's
`artifacts/result.json` (`GET /runs/{id}/generate/{request_id}`, score, eval). The CLI's `tldrlab eval`
launches the same `evaluate` kind.
"""

from __future__ import annotations

from typing import Any

from tldrlab.errors import InvalidInputError
from tldrlab.evaluate.config import EvaluateConfig, GenerateConfig, ScoreConfig
from tldrlab.evaluate.generate import generate
from tldrlab.evaluate.run_eval import EVAL_FILE, PLOT_FILE, SAMPLES_FILE, eval_config_for, evaluate_model
from tldrlab.evaluate.score import score_text
from tldrlab.models.io import load_model
from tldrlab.runs import Run
from tldrlab.runs.atomic import atomic_write_bytes


def _load(run: Run, model_run: str) -> tuple[Any, Any, str]:
    run.log(f"loading the model of {model_run}")
    model, tokenizer, name = load_model(model_run)
    if tokenizer is None:
        raise InvalidInputError(f"{model_run}: the saved model has no tokenizer files")
    return model, tokenizer, name


def generate_job(run: Run, config: GenerateConfig) -> dict[str, Any]:
    model, tokenizer, name = _load(run, config.model_run)
    outputs = generate(model, tokenizer, config.prompts, config.options)
    run.set_summary(prompts=len(config.prompts))
    return {"model": name, "outputs": outputs}


def score_job(run: Run, config: ScoreConfig) -> dict[str, Any]:
    model, tokenizer, name = _load(run, config.model_run)
    result = score_text(model, tokenizer, config.text, config.top_k, source=config.source)
    run.set_summary(**{k: v for k, v in result.items() if k in ("loss", "perplexity", "tokens")})
    return {"model": name, **result}


def evaluate_job(run: Run, config: EvaluateConfig) -> dict[str, Any]:
    """Evaluate into the run (eval.json, samples.jsonl, eval.png) and next to the evaluated run's model."""
    eval_config, out_dir, _ = eval_config_for(config.model_run, **config.overrides())
    model, tokenizer, name = _load(run, config.model_run)
    run.log(f"evaluating {name} on {eval_config.data} split={eval_config.split}")
    result = evaluate_model(model, tokenizer, name, eval_config, run.dir, run=run)
    out_dir = out_dir or run.dir  # a GGUF file, the bundled or an installed model: results stay in the run
    for file in (EVAL_FILE, SAMPLES_FILE, PLOT_FILE):
        if out_dir.resolve() != run.dir.resolve():
            atomic_write_bytes(out_dir / file, (run.dir / file).read_bytes())
    numeric = {k: v for k, v in result["metrics"].items() if isinstance(v, int | float)}
    run.log_metrics(0, **numeric)
    run.set_summary(**numeric)
    run.add_artifact(run.dir / EVAL_FILE, kind="eval")
    run.add_artifact(run.dir / SAMPLES_FILE, kind="samples")
    run.add_artifact(run.dir / PLOT_FILE, kind="plot")
    return {**result, "run_id": run.id, "out_dir": str(out_dir)}
