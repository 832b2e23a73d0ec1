"""`score_text`: how surprising a text is to a model, token by token.

For a causal LM the text is scored after a bos token, or eos where the tokenizer has no bos (so its first
token is predicted too); for a seq2seq model it is scored as the target of `source` (empty by default),
ending with eos; for a chat model with a `source` it is scored as the model's answer (ending with
end-of-turn) to the summary request for `source`.
The mean of the per-token surprisal (in bits) times ln 2 equals the loss (in nats).

At most `max_tokens` of the text's tokens are scored (its start), and a seq2seq or chat `source` is cut to as
many: a forward pass over a whole long text (100,000 characters are 100,000 tokens to a character tokenizer)
took minutes and its per-token log-probabilities gigabytes. A model with learned positions (GPT-2's
`n_positions`) cuts shorter still. The result says whether the text was cut (`truncated`) and how many
tokens it had (`text_tokens`) beside how many were scored (`num_tokens`).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from tldrlab.errors import InvalidInputError
from tldrlab.evaluate.config import DEFAULT_MAX_SCORED_TOKENS
from tldrlab.evaluate.metrics import perplexity
from tldrlab.models.chat import chat_pair_ids, context_limit, instruction_of, truncate_text
from tldrlab.models.registry import model_name_of, model_task, unwrap_model
from tldrlab.tokenizers.plain import plain_ids


def start_token_id(tokenizer: Any) -> int:
    """The token a causal LM's text is scored after: bos, else eos (Qwen2's tokenizers have no bos; eos is
    what separates documents in such a model's pretraining, so a text after it starts afresh)."""
    for token_id in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    raise InvalidInputError("the model's tokenizer has neither a bos nor an eos token to score a text after")


@torch.no_grad()
def score_text(
    model: Any,
    tokenizer: Any,
    text: str,
    top_k: int = 5,
    *,
    source: str = "",
    max_tokens: int = DEFAULT_MAX_SCORED_TOKENS,
) -> dict[str, Any]:
    """loss (nats/token), perplexity, tokens, per-token surprisal (bits) and the top-k predictions there, of
    the text's first `max_tokens` tokens at most (`truncated`, `text_tokens`: the whole text's count)."""
    if not text:
        raise InvalidInputError("text to score is empty")
    if top_k < 0:
        raise InvalidInputError(f"top_k must be >= 0; got {top_k}")
    if max_tokens < 1:
        raise InvalidInputError(f"max_tokens must be >= 1; got {max_tokens}")
    model = unwrap_model(model)
    was_training = model.training
    model.eval()
    device = model.device
    target = plain_ids(tokenizer, text)
    text_tokens = len(target)
    truncated = text_tokens > max_tokens
    target = target[:max_tokens]
    try:
        task = model_task(model_name_of(model))
        if task == "chat" and source:
            answer = truncate_text(tokenizer, text, max_tokens) if truncated else text
            prompt, completion = chat_pair_ids(
                tokenizer,
                source,
                answer,
                instruction_of(model),
                max_source_tokens=max_tokens,
                max_target_tokens=max_tokens + 1,  # and its end-of-turn
                max_total_tokens=context_limit(model),
            )
            out = model(input_ids=torch.tensor([[*prompt, *completion]], device=device))
            logits, predicted = out.logits[0, len(prompt) - 1 : -1], completion
        elif task == "seq2seq":
            # a cut text does not end there: no eos to predict after it
            labels = target if truncated else [*target, tokenizer.eos_token_id]
            src = [*plain_ids(tokenizer, source)[:max_tokens], tokenizer.eos_token_id]
            out = model(
                input_ids=torch.tensor([src], device=device), labels=torch.tensor([labels], device=device)
            )
            logits, predicted = out.logits[0], labels
        else:
            limit = getattr(getattr(model, "config", None), "n_positions", None)
            ids = [start_token_id(tokenizer), *target]
            if isinstance(limit, int) and len(ids) > limit:
                ids, truncated = ids[:limit], True
            out = model(input_ids=torch.tensor([ids], device=device))
            logits, predicted = out.logits[0, :-1], ids[1:]
    finally:
        model.train(was_training)
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    target_ids = torch.tensor(predicted, device=log_probs.device)
    token_log_probs = log_probs.gather(1, target_ids.unsqueeze(1)).squeeze(1)
    surprisal_bits = (-token_log_probs / math.log(2)).tolist()
    loss = float(-token_log_probs.mean())
    positions = []
    if top_k:
        values, indices = torch.topk(log_probs, min(top_k, log_probs.size(-1)), dim=-1)
        for row_values, row_ids in zip(values.tolist(), indices.tolist(), strict=True):
            positions.append(
                [
                    {"token": tokenizer.decode([i]), "id": i, "prob": math.exp(v)}
                    for v, i in zip(row_values, row_ids, strict=True)
                ]
            )
    return {
        "loss": loss,
        "perplexity": perplexity(loss),
        "num_tokens": len(predicted),
        "text_tokens": text_tokens,
        "tokens": [tokenizer.decode([i]) for i in predicted],
        "token_ids": list(predicted),
        "surprisal_bits": surprisal_bits,
        "topk": positions,
        "truncated": truncated,
    }
