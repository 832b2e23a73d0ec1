"""The ELM: a document embedding -> N soft prefix vectors (the adapter) -> a decoder LM writes the summary.

    model, tokenizer = build_elm(ElmModelConfig(lm="scratch", lm_size="tiny"), tokenizer=bpe)
    out = model(embeddings, input_ids, attention_mask, prefix_mask)   # logits + projected summary reps
    texts = generate_summaries(model, tokenizer, embeddings, [template] * n)
    save_elm(model, tokenizer, "out/elm");  model, tokenizer = load_elm("out/elm")

The prompt template's `{text}` is replaced by the prefix: input = embed(before) + prefix + embed(after) +
embed(target). The adapter (its knobs: hidden size, dropout and residual scale):

    prefix(e) = reshape(W_direct e + residual_scale * MLP(e), (N, width))
    MLP(e)    = W_2 dropout(GELU(W_1 e + b_1)) + b_2      W_1: dim -> hidden_dim, W_2: hidden_dim -> N*width

A linear drift head maps the LM's mean target hidden state back to the embedding space (for the drift and
contrastive losses). The LM is one of LM_SOURCES: a GPT-2 built from scratch by tldrlab.models, a tldrlab
model directory (a GPT-2 trained by `tldrlab train`), or any Hugging Face causal LM by name or path.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tldrlab.elm.config import ElmModelConfig
from tldrlab.errors import AmbiguousRunIdError, CheckpointError, ConfigError, InvalidInputError, NotFoundError
from tldrlab.evaluate.generate import filter_logits
from tldrlab.models import build_model, load_model, model_task
from tldrlab.models.causal_lm import LoraSettings, apply_lora
from tldrlab.models.resolve import resolve_model_ref
from tldrlab.runs import RunStatus, open_registry
from tldrlab.runs.atomic import atomic_write_json
from tldrlab.runs.weights import save_pretrained, save_safetensors

CONFIG_FILE = "elm_config.json"
ADAPTER_FILE = "adapter.safetensors"
LM_SUBDIR = "lm"


class SummaryAdapter(nn.Module):
    """Embedding (B, dim) -> prefix (B, N, width)."""

    def __init__(self, embedding_dim: int, width: int, config: ElmModelConfig) -> None:
        super().__init__()
        n = config.num_prefix_tokens
        self.num_prefix_tokens, self.width, self.residual_scale = n, width, config.residual_scale
        self.direct = nn.Linear(embedding_dim, n * width)
        self.mlp = nn.Sequential(
            nn.Linear(embedding_dim, config.hidden_dim),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden_dim, n * width),
        )

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        flat = self.direct(embeddings) + self.residual_scale * self.mlp(embeddings)
        return flat.view(embeddings.size(0), self.num_prefix_tokens, self.width)


class ElmModel(nn.Module):
    """Adapter + LM + drift head (LM hidden width -> embedding space)."""

    def __init__(self, lm: nn.Module, config: ElmModelConfig) -> None:
        super().__init__()
        self.config = config
        self.lm = lm
        width = lm_width(lm)
        self.adapter = SummaryAdapter(config.embedding_dim, width, config)
        self.drift_head = nn.Linear(width, config.embedding_dim)
        if config.freeze_lm:
            self.lm.requires_grad_(False)
        if config.lora_rank is not None:  # on a frozen pretrained LM: ElmModelConfig refuses any other
            # no targets named: the LM's own attention and MLP projections (`causal_lm.resolve_lora`)
            self.lm = apply_lora(lm, LoraSettings(r=config.lora_rank, alpha=config.lora_alpha))
        if config.gradient_checkpointing:
            if not getattr(lm, "supports_gradient_checkpointing", False):
                raise ConfigError(f"{type(lm).__name__} does not support gradient checkpointing")
            kwargs = {"use_reentrant": False}
            if hasattr(lm, "activation_checkpointing_enable"):  # transformers >= 5.x names it so
                lm.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)  # type: ignore[operator]
            else:
                lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)  # type: ignore[operator]

    def input_embeds(
        self, embeddings: torch.Tensor, input_ids: torch.Tensor, prefix_mask: torch.Tensor
    ) -> torch.Tensor:
        """Token embeddings with the adapter's prefix written into the `prefix_mask` positions (in order)."""
        token_embeds = self.lm.get_input_embeddings()(input_ids)  # type: ignore[operator]
        prefix = self.adapter(embeddings.to(token_embeds.dtype)).to(token_embeds.dtype)
        return token_embeds.masked_scatter(prefix_mask.unsqueeze(-1), prefix)

    def forward(
        self,
        embeddings: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        prefix_mask: torch.Tensor,
        target_mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """logits (B, L, V); with `target_mask` also the projected summary representation (B, dim)."""
        inputs = self.input_embeds(embeddings, input_ids, prefix_mask)
        out = self.lm(
            inputs_embeds=inputs, attention_mask=attention_mask, output_hidden_states=target_mask is not None
        )
        result = {"logits": out.logits}
        if target_mask is not None:
            hidden = out.hidden_states[-1]
            weights = target_mask.to(hidden.dtype).unsqueeze(-1)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
            result["summary"] = self.drift_head(pooled)
        return result


# -- the language model -------------------------------------------------------------------------------------
def _scratch_lm(config: ElmModelConfig, tokenizer: Any) -> tuple[nn.Module, Any]:

    if tokenizer is None:
        raise ConfigError("lm=scratch needs a tokenizer (a trained tokenizer directory or one trained first)")
    return build_model("gpt2", {"size": config.lm_size, **config.lm_settings}, tokenizer), tokenizer


def _tldrlab_lm(config: ElmModelConfig, tokenizer: Any) -> tuple[nn.Module, Any]:

    model, loaded_tokenizer, name = load_model(config.lm)
    if model_task(name) not in ("causal_lm", "chat") or name == "char_lstm":
        raise ConfigError(
            f"--lm {config.lm}: a {name} model; the ELM needs a transformers causal LM (gpt2, causal_lm)"
        )
    model.train()
    return model, loaded_tokenizer


def _hf_lm(config: ElmModelConfig, tokenizer: Any) -> tuple[nn.Module, Any]:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path: str = config.lm
    kwargs: dict[str, str] = {}
    with contextlib.suppress(NotFoundError):  # a model reference (home-relative path, run id, ...)
        path, kwargs = resolve_model_ref(config.lm).from_pretrained_args()
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        loaded = AutoTokenizer.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise NotFoundError(
            f"--lm {config.lm}: cannot load a causal LM (offline: give a local path): {exc}"
        ) from exc
    if loaded.pad_token is None:
        loaded.pad_token = loaded.eos_token
    model.train()
    return model, loaded


LM_SOURCES: dict[str, Callable[[ElmModelConfig, Any], tuple[nn.Module, Any]]] = {
    "scratch": _scratch_lm,
    "tldrlab": _tldrlab_lm,
    "hf": _hf_lm,
}
"""Where the LM comes from -> (config, tokenizer or None) -> (LM, its tokenizer)."""


def lm_source(lm: str) -> str:
    """scratch; tldrlab (a model reference `models.resolve` finds that tldrlab saved, or a GGUF file / the
    bundled `smollm2`); or hf (a plain transformers directory, or a name only the Hugging Face cache
    holds)."""
    if lm == "scratch":
        return "scratch"
    try:
        resolved = resolve_model_ref(lm)
    except AmbiguousRunIdError:
        raise  # the start of several run ids: meant as a run, not a Hugging Face name to look up
    except NotFoundError:
        return "hf"
    if resolved.kind == "directory" and not (resolved.path / "tldrlab_model.json").is_file():
        return "hf"
    return "tldrlab"


def load_elm_lm(config: ElmModelConfig, tokenizer: Any = None) -> tuple[nn.Module, Any]:
    """The configured LM and its tokenizer, before the adapter is built on it (`ElmModel`): a run checks the
    adapter's size against the LM's width in between (`tldrlab.elm.train.check_adapter_budget_as_read`)."""
    lm, lm_tokenizer = LM_SOURCES[lm_source(config.lm)](config, tokenizer)
    if lm_tokenizer is None or lm_tokenizer.eos_token_id is None:
        raise ConfigError(f"--lm {config.lm}: the LM's tokenizer has no end-of-sequence token")
    if not hasattr(lm, "get_input_embeddings"):
        raise ConfigError(f"--lm {config.lm}: {type(lm).__name__} has no input embeddings to prefix")
    return lm, lm_tokenizer


def lm_width(lm: nn.Module) -> int:
    """The width of the LM's token embeddings: the size of each prefix vector the adapter writes."""
    return int(lm.get_input_embeddings().embedding_dim)  # type: ignore[operator]


def build_elm(config: ElmModelConfig, tokenizer: Any = None) -> tuple[ElmModel, Any]:
    """A fresh adapter on the configured LM; returns the model and the LM's tokenizer."""
    lm, lm_tokenizer = load_elm_lm(config, tokenizer)
    return ElmModel(lm, config), lm_tokenizer


def lm_max_positions(model: ElmModel) -> int | None:
    config = getattr(model.lm, "config", None)
    for key in ("n_positions", "max_position_embeddings"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    return None


# -- prompts and generation ---------------------------------------------------------------------------------
def encode_template(tokenizer: Any, template: str) -> tuple[list[int], list[int]]:
    """Token ids before and after `{text}` (a template without it puts the prefix first)."""
    before, _, after = template.partition("{text}") if "{text}" in template else ("", "", template)
    encode = lambda text: list(tokenizer.encode(text, add_special_tokens=False)) if text else []  # noqa: E731
    return encode(before), encode(after)


def prompt_ids(
    before: list[int], after: list[int], n_prefix: int, filler: int
) -> tuple[list[int], list[bool]]:
    """Ids of one prompt with `filler` where the prefix goes, and the prefix positions."""
    ids = [*before, *([filler] * n_prefix), *after]
    mask = [False] * len(before) + [True] * n_prefix + [False] * len(after)
    return ids, mask


@torch.no_grad()
def generate_summaries(
    model: ElmModel,
    tokenizer: Any,
    embeddings: torch.Tensor,
    templates: list[str],
    *,
    max_new_tokens: int = 48,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 32,
) -> list[str]:
    """One summary per embedding: greedy (temperature 0) or seeded sampling, with a KV cache.

    Prompts of a batch share their template, so no padding is needed and every row decodes exactly as it
    would alone.
    """

    if len(templates) != len(embeddings):
        raise InvalidInputError(f"{len(embeddings)} embeddings but {len(templates)} templates")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    filler = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    limit = lm_max_positions(model)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    outputs: list[str] = [""] * len(templates)
    groups: dict[str, list[int]] = {}
    for i, template in enumerate(templates):
        groups.setdefault(template, []).append(i)
    for template, indices in groups.items():
        before, after = encode_template(tokenizer, template)
        ids, mask = prompt_ids(before, after, model.config.num_prefix_tokens, filler)
        steps = max_new_tokens if limit is None else min(max_new_tokens, limit - len(ids))
        if steps < 1:
            raise InvalidInputError(
                f"the prompt ({len(ids)} tokens) leaves no room in the LM's {limit} positions"
            )
        for start in range(0, len(indices), batch_size):
            rows = indices[start : start + batch_size]
            n = len(rows)
            input_ids = torch.tensor([ids] * n, device=device)
            prefix_mask = torch.tensor([mask] * n, device=device)
            inputs = model.input_embeds(embeddings[rows].to(device), input_ids, prefix_mask)
            out = model.lm(inputs_embeds=inputs, use_cache=True)
            past = out.cache
            logits = out.logits[:, -1, :]
            tokens: list[list[int]] = [[] for _ in rows]
            done = torch.zeros(n, dtype=torch.bool)
            for _ in range(steps):
                logits = logits.float()
                if temperature <= 0:
                    next_tokens = logits.argmax(-1).cpu()
                else:
                    probs = torch.softmax(filter_logits(logits / temperature, top_k, top_p), -1).cpu()
                    next_tokens = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
                for row, token in enumerate(next_tokens.tolist()):
                    if not done[row]:
                        if token == eos:
                            done[row] = True
                        else:
                            tokens[row].append(token)
                if bool(done.all()):
                    break
                out = model.lm(input_ids=next_tokens.view(n, 1).to(device), cache=past, use_cache=True)
                past, logits = out.cache, out.logits[:, -1, :]
            for row, index in enumerate(rows):
                outputs[index] = tokenizer.decode(tokens[row], skip_special_tokens=True).strip()
    model.train(was_training)
    return outputs


# -- saving and loading -------------------------------------------------------------------------------------
def _adapter_state(model: ElmModel) -> dict[str, torch.Tensor]:
    """Adapter, drift head and any LoRA weights on the LM (what a frozen LM's ELM saves)."""
    return {
        k: v.detach().contiguous()
        for k, v in model.state_dict().items()
        if not k.startswith("lm.") or ".lora_" in k
    }


def save_elm(model: ElmModel, tokenizer: Any, out_dir: Path | str, **extra: Any) -> Path:
    """adapter.safetensors (adapter + drift head), elm_config.json and, unless the LM is a frozen external
    one (then only its name is kept), the LM with its tokenizer under lm/."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = model.config
    external = config.freeze_lm and config.lm != "scratch"
    if not external:
        save_pretrained(model.lm, out / LM_SUBDIR, safe_serialization=True)
    save_pretrained(tokenizer, out / LM_SUBDIR)
    save_safetensors(_adapter_state(model), out / ADAPTER_FILE)
    settings = config.model_dump(mode="json")
    if external and Path(config.lm).exists():
        # the LM is loaded from this reference whenever the ELM is: a path relative to where it trained
        # named nothing (or another LM) from any other working directory
        settings["lm"] = str(Path(config.lm).resolve())
    atomic_write_json(out / CONFIG_FILE, {"model": settings, "lm_saved": not external, **extra})
    return out


def resolve_elm_dir(path_or_run: Path | str) -> Path:
    """An ELM directory: the path, its model/ subdirectory, or <run_dir>/model of a run id."""
    if not str(path_or_run).strip():  # Path("") is the working directory: a blank name is not a path
        raise InvalidInputError("the ELM is empty: give an ELM directory or a run id")
    path = Path(path_or_run)
    record = None
    if not path.exists():
        try:
            record = open_registry().find(str(path_or_run))
        except AmbiguousRunIdError:
            raise  # several runs match: "no such run" would hide that a longer prefix picks one
        except NotFoundError:
            raise NotFoundError(f"no ELM directory or run named {str(path_or_run)!r}") from None
        path = Path(record.run_dir)
    for candidate in (path, path / "model"):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    if record is not None and record.status != RunStatus.COMPLETED:
        # "no ELM in <run dir>" read as a wrong path: a queued or running training has not saved it yet
        raise NotFoundError(
            f"run {record.id} ({record.kind}, {record.status.value}) has saved no ELM: an elm_train run "
            "saves it when it completes"
        )
    raise NotFoundError(f"no ELM in {path} (expected {CONFIG_FILE} there or in model/)")


def load_adapter_weights(model: ElmModel, path: Path | str) -> None:
    """Load adapter + drift head weights from an adapter.safetensors (resuming from saved weights)."""
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors' own error type for damaged files
        raise CheckpointError(f"cannot read adapter weights {path}: {exc}") from exc
    own = _adapter_state(model)
    wrong = [k for k in own if k not in state or state[k].shape != own[k].shape]
    if wrong:
        raise CheckpointError(
            f"{path} does not fit this adapter (missing or differently shaped: {wrong[:4]})"
        )
    model.load_state_dict(state, strict=False)


def load_elm(path_or_run: Path | str, *, device: str | None = None) -> tuple[ElmModel, Any]:
    """(model in eval mode, tokenizer) from a saved ELM directory or run."""
    directory = resolve_elm_dir(path_or_run)
    try:
        saved = json.loads((directory / CONFIG_FILE).read_text(encoding="utf-8"))
        config = ElmModelConfig.model_validate({**saved["model"], "gradient_checkpointing": False})
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"cannot read {directory / CONFIG_FILE}: {exc}") from exc
    lm_dir = directory / LM_SUBDIR
    if saved.get("lm_saved", True):
        config = config.model_copy(update={"lm": str(lm_dir)})
    model, tokenizer = build_elm(config)
    if (lm_dir / "tokenizer.json").is_file() or (lm_dir / "tokenizer_config.json").is_file():
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(lm_dir))
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    load_adapter_weights(model, directory / ADAPTER_FILE)
    if device:
        model.to(device)
    model.eval()
    return model, tokenizer
