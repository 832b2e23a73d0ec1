"""CPU generation speed of the bundled SmolLM2-135M-Instruct: tldrlab fp32, its faster paths, llama.cpp.

    .venv/bin/python bench/llm_speed.py [--threads 1] [--new-tokens 128]
    .venv/bin/python bench/llm_speed.py --rouge 50      # quality before/after: SciTLDR dev, fp32 vs int8

Speed: one prompt (the digest's chat prompt for the bundled sample thread), greedy, exactly `--new-tokens`
new tokens (end of answer suppressed), one run per backend in this process, same thread count everywhere:

- `fp32`: transformers with the KV cache (its default: each step attends to cached keys/values);
- `fp32, no KV cache`: the same with `use_cache=False` (every step re-runs the whole sequence), fewer tokens;
- `int8`: a tldrlab fast path (`precision=int8`: dynamic int8 quantization of the decoder blocks' Linear
  layers, digest/local_model.py);
- `bf16`: the other one (`precision=bf16`: the weights in bfloat16);
- `llama.cpp`: llama-cpp-python on the same GGUF file (the optional `llamacpp` extra; skipped with a message
  when it is not installed).

Per backend: time to first token (the prompt's prefill), decode tokens/s after it, and overall tokens/s;
the headline is each backend's decode tokens/s over fp32's. Quality (`--rouge N`): zero-shot one-sentence
summaries of the first N SciTLDR dev abstracts in fp32, bf16 and int8 (the prompt `tldrlab eval` uses),
ROUGE-1/2/L F1 against the references (max over references), and each fast path's ROUGE-L against fp32's
output (and how many outputs are identical).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from headline import need_data

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SCITLDR = Path(__file__).resolve().parents[2] / "shared" / "data" / "scitldr"


def digest_prompt(tokenizer: Any) -> str:
    """The chat prompt the digest builds for the bundled sample thread (k=8 highlights)."""
    import tempfile

    from tldrlab.digest.highlights import HighlightOptions, thread_highlights
    from tldrlab.digest.ingest import ingest_threads, load_threads
    from tldrlab.digest.summarizers import SummaryContext
    from tldrlab.digest.summarizers.chat_prompt import chat_messages, render_chat
    from tldrlab.embed import get_embedder
    from tldrlab.samples import sample_path
    from tldrlab.store import open_store

    thread = load_threads(sample_path("beer_thread"))[0]
    embedder = get_embedder("minilm")
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(url=f"sqlite:///{tmp}/s.db", dim=embedder.dim, embedder=embedder.name)
        ingest_threads([thread], store, embedder)
        highlights = thread_highlights(store, thread.id, HighlightOptions(k=8), embedder=embedder)
        store.close()
    context = SummaryContext(thread=thread, highlights=highlights, embedder=embedder, max_bullets=5)
    return render_chat(tokenizer, chat_messages(context))


def time_transformers(
    model: Any, tokenizer: Any, prompt: str, new_tokens: int, **options: Any
) -> dict[str, Any]:
    import torch

    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    common = {
        "do_sample": False,
        "temperature": None,
        "top_p": None,
        "top_k": None,
        "suppress_tokens": [tokenizer.eos_token_id],
        "pad_token_id": tokenizer.eos_token_id,
        **options,
    }
    with torch.inference_mode():
        started = time.perf_counter()
        model.generate(**inputs, max_new_tokens=1, min_new_tokens=1, **common)
        first = time.perf_counter() - started
        started = time.perf_counter()
        out = model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **common)
        total = time.perf_counter() - started
    generated = int(out.shape[1] - inputs["input_ids"].shape[1])
    text = tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    return row(int(inputs["input_ids"].shape[1]), generated, first, total, text)


def row(prompt_tokens: int, generated: int, first: float, total: float, text: str) -> dict[str, Any]:
    decode = max(total - first, 1e-9)
    return {
        "prompt_tokens": prompt_tokens,
        "new_tokens": generated,
        "first_token_s": round(first, 3),
        "total_s": round(total, 3),
        "decode_tokens_per_s": round((generated - 1) / decode, 2),
        "tokens_per_s": round(generated / total, 2),
        "text_start": text[:120],
    }


def time_llama_cpp(gguf: Path, prompt: str, new_tokens: int, threads: int) -> dict[str, Any]:
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf), n_ctx=4096, n_threads=threads, n_batch=512, verbose=False)
    tokens = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
    # an untimed warm-up (buffers, thread pool), as the transformers rows get from their one-token call
    llm.eval(tokens[:32])
    llm.reset()
    pieces: list[int] = []
    started = time.perf_counter()
    first = 0.0
    for token in llm.generate(tokens, temp=0.0, top_k=1, reset=True):
        if not pieces:
            first = time.perf_counter() - started
        if token == llm.token_eos() and len(pieces) < new_tokens:
            continue  # like suppressing the end of answer: not counted, generation goes on
        pieces.append(token)
        if len(pieces) >= new_tokens:
            break
    total = time.perf_counter() - started
    text = llm.detokenize(pieces).decode("utf-8", "replace")
    return row(len(tokens), len(pieces), first, total, text)


def speed(args: argparse.Namespace) -> None:
    import torch

    from tldrlab.digest.local_model import load_local_model, quantize_int8

    torch.set_num_threads(args.threads)
    loaded = load_local_model("smollm2")
    model, tokenizer = loaded.model, loaded.tokenizer
    prompt = digest_prompt(tokenizer)
    results: dict[str, dict[str, Any]] = {}
    print(f"threads {args.threads}, prompt {len(tokenizer(prompt)['input_ids'])} tokens", flush=True)
    results["fp32"] = time_transformers(model, tokenizer, prompt, args.new_tokens)
    print("fp32", results["fp32"], flush=True)
    results["fp32, no KV cache"] = time_transformers(
        model, tokenizer, prompt, args.no_cache_tokens, use_cache=False
    )
    print("fp32, no KV cache", results["fp32, no KV cache"], flush=True)
    results["int8"] = time_transformers(quantize_int8(model), tokenizer, prompt, args.new_tokens)
    print("int8", results["int8"], flush=True)
    results["bf16"] = time_transformers(
        load_local_model("smollm2", "bf16").model, tokenizer, prompt, args.new_tokens
    )
    print("bf16", results["bf16"], flush=True)
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        print("llama.cpp: not installed (pip install -e '.[llamacpp]' builds it from source)", flush=True)
    else:
        results["llama.cpp"] = time_llama_cpp(Path(loaded.source), prompt, args.new_tokens, args.threads)
        print("llama.cpp", results["llama.cpp"], flush=True)
    base = results["fp32"]["decode_tokens_per_s"]
    print("\n| backend | first token (s) | decode tokens/s | vs fp32 | overall tokens/s |")
    print("|---|---|---|---|---|")
    for name, result in results.items():
        ratio = result["decode_tokens_per_s"] / base
        print(
            f"| {name} | {result['first_token_s']:.2f} | {result['decode_tokens_per_s']:.1f} | "
            f"{ratio:.2f}x | {result['tokens_per_s']:.1f} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "results": results}, indent=2))


def rouge(args: argparse.Namespace) -> None:
    import torch
    from rouge_score import rouge_scorer

    from tldrlab.data.readers import read_records
    from tldrlab.digest.local_model import load_local_model
    from tldrlab.evaluate.metrics import RougeTokenizer
    from tldrlab.models.chat import chat_prompt_ids

    torch.set_num_threads(args.threads)
    records = [r for r in read_records(SCITLDR, split="dev") if r.summaries][: args.rouge]
    tokenizer = load_local_model("smollm2").tokenizer
    rouge_types = ["rouge1", "rouge2", "rougeL"]
    scorer = rouge_scorer.RougeScorer(rouge_types, tokenizer=RougeTokenizer(use_stemmer=True))
    outputs: dict[str, list[str]] = {}
    seconds: dict[str, float] = {}
    for name in ("fp32", "bf16", "int8"):
        model = load_local_model("smollm2", name).model
        texts = []
        started = time.perf_counter()
        for number, record in enumerate(records, start=1):
            ids = torch.tensor([chat_prompt_ids(tokenizer, record.document)])  # the document as text
            inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
            with torch.inference_mode():
                out = model.generate(
                    **inputs, max_new_tokens=48, do_sample=False, temperature=None, top_p=None, top_k=None
                )
            texts.append(
                tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
            )
            if number % 10 == 0:
                print(f"{name}: {number}/{len(records)}", flush=True)
        seconds[name] = time.perf_counter() - started
        outputs[name] = texts
    summary: dict[str, Any] = {"records": len(records)}
    for name, texts in outputs.items():
        scores = {key: 0.0 for key in ("rouge1", "rouge2", "rougeL")}
        for text, record in zip(texts, records, strict=True):
            per_ref = [scorer.score(ref, text) for ref in record.summaries]
            for key in scores:
                scores[key] += max(s[key].fmeasure for s in per_ref)
        summary[name] = {k: round(v / len(records), 4) for k, v in scores.items()}
        summary[name]["seconds_per_summary"] = round(seconds[name] / len(records), 2)
    for name in ("bf16", "int8"):
        pairs = list(zip(outputs["fp32"], outputs[name], strict=True))
        agreement = [scorer.score(a, b)["rougeL"].fmeasure for a, b in pairs]
        summary[name]["rougeL_vs_fp32"] = round(sum(agreement) / len(agreement), 4)
        summary[name]["identical_to_fp32"] = sum(a == b for a, b in pairs)
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({"summary": summary, "outputs": outputs}, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--no-cache-tokens", type=int, default=32, help="tokens for the no-KV-cache run")
    parser.add_argument("--rouge", type=int, default=0, help="SciTLDR dev records for the quality check")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.rouge:
        need_data(SCITLDR)
        rouge(args)
    else:
        speed(args)


if __name__ == "__main__":
    main()
