"""generate and score_text on real tiny t5 / gpt2 / char_lstm models."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from cliutil import run_captured
from tinylm import model_inputs
from tldrlab.errors import InvalidInputError
from tldrlab.evaluate import GenerateOptions, score_text
from tldrlab.evaluate.generate import apply_stop, filter_logits, generate
from tldrlab.models import build_model, save_model
from tldrlab.models.chat import chat_prompt_ids, instruction_of
from tldrlab.runs import open_registry

TINY: dict[str, dict[str, Any]] = {
    "t5": {"size": "tiny", "dropout": 0.0},
    "gpt2": {"size": "tiny", "dropout": 0.0},
    "char_lstm": {"embedding_dim": 32, "hidden_dim": 48, "num_layers": 1, "dropout": 0.0},
}


@pytest.fixture(scope="module")
def tokenizer(shakespeare_tokenizer: Callable[..., Any]) -> Any:
    return shakespeare_tokenizer("char", 80, chars=20_000)


@pytest.fixture(scope="module")
def models(tokenizer: Any) -> dict[str, Any]:
    torch.manual_seed(0)
    return {name: build_model(name, TINY[name], tokenizer) for name in TINY}


@pytest.mark.parametrize("name", list(TINY))
def test_seed_num_sequences_and_stop(name: str, models: dict[str, Any], tokenizer: Any) -> None:
    model = models[name]
    options = GenerateOptions(temperature=1.5, max_new_tokens=12, seed=7, num_return_sequences=3)
    prompts = ["ROMEO:", "To be"]
    first = generate(model, tokenizer, prompts, options)
    again = generate(model, tokenizer, prompts, options)
    other = generate(model, tokenizer, prompts[:1], options.model_copy(update={"seed": 8}))
    assert first == again
    assert first[0] != other[0]
    assert [len(outs) for outs in first] == [3, 3]
    assert all(isinstance(text, str) for outs in first for text in outs)

    # Stop at a character the unstopped sample contains: the output is exactly the text before it.
    sample = next(text for text in first[0] if len(text) > 3)
    stop = sample[2]
    stopped = generate(model, tokenizer, prompts[:1], options.model_copy(update={"stop": [stop]}))
    assert stopped[0][first[0].index(sample)] == sample[: sample.index(stop)]
    assert all(stop not in text for text in stopped[0])


@pytest.mark.parametrize("name", list(TINY))
def test_greedy_is_deterministic_and_top_k_1_is_greedy(
    name: str, models: dict[str, Any], tokenizer: Any
) -> None:
    model = models[name]
    greedy = generate(model, tokenizer, ["First"], GenerateOptions(temperature=0, max_new_tokens=12, seed=1))
    assert greedy == generate(
        model, tokenizer, ["First"], GenerateOptions(temperature=0, max_new_tokens=12, seed=2)
    )
    top1 = generate(model, tokenizer, ["First"], GenerateOptions(temperature=1.0, top_k=1, max_new_tokens=12))
    assert top1 == greedy


def test_generation_leaves_the_global_rng_alone(models: dict[str, Any], tokenizer: Any) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    generate(models["gpt2"], tokenizer, ["a"], GenerateOptions(max_new_tokens=5))
    torch.testing.assert_close(torch.rand(3), expected)


def test_filter_logits_and_apply_stop() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept_p = torch.isfinite(filter_logits(logits, 0, 0.7))
    assert kept_p.tolist() == [[True, True, False, False]]  # 0.5 < 0.7, 0.5 + 0.3 reaches it
    kept_k = torch.isfinite(filter_logits(logits, 3, 1.0))
    assert kept_k.tolist() == [[True, True, True, False]]
    # the vocabulary is not ordered by probability: top-p keeps the likeliest tokens wherever they are
    shuffled = torch.log(torch.tensor([[0.05, 0.3, 0.15, 0.5]]))
    assert torch.isfinite(filter_logits(shuffled, 0, 0.7)).tolist() == [[False, True, False, True]]
    assert apply_stop("abc\n\nxyz END", ["END", "\n\n"]) == ("abc", True)
    assert apply_stop("abc", ["zzz"]) == ("abc", False)


@pytest.mark.parametrize("name", list(TINY))
def test_score_surprisal_matches_the_loss(name: str, models: dict[str, Any], tokenizer: Any) -> None:
    model = models[name]
    text = "To be, or not to be"
    result = score_text(model, tokenizer, text, top_k=4)
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert result["num_tokens"] == len(result["surprisal_bits"]) == len(result["topk"])
    mean_bits = sum(result["surprisal_bits"]) / result["num_tokens"]
    assert mean_bits * math.log(2) == pytest.approx(result["loss"], rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(result["loss"]), rel=1e-6)
    # The model's own training loss on the same tokens agrees.
    with torch.no_grad():
        if name == "t5":
            labels = torch.tensor([[*ids, tokenizer.eos_token_id]])
            own = model(input_ids=torch.tensor([[tokenizer.eos_token_id]]), labels=labels).loss
        else:
            full = torch.tensor([[tokenizer.bos_token_id, *ids]])
            own = model(input_ids=full, labels=full).loss
    assert result["loss"] == pytest.approx(float(own), rel=1e-4)
    top = result["topk"][0]
    assert len(top) == 4
    assert [t["prob"] for t in top] == sorted((t["prob"] for t in top), reverse=True)
    assert "".join(result["tokens"][: len(ids)]) == text


def test_score_rejects_empty_text(models: dict[str, Any], tokenizer: Any) -> None:
    with pytest.raises(InvalidInputError, match="empty"):
        score_text(models["gpt2"], tokenizer, "")


@pytest.mark.filterwarnings("error:.*past_key_values.*:FutureWarning")  # an API transformers 5.40 removes
def test_batched_greedy_seq2seq_matches_one_at_a_time(models: dict[str, Any], tokenizer: Any) -> None:
    prompts = ["A short one.", "A much longer document that needs padding in the batch, twice.", "Mid size"]
    options = GenerateOptions(temperature=0, max_new_tokens=10, batch_size=3)
    batched = generate(models["t5"], tokenizer, prompts, options)
    single = [generate(models["t5"], tokenizer, [p], options)[0] for p in prompts]
    assert batched == single


def test_a_seq2seq_prompt_is_cut_as_training_cuts_its_sources(models: dict[str, Any], tokenizer: Any) -> None:
    """Training and evaluation feed a seq2seq source as its first max_source_len - 1 tokens and eos, and a
    run's ROUGE generation asks for max_input_tokens = max_source_len: generation kept max_input_tokens
    tokens and added the eos, so the encoder read one token more than the model was trained on."""
    from tldrlab.data.records import SummaryRecord
    from tldrlab.train.config import DataConfig
    from tldrlab.train.tasks import Seq2SeqTask

    documents = ["Now is the winter of our discontent", "To be"]  # one over max_source_len, one under
    records = [SummaryRecord(id=str(i), document=d, summaries=["a"]) for i, d in enumerate(documents)]
    task = Seq2SeqTask(records, records, tokenizer, DataConfig(path="x", prefix="", max_source_len=12))
    trained_on = [source for source, _ in task.train_pairs]
    assert [len(source) for source in trained_on] == [12, 6]

    read: list[list[int]] = []

    def encoder_input(module: torch.nn.Module, args: Any, kwargs: dict[str, Any]) -> None:
        ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
        read.extend(row[keep.bool()].tolist() for row, keep in zip(ids, mask, strict=True))

    hook = models["t5"].encoder.register_forward_pre_hook(encoder_input, with_kwargs=True)
    try:
        generate(
            models["t5"],
            tokenizer,
            documents,
            GenerateOptions(temperature=0, max_new_tokens=2, max_input_tokens=12),
        )
    finally:
        hook.remove()
    assert read == trained_on


@pytest.mark.parametrize("name", ["gpt2", "char_lstm"])
def test_a_too_long_lm_prompt_keeps_its_end(name: str, models: dict[str, Any], tokenizer: Any) -> None:
    """A language model continues the text it was given: over max_input_tokens, the prompt's start goes."""
    start, end = "Now is the winter of our discontent ", "made glorious summer by this sun"
    greedy = {"temperature": 0, "max_new_tokens": 12}
    n_end = len(tokenizer.encode(end, add_special_tokens=False))
    cut = generate(models[name], tokenizer, [start + end], GenerateOptions(**greedy, max_input_tokens=n_end))
    from_end = generate(models[name], tokenizer, [end], GenerateOptions(**greedy))
    from_start = generate(models[name], tokenizer, [start[:n_end]], GenerateOptions(**greedy))
    assert from_end != from_start  # the two ends of the prompt lead to different continuations here
    assert cut == from_end


def test_scoring_a_data_set_says_which_records_were_cut_to_the_context(
    models: dict[str, Any], tokenizer: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a record longer than gpt2's n_positions was scored on its start only; one text said "(truncated)",
    # a data set's rows showed their token counts as if whole
    save_model(models["gpt2"], tokenizer, tmp_path / "model", name="gpt2")
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "long.txt").write_text("To be, or not to be, that is the question. " * 40)
    (tmp_path / "texts" / "short.txt").write_text("To be, or not to be.")
    code, out, err = run_captured(
        ["score", str(tmp_path / "model"), "--dataset", str(tmp_path / "texts"), "--detail-level", "summary"],
        capsys,
    )
    assert code == 0, err
    warning = " ".join((out + err).split())
    assert (
        "1 of 2 records are longer than max_tokens 1024 (or the model's context, where shorter): "
        "only their start was scored (long)" in warning
    )


@pytest.mark.filterwarnings("error:.*past_key_values.*:FutureWarning")  # an API transformers 5.40 removes
@pytest.mark.parametrize("layers", [{"num_layers": 1}, {"num_layers": 2, "num_decoder_layers": 3}])
def test_a_t5_with_more_decoder_than_encoder_layers_generates(layers: dict[str, int], tokenizer: Any) -> None:
    # transformers' own cache has as many layers as T5's *encoder*: `num_layers: 1` (size tiny keeps its two
    # decoder layers) failed its first generation with an IndexError, mid-training when a run generated
    torch.manual_seed(0)
    model = build_model("t5", {"size": "tiny", "dropout": 0.0, **layers}, tokenizer)
    prompts = ["A short one.", "A much longer document that needs padding in the batch."]
    greedy = GenerateOptions(temperature=0, max_new_tokens=8, batch_size=2)
    outputs = generate(model, tokenizer, prompts, greedy)
    assert outputs == [generate(model, tokenizer, [p], greedy)[0] for p in prompts]
    beams = generate(model, tokenizer, prompts[:1], greedy.model_copy(update={"num_return_sequences": 2}))
    assert len(beams[0]) == 2


def test_a_data_set_directory_without_a_split_is_read_at_its_held_out_split(
    models: dict[str, Any], tokenizer: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`generate --dataset DIR` and `score --dataset DIR` with no `--split` read every file of DIR, its
    training file too (records of train.jsonl after those of test.jsonl); they read its held-out split now,
    as `eval MODEL --data DIR` does, record it in the run's config and say so."""
    import json

    save_model(models["char_lstm"], tokenizer, tmp_path / "model", name="char_lstm")
    data = tmp_path / "data"
    data.mkdir()
    for split, count in (("train", 3), ("test", 2)):
        rows = [
            {"document": f"{split} document {i}", "summary": f"{split} summary {i}"} for i in range(count)
        ]
        (data / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    common = [str(tmp_path / "model"), "--dataset", str(data), "--limit", "5", "--json"]
    code, out, err = run_captured(["generate", *common, "--max-new-tokens", "2"], capsys)
    assert code == 0, err
    generated = json.loads(out)
    assert [r["reference"] for r in generated["records"]] == ["test summary 0", "test summary 1"]
    assert generated["split"] == "test"
    code, out, err = run_captured(["score", *common, "--detail-level", "summary"], capsys)
    assert code == 0 and json.loads(out)["records"] == 2 and json.loads(out)["split"] == "test", err
    assert {r.config["split"] for r in open_registry().list(kind=("generate", "score"))} == {"test"}
    code, out, err = run_captured(["score", *common[:-1], "--detail-level", "summary"], capsys)
    assert code == 0 and f"scored: 2 records of {data} (split test)" in out, out + err


def test_special_token_strings_in_a_document_reach_a_chat_model_as_text(
    tmp_path: Path, tokenizer: Any, models: dict[str, Any]
) -> None:
    """A document, reference or text holding the tokenizer's own special-token strings ("<|im_end|>",
    "<|endoftext|>", "</s>") was encoded as those control tokens: a generation prompt with a forged assistant
    turn, a scored answer ending in its middle, token counts short. The model gets the template's turn markers
    (and the answer's final eos) only."""
    from tinylm import INJECTION, save_tiny_model, tiny_chat_tokenizer, tiny_llama
    from tldrlab.evaluate.metrics import length_stats

    chat_tokenizer = tiny_chat_tokenizer()
    path = save_tiny_model(tiny_llama(chat_tokenizer), chat_tokenizer, tmp_path / "chat")
    model = build_model("causal_lm", {"path": str(path)}, chat_tokenizer).eval()
    start, end, text_end = (
        chat_tokenizer.convert_tokens_to_ids(t) for t in ["<|im_start|>", "<|im_end|>", "<|endoftext|>"]
    )
    with model_inputs(model) as seen:
        generate(model, chat_tokenizer, [INJECTION], GenerateOptions(max_new_tokens=2, temperature=0.0))
    (prompt,) = seen[0]
    assert (prompt.count(start), prompt.count(end), prompt.count(text_end)) == (2, 1, 0)
    assert INJECTION in chat_tokenizer.decode(prompt)

    with model_inputs(model) as seen:
        scored = score_text(model, chat_tokenizer, "An answer<|im_end|> cut", source=INJECTION, top_k=0)
    (ids,) = seen[0]
    assert (ids.count(start), ids.count(end), ids.count(text_end)) == (2, 2, 0) and ids[-1] == end
    assert chat_tokenizer.decode(scored["token_ids"]) == "An answer<|im_end|> cut<|im_end|>"

    # a plain LM (no chat template): the text scored is all text, the char tokenizer's "</s>" too
    with model_inputs(models["gpt2"]) as seen:
        score_text(models["gpt2"], tokenizer, "To be</s> or not", top_k=0)
    assert tokenizer.eos_token_id not in seen[0][0][1:]  # after the start token
    assert length_stats(["To be</s>"], tokenizer)["tokens_mean"] == len("To be</s>")


@pytest.mark.parametrize("name", list(TINY))
def test_a_text_longer_than_max_tokens_is_scored_on_its_start(
    name: str, models: dict[str, Any], tokenizer: Any
) -> None:
    """A text was scored whole however long: t5 and char_lstm, with no position limit, ran a forward pass
    over every token (100,000 characters: minutes). At most `max_tokens` are scored now, and the result says
    how many the text had."""
    text = "To be, or not to be, that is the question. " * 20
    text_tokens = len(tokenizer.encode(text, add_special_tokens=False))
    source = "Whether 'tis nobler in the mind to suffer " * 20
    with model_inputs(models[name]) as seen:
        result = score_text(models[name], tokenizer, text, top_k=2, source=source, max_tokens=40)
    assert (result["num_tokens"], result["text_tokens"], result["truncated"]) == (40, text_tokens, True)
    assert len(result["surprisal_bits"]) == len(result["topk"]) == 40
    assert max(len(row) for ids in seen for row in ids) <= 41  # the source too: 40 and its eos
    assert "".join(result["tokens"]) == text[:40]  # a character tokenizer: its start
    whole = score_text(models[name], tokenizer, text[:40], top_k=0, max_tokens=40)
    assert not whole["truncated"] and whole["text_tokens"] == 40


def test_a_chat_model_scores_at_most_max_tokens_of_a_long_answer_and_document(tmp_path: Path) -> None:
    # a rotary model (no n_positions) took the whole document and answer: nothing bounded its forward pass
    from tinylm import save_tiny_model, tiny_chat_tokenizer, tiny_llama

    chat_tokenizer = tiny_chat_tokenizer()
    path = save_tiny_model(tiny_llama(chat_tokenizer), chat_tokenizer, tmp_path / "chat")
    model = build_model("causal_lm", {"path": str(path)}, chat_tokenizer).eval()
    answer = "fast, lightweight web server with a small memory footprint " * 30
    source = "The daemon watches a directory and runs a command when a file changes. " * 30
    with model_inputs(model) as seen:
        result = score_text(model, chat_tokenizer, answer, top_k=0, source=source, max_tokens=30)
    assert result["truncated"] and result["text_tokens"] > 300
    assert result["num_tokens"] <= 31  # and the end-of-turn
    template = len(chat_prompt_ids(chat_tokenizer, "", instruction_of(model)))
    assert len(seen[0][0]) <= template + 30 + 31


def test_score_cli_bounds_a_100000_character_text_and_says_so(
    models: dict[str, Any], tokenizer: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    save_model(models["char_lstm"], tokenizer, tmp_path / "model", name="char_lstm")
    text = ("To be, or not to be, that is the question. " * 2400)[:100_000]
    model = str(tmp_path / "model")
    code, out, err = run_captured(["score", model, "--text", text, "--detail-level", "summary"], capsys)
    assert code == 0, err
    warning = " ".join((out + err).split())
    assert "1024 tokens (truncated)" in warning
    assert (
        "the text is 100000 tokens, more than max_tokens 1024 (or the model's context, where shorter): only "
        "its start was scored (1024 tokens)" in warning
    )
    code, out, err = run_captured(["score", model, "--text", text, "--max-tokens", "64", "--json"], capsys)
    result = json.loads(out)
    assert code == 0 and (result["num_tokens"], result["text_tokens"], result["max_tokens"]) == (
        64,
        100_000,
        64,
    )
    code, out, err = run_captured(["score", model, "--text", "hi", "--max-tokens", "9000"], capsys)
    assert code != 0 and "8192" in err and "Traceback" not in out + err


def test_beam_search_asked_for_with_sampling_is_refused_not_ignored(
    models: dict[str, Any], tokenizer: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """num_beams is beam search, which decodes greedily: `tldrlab generate RUN --options.num-beams 4` (at
    generate's default temperature 1) sampled one output as if it had not been given, and so did any
    temperature above 0; char_lstm, which has no beam search, ignored it at temperature 0 too. Both are
    refused, naming num_beams; greedy beam search of t5 / gpt2 still runs."""
    with pytest.raises(ValueError, match="num_beams 4 is beam search") as refused:
        GenerateOptions(num_beams=4, temperature=0.7)
    assert "temperature 0" in str(refused.value)
    model_dir = tmp_path / "t5"
    save_model(models["t5"], tokenizer, model_dir)
    code, _, err = run_captured(
        ["generate", str(model_dir), "-p", "ROMEO:", "--options.num-beams", "4"], capsys
    )
    assert code == 2 and "num_beams 4 is beam search" in err and "Traceback" not in err
    assert open_registry().list(kind="generate") == []
    beams = GenerateOptions(num_beams=4, temperature=0.0, max_new_tokens=4)
    assert len(generate(models["t5"], tokenizer, ["ROMEO:"], beams)[0]) == 1
    with pytest.raises(InvalidInputError, match="char_lstm has no beam search"):
        generate(models["char_lstm"], tokenizer, ["ROMEO:"], beams)


def test_several_greedy_sequences_of_a_char_lstm_are_refused_not_copied(
    models: dict[str, Any], tokenizer: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """At temperature 0 a t5, gpt2 or chat model returns num_return_sequences different outputs (greedy
    decoding of several sequences is beam search); char_lstm, which has no beam search, returned n copies of
    its one greedy output (`generate -n 3 --temperature 0`). It is refused, as its num_beams is: before a
    run exists on the command line, and by generate itself."""
    greedy = GenerateOptions(temperature=0, max_new_tokens=6, num_return_sequences=3)
    (beams,) = generate(models["gpt2"], tokenizer, ["ROMEO:"], greedy)
    assert len(beams) == 3 and len(set(beams)) > 1
    with pytest.raises(InvalidInputError, match="char_lstm has no beam search") as refused:
        generate(models["char_lstm"], tokenizer, ["ROMEO:"], greedy)
    assert "num_return_sequences 3" in refused.value.message and "temperature" in refused.value.message
    one = greedy.model_copy(update={"num_return_sequences": 1})
    assert len(generate(models["char_lstm"], tokenizer, ["ROMEO:"], one)[0]) == 1
    sampled = greedy.model_copy(update={"temperature": 1.0})
    assert len(generate(models["char_lstm"], tokenizer, ["ROMEO:"], sampled)[0]) == 3

    save_model(models["char_lstm"], tokenizer, tmp_path / "model", name="char_lstm")
    argv = ["generate", str(tmp_path / "model"), "-p", "ROMEO:", "--temperature", "0", "-n", "3"]
    code, out, err = run_captured(argv, capsys)
    assert code == 2 and "char_lstm has no beam search" in err and "Traceback" not in out + err
    assert open_registry().list(kind="generate") == []


def test_a_temperature_too_close_to_zero_to_sample_with_is_refused_without_a_traceback(
    models: dict[str, Any], tokenizer: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--temperature 1e-40` divided the scores into inf: sampling failed with a RuntimeError traceback
    ("probability tensor contains either inf, nan or element < 0"), exit 1, and a failed run. It is refused
    before a run exists, naming temperature; the lowest temperature allowed samples."""
    model_dir = tmp_path / "gpt2"
    save_model(models["gpt2"], tokenizer, model_dir)
    code, _, err = run_captured(
        ["generate", str(model_dir), "-p", "ROMEO:", "--temperature", "1e-40"], capsys
    )
    assert code == 2 and "temperature" in err and "too close to 0" in err and "Traceback" not in err
    assert open_registry().list(kind="generate") == []
    lowest = GenerateOptions(temperature=1e-6, max_new_tokens=3)
    for name in TINY:
        assert len(generate(models[name], tokenizer, ["ROMEO:"], lowest)[0]) == 1
