"""Shared pieces for the digest tests: a fake OpenAI-compatible chat server, a tiny T5, sample threads."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import tinylm
from tldrlab.data.threads import Post, Thread


@dataclass
class FakeChat:
    """What the fake endpoint answers and what it saw."""

    reply: str = (
        "- Serve ales warmer than lagers [1]\n- Cold hides flavour [2, 3]\n- Uncited bullet about glasses\n"
    )
    chunk_chars: int = 6
    delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    chunks_sent: int = 0
    disconnected: threading.Event = field(default_factory=threading.Event)
    status: int = 200
    raw: bytes | None = None
    """Sent as the whole response body instead of `reply`'s chunks (an endpoint's error or garbage)."""
    finish_reason: str | None = None
    """Sent in a last chunk of its own after the text (`"stop"`, `"length"`), as servers do; None: none."""
    done: bool = True
    """End the stream with `data: [DONE]` (some servers send only the finish_reason)."""
    cut_after: int | None = None
    """Close the connection after this many text chunks, with no finish_reason and no [DONE] (a server that
    died, a proxy that timed out)."""


@contextmanager
def fake_openai_server(chat: FakeChat) -> Iterator[str]:
    """A local server speaking the streaming /v1/chat/completions protocol; yields its base URL (…/v1)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # the body ends when the connection closes, as with SSE proxies

        def log_message(self, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length))
            chat.requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
            if self.path != "/v1/chat/completions" or chat.status != 200:
                self.send_response(chat.status if chat.status != 200 else 404)
                self.end_headers()
                self.wfile.write(b'{"error": "nope"}')
                return
            assert body.get("stream") is True
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            text = chat.reply
            if chat.raw is not None:
                self.wfile.write(chat.raw)
                return
            try:
                for i in range(0, len(text), chat.chunk_chars):
                    if i // chat.chunk_chars == chat.cut_after:
                        return  # HTTP/1.0: closing the connection ends the body, mid-answer
                    chunk = {
                        "id": "chatcmpl-1",
                        "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": {"content": text[i : i + chat.chunk_chars]}}],
                    }
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                    chat.chunks_sent += 1
                    if chat.delay_s:
                        time.sleep(chat.delay_s)
                if chat.finish_reason is not None:
                    last = {"choices": [{"index": 0, "delta": {}, "finish_reason": chat.finish_reason}]}
                    self.wfile.write(f"data: {json.dumps(last)}\n\n".encode())
                if chat.done:
                    self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                chat.disconnected.set()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def tiny_t5(out_dir: Path, *, answer: str | None = None, steps: int = 80) -> Path:
    """A randomly initialised T5 with tiny dimensions and a word-level tokenizer of the sample thread's words,
    saved like any HF model. With `answer` (words separated by spaces), trained for `steps` steps on that
    one answer, so that it writes it whatever its input (and then ends)."""
    import torch

    corpus = [p.text for p in sample_thread().posts] + ([answer] if answer else [])
    model, tokenizer = tinylm.tiny_t5(corpus, seed=0)
    if answer is None:
        model.generation_config.eos_token_id = None  # random weights: never stop early: a known length
        model.generation_config.suppress_tokens = [0, 1, 2]  # never emit pad/eos/unk (they decode to nothing)
        return tinylm.save_tiny_model(model, tokenizer, out_dir)
    inputs = tokenizer(corpus[0], return_tensors="pt")
    labels = torch.tensor([tokenizer(answer)["input_ids"] + [tokenizer.eos_token_id]])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        model(**inputs, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    return tinylm.save_tiny_model(model, tokenizer, out_dir)


CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def tiny_chat_lm(out_dir: Path, *, memorize: list[tuple[str, str]] | None = None, steps: int = 60) -> Path:
    """A tiny Llama chat LM (2 layers, d=64) with a byte-level BPE tokenizer and a ChatML template, saved like
    any HF model directory. Random weights; or, with `memorize` (prompt, answer) pairs, trained for `steps`
    steps (loss on the answers only) so it gives those answers to those prompts."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from tldrlab.digest.summarizers.chat_prompt import EXAMPLES, SYSTEM_PROMPTS
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    corpus = [p.text for p in sample_thread().posts]
    corpus += [text for user, answers in EXAMPLES.values() for text in (user, *answers.values())]
    corpus += [*SYSTEM_PROMPTS.values(), *(text for pair in memorize or [] for text in pair)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(corpus * 3, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.chat_template = CHATML
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    if memorize:
        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
        batches = []
        for prompt, answer in memorize:
            prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            answer_ids = tokenizer(answer + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([prompt_ids + answer_ids])
            labels = torch.tensor([[-100] * len(prompt_ids) + answer_ids])
            batches.append((ids, labels))
        model.train()
        for step in range(steps):
            ids, labels = batches[step % len(batches)]
            loss = model(input_ids=ids, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        model.eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def sample_thread(thread_id: str = "t-serve") -> Thread:
    """A small thread written for these tests: a question, an accepted answer, two more answers."""
    return Thread(
        id=thread_id,
        title="What temperature should I serve beer at?",
        url="https://example.org/t/serve",
        posts=[
            Post(
                id="p1",
                number=1,
                kind="question",
                score=5,
                author="asker",
                url="https://example.org/t/serve#p1",
                text="What temperature should I serve my beer at? Room temperature or from the fridge?",
            ),
            Post(
                id="p2",
                number=2,
                kind="answer",
                score=12,
                accepted=True,
                author="brewer",
                url="https://example.org/t/serve#p2",
                text=(
                    "Serve ales warmer than lagers, around 10 to 13 degrees Celsius. "
                    "Very cold beer hides flavour and aroma as volatile compounds stay in the liquid.\n\n"
                    "Lagers are fine between 4 and 7 degrees."
                ),
            ),
            Post(
                id="p3",
                number=3,
                kind="answer",
                score=2,
                author="taster",
                url="https://example.org/t/serve#p3",
                text="Strong stouts and barleywines taste best at cellar temperature. Thanks!",
            ),
            Post(
                id="p4",
                number=4,
                kind="answer",
                score=0,
                author="glassman",
                url="https://example.org/t/serve#p4",
                text="The shape of the glass matters too, a tulip glass keeps the aroma in.",
            ),
        ],
    )


QMSUM_TRAIN = Path(__file__).resolve().parents[3] / "shared" / "data" / "qmsum" / "qmsum.train.jsonl"


def tiny_qmsum(tmp_path: Path, keep: dict[int, int] | None = None) -> Path:
    """Train meetings cut short (by default the 1st to 90 turns, the 3rd to 45), with the queries whose
    spans fall inside."""
    keep = keep or {0: 90, 2: 45}
    rows = []
    with QMSUM_TRAIN.open(encoding="utf-8") as handle:
        for i, line in enumerate(handle):
            if i in keep:
                row = json.loads(line)
                row["meeting_transcripts"] = row["meeting_transcripts"][: keep[i]]
                row["specific_query_list"] = [
                    q
                    for q in row["specific_query_list"]
                    if all(int(e) < keep[i] for _, e in q["relevant_text_span"])
                ]
                rows.append(json.dumps(row))
            if i >= max(keep):
                break
    out = tmp_path / "qmsum.jsonl"
    out.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return out
