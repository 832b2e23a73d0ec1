"""Data pipelines of the training tasks, with a real (char) tokenizer on real data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tldrlab.data.records import SummaryRecord
from tldrlab.errors import InvalidInputError
from tldrlab.evaluate.config import generated_metric_names
from tldrlab.train.config import DataConfig, TrainJobConfig, computed_metrics
from tldrlab.train.tasks import CausalLMTask, Seq2SeqTask, build_task, detect_splits


@pytest.fixture(scope="module")
def char_tokenizer(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Any:
    from tldrlab.tokenizers import load_tokenizer, train_tokenizer

    out = tmp_path_factory.mktemp("tok")
    corpus = out / "corpus.txt"
    text = (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:20000]
    corpus.write_text(text + "\nabcdefghijklmnopqrstuvwxyz0123456789-:.,()'/\n", encoding="utf-8")
    train_tokenizer("char", [corpus], 120, out / "tokenizer")
    return load_tokenizer(out / "tokenizer")


def test_seq2seq_pairs_end_with_eos_and_are_truncated(char_tokenizer: Any) -> None:
    data = DataConfig(path="x", prefix="summarize: ", max_source_len=20, max_target_len=8)
    records = [
        SummaryRecord(id="a", document="a long document about apt and dpkg", summaries=["package tool"]),
        SummaryRecord(id="b", document="short", summaries=["s"]),
        SummaryRecord(id="c", document="no summary here", summaries=[]),
    ]
    task = Seq2SeqTask(records, records[:2], char_tokenizer, data)
    assert len(task.train_pairs) == 2  # the record without a summary is skipped
    src, tgt = task.train_pairs[0]
    eos = char_tokenizer.eos_token_id
    assert len(src) == 20 and src[-1] == eos and len(tgt) == 8 and tgt[-1] == eos
    assert char_tokenizer.decode(src[:-1]).startswith("summarize: a long")
    batch = task.collate([task.train_pairs[0], task.train_pairs[1]])
    assert batch["input_ids"].shape == (2, 20) and batch["labels"].shape == (2, 8)
    assert int(batch["attention_mask"][1].sum()) == len(task.train_pairs[1][0])
    assert (batch["labels"][1, len(task.train_pairs[1][1]) :] == -100).all()


def test_special_token_strings_in_documents_train_as_text(tmp_path: Path, char_tokenizer: Any) -> None:
    """A document holding "</s>" or "<s>" (the tokenizer's own eos / bos) was encoded as those tokens: a
    language model learned to stop in the middle of a document, a seq2seq source ended early. Each is text:
    the only eos is the one the task appends."""
    eos, bos = char_tokenizer.eos_token_id, char_tokenizer.bos_token_id
    data = DataConfig(path="x", max_source_len=60, max_target_len=30)
    record = SummaryRecord(id="a", document="to be</s> or not <s>to be", summaries=["be</s>ing"])
    (src, tgt), *_ = Seq2SeqTask([record], [record], char_tokenizer, data).train_pairs
    assert src.count(eos) == 1 and src[-1] == eos and bos not in src
    assert tgt.count(eos) == 1 and tgt[-1] == eos
    # one id a character ("<", "/" and ">" are not in this tokenizer's alphabet: <unk> each)
    assert len(src) == len(data.prefix + record.document) + 1

    lines = ["first line of the play</s>", "<s>second line, and more", "third</s> line"] * 8
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    job = TrainJobConfig.model_validate(
        {"model": "char_lstm", "data": {"path": str(tmp_path), "val_fraction": 0.2, "block_size": 32}}
    )
    lm = build_task(job, char_tokenizer, object(), "causal_lm")  # type: ignore[arg-type]
    ids = [i for block in [*lm.train_blocks, *lm.val_blocks] for i in block]
    assert eos not in ids and bos not in ids
    text = "\n".join(lines)
    assert ids[:40] == [char_tokenizer.convert_tokens_to_ids(c) for c in text[:40]]


def test_causal_lm_blocks_and_errors(char_tokenizer: Any) -> None:
    data = DataConfig(path="x")
    ids = list(range(5, 105))
    task = CausalLMTask(ids[:80], ids[80:], char_tokenizer, data, block_size=16)
    assert len(task.train_blocks) == 5 and all(len(b) == 16 for b in task.train_blocks)
    assert task.train_blocks[1][0] == ids[16]  # contiguous, no overlap
    assert [len(b) for b in task.val_blocks] == [16, 4]
    with pytest.raises(InvalidInputError, match="fewer than one block"):
        CausalLMTask(ids[:10], ids[10:], char_tokenizer, data, block_size=16)


def test_splits_come_from_the_data_or_a_seeded_holdout(shared_data: Path, char_tokenizer: Any) -> None:
    debian = DataConfig(path=str(shared_data / "debian_descriptions"))
    assert detect_splits(debian) == ("train", "dev")
    assert detect_splits(DataConfig(path=str(shared_data / "tinyshakespeare" / "input.txt"))) == (None, None)
    job = TrainJobConfig.model_validate(
        {
            "model": "t5",
            "data": {"path": str(shared_data / "debian_descriptions"), "limit": 50, "max_val_examples": 10},
        }
    )
    task = build_task(job, char_tokenizer, object(), "seq2seq")  # type: ignore[arg-type]
    assert len(task.train_pairs) == 50 and len(task.val_pairs) == 10
    train_ids = {r.id for r in task.val_records}
    # validation came from the validation file: none of its packages is among the first training records
    from tldrlab.data.readers import read_records

    first_train = {r.id for r in read_records(debian.path, split="train", limit=50)}
    assert not train_ids & first_train

    text_job = TrainJobConfig.model_validate(
        {
            "model": "char_lstm",
            "data": {
                "path": str(shared_data / "tinyshakespeare" / "input.txt"),
                "max_val_examples": 100_000,
                "val_fraction": 0.1,
                "block_size": 64,
            },
        }
    )
    lm = build_task(text_job, char_tokenizer, object(), "causal_lm")  # type: ignore[arg-type]
    n_train = sum(len(b) for b in lm.train_blocks)
    n_val = sum(len(b) for b in lm.val_blocks)
    assert 0.05 < n_val / (n_train + n_val) < 0.15


def test_training_holds_out_exactly_what_evaluation_reads_back(
    tmp_path: Path, shared_data: Path, char_tokenizer: Any
) -> None:
    """Unsplit records: the training run's seeded holdout and evaluation's read-back are the same records,
    and none of them is trained on (train + held out = every record, no record in both)."""
    from tldrlab.evaluate.config import EvalConfig
    from tldrlab.evaluate.run_eval import _seq2seq_records

    source = shared_data / "debian_descriptions" / "debian_descriptions.validation.jsonl"
    pairs = tmp_path / "pairs.jsonl"  # no split in its name: the run holds out val_fraction itself
    pairs.write_text("".join(source.read_text(encoding="utf-8").splitlines(keepends=True)[:30]))
    job = TrainJobConfig.model_validate(
        {"model": "t5", "data": {"path": str(pairs), "val_fraction": 0.2}, "train": {"seed": 11}}
    )
    task = build_task(job, char_tokenizer, object(), "seq2seq")  # type: ignore[arg-type]
    held_out = [r.id for r in task.val_records]
    assert len(held_out) == 6 and len(task.train_pairs) == 24
    trained_sources = {tuple(source_ids) for source_ids, _ in task.train_pairs}
    assert not trained_sources & {tuple(source_ids) for source_ids, _ in task.val_pairs}

    evaluated = _seq2seq_records(EvalConfig(data=str(pairs), val_fraction=0.2, holdout_seed=job.train.seed))
    assert [r.id for r in evaluated] == held_out


def test_a_directory_with_a_train_file_trains_on_it_and_validates_on_its_dev_file(tmp_path: Path) -> None:
    from tldrlab.data.splits import detect_splits as detect

    only_train = tmp_path / "only_train"
    only_train.mkdir()
    (only_train / "pairs.train.jsonl").write_text("{}\n")
    (only_train / "pairs.test.jsonl").write_text("{}\n")
    # no validation file: the run holds out val_fraction of the train split, never reading the test file
    assert detect(only_train) == ("train", None)
    assert detect(only_train, val_split="test") == ("train", "test")
    (only_train / "pairs_validation.jsonl").write_text("{}\n")
    assert detect(only_train) == ("train", "dev")
    only_dev = tmp_path / "only_dev"
    only_dev.mkdir()
    (only_dev / "dev.jsonl").write_text("{}\n")
    # a directory of held-out files only has a training split with no file (a read of it refuses, saying
    # why): its dev file was read whole as the training data
    assert detect(only_dev) == ("train", "dev")
    assert detect(only_dev, val_split="test") == ("train", "test")  # what the config names wins
    assert detect(only_dev, train_split="dev") == ("dev", None)


def test_a_language_model_on_train_and_test_text_files_holds_out_the_tail_of_the_train_text(
    tmp_path: Path, shared_data: Path, char_tokenizer: Any
) -> None:
    """train.txt + test.txt, no dev file: the LM read both files as one stream (the test text trained on, its
    last fraction held out). It reads the train text only and holds out that text's last `val_fraction`."""
    lines = (shared_data / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8").splitlines()
    (tmp_path / "train.txt").write_text("\n".join(lines[:200]) + "\n", encoding="utf-8")
    (tmp_path / "test.txt").write_text("\n".join(lines[200:300]) + "\n", encoding="utf-8")
    job = TrainJobConfig.model_validate(
        {"model": "char_lstm", "data": {"path": str(tmp_path), "val_fraction": 0.1, "block_size": 32}}
    )
    lm = build_task(job, char_tokenizer, object(), "causal_lm")  # type: ignore[arg-type]
    from tldrlab.data.readers import read_records

    train_text = "\n".join(r.document for r in read_records(tmp_path / "train.txt"))
    ids = char_tokenizer(train_text, add_special_tokens=False)["input_ids"]
    cut = int(len(ids) * 0.9)
    assert [i for block in lm.train_blocks for i in block] == ids[: len(lm.train_blocks) * 32]
    assert [i for block in lm.val_blocks for i in block] == ids[cut:]


def test_generating_evaluations_report_the_metrics_named_occasional(char_tokenizer: Any) -> None:
    # the loop lets a best_metric among `occasional_metrics` be absent from non-generating evaluations:
    # the names must be the ones generation reports (BERTScore's, named alike, left out: its encoder costs
    # seconds here)
    from tldrlab.models import build_model

    data = DataConfig(path="x", generate_every=2, generate_examples=2, max_target_len=4)
    records = [SummaryRecord(id=str(i), document=f"doc {i} about apt", summaries=["apt"]) for i in range(3)]
    task = Seq2SeqTask(records, records, char_tokenizer, data)
    model = build_model("t5", {"size": "tiny"}, char_tokenizer)
    first, second = task.evaluate(model), task.evaluate(model)
    assert set(first) == {"eval_loss", "eval_perplexity"}
    assert set(second) - set(first) == task.occasional_metrics
    assert "eval_rouge1" in second and "eval_bertscore_f1" in generated_metric_names(bertscore=True)
    # what a train config accepts as best_metric (checked at submit) is exactly what the evaluations report
    assert set(computed_metrics("seq2seq", data)) == set(second)
    assert set(computed_metrics("seq2seq", data.model_copy(update={"generate_every": 0}))) == set(first)


def test_one_unsplit_record_is_too_few_to_hold_out_and_train_on(tmp_path: Path, char_tokenizer: Any) -> None:
    """The seeded holdout keeps at least one record aside: one record was all held out, and training said
    "no training records with a summary" of a record that has one."""
    data = tmp_path / "one.jsonl"
    data.write_text('{"document": "one two three four", "summary": "one"}\n', encoding="utf-8")
    job = TrainJobConfig.model_validate({"model": "t5", "data": {"path": str(data)}})
    with pytest.raises(
        InvalidInputError, match=r"1 record\(s\), too few to hold out a validation share"
    ) as refused:
        build_task(job, char_tokenizer, object(), "seq2seq")  # type: ignore[arg-type]
    assert "or a validation split" in refused.value.message
