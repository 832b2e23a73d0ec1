"""Embedders on the real offline MiniLM: shape, unit norm, determinism, meaning, caching, clear errors,
and the ONNX Runtime int8 backend agreeing with the PyTorch vectors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cliutil import run_captured
from hubcache import cache_model, tiny_sentence_transformer
from tldrlab.config import get_settings
from tldrlab.embed import EMBEDDERS, get_embedder, vector_space
from tldrlab.embed.base import Embedder
from tldrlab.errors import ConfigError, DependencyMissingError
from tldrlab.runs import open_registry

SENTENCES = [
    "Serve lagers cold, around 4 degrees Celsius.",
    "Ales taste best a little warmer than lagers.",
    "Citra is an American hop with strong citrus and tropical fruit aroma.",
    "The oldest known beer recipe comes from ancient Mesopotamia.",
    "Non-alcoholic beer is usually brewed normally and the alcohol is removed afterwards.",
    "ok",
    "",
    "A much longer sentence about storing bottles upright so that the yeast settles at the bottom and the "
    "beer has less contact with the cap, which some people think keeps it fresher for longer.",
]


@pytest.fixture(scope="module")
def minilm() -> Embedder:
    return get_embedder("minilm")


def test_minilm_vectors_are_unit_float32_and_deterministic(minilm: Embedder) -> None:
    vectors = minilm.encode(SENTENCES, batch_size=3)
    assert minilm.name == "minilm" and minilm.dim == 384
    assert vectors.shape == (len(SENTENCES), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors, minilm.encode(SENTENCES, batch_size=3))
    # batching does not change a sentence's vector beyond float noise
    np.testing.assert_allclose(vectors, minilm.encode(SENTENCES, batch_size=64), atol=1e-5)
    assert minilm.encode([]).shape == (0, 384)


def test_batches_hold_few_long_texts_and_many_short_ones(minilm: Embedder) -> None:
    """A batch pads every text to its longest: batches are cut by padded tokens as well as by count, so a
    long text no longer makes 63 short ones pad to its length; the vectors do not change."""
    from tldrlab.embed.base import MAX_BATCH_TOKENS, length_batches

    lengths = [3, 200, 5, 120, 4, 4, 9, 200, 1, 2]
    batches = length_batches(lengths, batch_size=4, max_tokens=400)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))  # each text once
    assert [i for batch in batches for i in batch] == sorted(range(10), key=lambda i: -lengths[i])
    # two 200s (a third row: 3 x 200 > 400), 120 with two short ones (4 x 120 > 400), then 4 at most
    assert batches == [[1, 7], [3, 6, 2], [4, 5, 0, 9], [8]]
    assert all(len(b) <= 4 and len(b) * lengths[b[0]] <= 400 for b in batches)
    assert length_batches([500, 1], batch_size=64, max_tokens=400) == [[0], [1]]  # too long: alone
    assert length_batches([], batch_size=64) == [] and MAX_BATCH_TOKENS >= 256  # a whole text fits
    texts = [SENTENCES[7] * 6, *SENTENCES[:6]]  # one text truncated at 256 tokens, six short ones
    mixed = minilm.encode(texts, batch_size=64)
    alone = np.concatenate([minilm.encode([text]) for text in texts])
    np.testing.assert_allclose(mixed, alone, atol=1e-5)


POST = "Split the batch at [SEP] and pad it with [PAD], then [CLS] and [MASK] are left, or [UNK]."
"""A forum post about BERT: every special-token string of all-MiniLM-L6-v2's tokenizer, as text."""


def _model_ids(embedder: Embedder, text: str) -> list[int]:
    """The token ids `embedder` feeds its model for `text` (its own tokenizer, its own call)."""
    from tldrlab.embed.onnx import OnnxEmbedder
    from tldrlab.embed.sentence_transformer import SentenceTransformerEmbedder

    if isinstance(embedder, OnnxEmbedder):
        return list(embedder.tokenizer.encode_batch([text])[0].ids)
    assert isinstance(embedder, SentenceTransformerEmbedder)
    return [int(i) for i in embedder.model.preprocess([text])["input_ids"][0]]


@pytest.mark.parametrize("name", list(EMBEDDERS))
def test_special_token_strings_in_a_post_are_text(name: str) -> None:
    """A post holding "[SEP]" or "[PAD]" reached the model as those control tokens: "[SEP]" ended the
    sequence in its middle, "[PAD]" became a padding id the attention mask still attended, so the post got
    another, wrong vector. Read as text, the strings are the characters BERT's uncased tokenizer sees, the
    same as the post lowercased (all-MiniLM-L6-v2, every backend here); only [CLS] and [SEP] the tokenizer
    adds itself around a text are special."""
    from tldrlab.embed.sentence_transformer import minilm_path
    from tokenizers import Tokenizer

    embedder = get_embedder(name)
    stock = Tokenizer.from_file(str(minilm_path() / "tokenizer.json"))
    specials = {stock.token_to_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")}
    ids = _model_ids(embedder, POST)
    assert ids == _model_ids(embedder, POST.lower())
    assert ids[0] == 101 and ids[-1] == 102 and not set(ids[1:-1]) & specials, ids
    vectors = embedder.encode([POST, POST.lower(), SENTENCES[0]])
    np.testing.assert_array_equal(vectors[0], vectors[1])


@pytest.mark.parametrize("name", list(EMBEDDERS))
def test_text_without_special_token_strings_embeds_as_before(name: str) -> None:
    """Reading special-token strings as text changes nothing else: an ordinary text gets the ids the stock
    all-MiniLM-L6-v2 tokenizer gives it (so the same vector), brackets and all."""
    from tldrlab.embed.sentence_transformer import minilm_path
    from tokenizers import Tokenizer

    stock = Tokenizer.from_file(str(minilm_path() / "tokenizer.json"))  # special-token strings matched
    stock.no_padding()
    stock.enable_truncation(max_length=256)  # the embedders' limit (sentence_bert_config.json)
    embedder = get_embedder(name)
    texts = [*SENTENCES, "Bracketed [notes] and <s> tags stay as they were.", SENTENCES[7] * 6]
    for text in texts:
        assert _model_ids(embedder, text) == stock.encode(text).ids, text


def test_ordinary_vectors_are_those_of_the_stock_tokenizer(minilm: Embedder) -> None:
    """The PyTorch backend's vectors of ordinary sentences, against the same model fed by a stock
    transformers tokenizer (special-token strings matched, as before): the same to float rounding."""
    import torch
    from transformers import AutoTokenizer

    from tldrlab.embed.sentence_transformer import SentenceTransformerEmbedder, minilm_path

    assert isinstance(minilm, SentenceTransformerEmbedder)
    stock = AutoTokenizer.from_pretrained(str(minilm_path()))
    for text in SENTENCES:
        features = dict(stock([text], truncation=True, max_length=256, return_tensors="pt"))
        with torch.inference_mode():
            expected = minilm.model(features)["sentence_embedding"].numpy()
        np.testing.assert_allclose(minilm.encode([text]), expected, rtol=0, atol=1e-6)


def test_minilm_vectors_carry_meaning(minilm: Embedder) -> None:
    query, related, unrelated = minilm.encode(
        ["What temperature should I serve beer at?", SENTENCES[0], SENTENCES[3]]
    )
    assert float(query @ related) > float(query @ unrelated) + 0.2


def test_get_embedder_caches_and_follows_settings(monkeypatch: pytest.MonkeyPatch, minilm: Embedder) -> None:
    from tldrlab.config import get_settings

    assert get_embedder("minilm") is minilm
    assert get_embedder().name == "minilm-onnx"  # the default: ONNX Runtime, the faster backend
    monkeypatch.setenv("TLDRLAB_EMBEDDER", "minilm")
    get_settings.cache_clear()
    assert get_embedder() is minilm
    assert set(EMBEDDERS) >= {"minilm", "minilm-onnx"}
    assert vector_space("minilm") == vector_space("minilm-onnx") != vector_space("/some/other/model")


def test_a_model_directory_works_offline(minilm: Embedder) -> None:
    from tldrlab.embed.sentence_transformer import minilm_path

    by_path = get_embedder(str(minilm_path()))
    assert by_path.name == str(minilm_path()) and by_path.dim == 384
    np.testing.assert_allclose(by_path.encode(SENTENCES[:3]), minilm.encode(SENTENCES[:3]), atol=1e-5)


def test_unknown_names_and_paths_get_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DependencyMissingError, match="neither a registered embedder nor a local model"):
        get_embedder("no-such-org/no-such-model")
    empty_dir = tmp_path / "not-a-model"
    empty_dir.mkdir()
    (empty_dir / "config.json").write_text("{broken")
    with pytest.raises(ConfigError, match="cannot load a sentence-transformers model"):
        get_embedder(str(empty_dir))
    with pytest.raises(ConfigError, match="empty"):
        get_embedder("  ")


def test_an_unknown_embedder_name_is_refused_before_the_hub_is_tried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`TLDRLAB_EMBEDDER=bogus` (no organisation/name, no such directory) went to the Hugging Face hub: a
    minute of retries, each a warning line, before the error. The tests run with HF_HUB_OFFLINE=1, whose
    refusal ("not found ... HF_HUB_OFFLINE=1 is set") came first before: the name is refused ahead of any
    hub or offline rule."""
    text = tmp_path / "a.txt"
    text.write_text("A first sentence about parsers. A second one about daemons.\n")
    monkeypatch.setenv("TLDRLAB_EMBEDDER", "minilm-onx")
    get_settings.cache_clear()
    code, _, err = run_captured(["lvm", "ingest", str(text)], capsys)
    assert code == 2, err
    (line,) = err.strip().splitlines()
    # refused by the kind's check, before a run exists (`embed.check_embedder_name`), naming the setting
    said = "error [invalid_config] the embedder setting (TLDRLAB_EMBEDDER): 'minilm-onx' is neither a known"
    assert line.startswith(said) and "minilm-onnx" in line and "hub id (organisation/name)" in line, line
    assert open_registry().list() == []
    with pytest.raises(ConfigError, match="not a registered embedder"):
        get_embedder("bogus")


def test_an_unknown_embedder_name_is_refused_before_torch_is_imported(tmp_path: Path) -> None:
    """`tldrlab lvm ingest FILE --embedder minilm-onx` imported sentence-transformers, and with it torch
    (seconds), before it looked at the name. Measured in a fresh process: this one has torch already."""
    text = tmp_path / "a.txt"
    text.write_text("A first sentence about parsers. A second one about daemons.\n")
    code = (
        "import sys\n"
        "from tldrlab.cli.main import main\n"
        "try:\n"
        f"    main(['lvm', 'ingest', {str(text)!r}, '--embedder', 'minilm-onx'])\n"
        "except SystemExit as exc:\n"
        "    print('exit', exc.code, 'torch' in sys.modules)\n"
    )
    env = {**os.environ, "TLDRLAB_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False, env=env
    )
    assert result.stdout.strip() == "exit 2 False", (result.stdout, result.stderr)
    assert result.stderr.startswith("error [invalid_config] --embedder: 'minilm-onx' is neither a known"), (
        result.stderr
    )


CACHED_EMBEDDER = r"""
import json, sys
import numpy as np
from tldrlab.embed import check_embedder_name, get_embedder
from tldrlab.errors import ConfigError

texts, answers = json.loads(sys.argv[1]), {}
for name in ("tiny-embedder", "sentence-transformers/tiny-embedder", "tiny-embedder-2"):
    try:
        check_embedder_name(name)
        answers[name] = "accepted"
    except ConfigError as exc:
        answers[name] = exc.message
answers["torch imported by the checks"] = "torch" in sys.modules
by_name, by_path = get_embedder("tiny-embedder"), get_embedder(sys.argv[2])
answers["dim"] = by_name.dim
answers["difference"] = float(np.abs(by_name.encode(texts) - by_path.encode(texts)).max())
print(json.dumps(answers))
"""


@pytest.mark.slow
def test_a_bare_name_the_hugging_face_cache_holds_is_accepted_and_loaded_offline(tmp_path: Path) -> None:
    """`--embedder all-MiniLM-L6-v2`, downloaded before into the Hugging Face cache (as
    sentence-transformers/all-MiniLM-L6-v2, where sentence-transformers fetches a bare name from), was
    refused as "neither a known embedder nor a model directory", before the cache was looked at, and
    `get_embedder` looked for it as a hub model of its own name. A tiny model laid out in a cache of this
    test's (HF_HUB_CACHE), offline, in a fresh process: huggingface_hub reads its cache's place at import."""
    tiny_sentence_transformer(tmp_path / "tiny")
    snapshot = cache_model(tmp_path / "hub", "sentence-transformers/tiny-embedder", tmp_path / "tiny")
    env = {
        **os.environ,
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "HF_HUB_OFFLINE": "1",
        "TLDRLAB_HOME": str(tmp_path / "home"),
    }
    result = subprocess.run(
        [sys.executable, "-c", CACHED_EMBEDDER, json.dumps(SENTENCES[:3]), str(snapshot)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    assert answers["tiny-embedder"] == "accepted"
    assert answers["sentence-transformers/tiny-embedder"] == "accepted"
    refused = answers["tiny-embedder-2"]
    assert refused.startswith("--embedder: 'tiny-embedder-2' is neither a known embedder"), refused
    assert "nor in the Hugging Face cache (as sentence-transformers/tiny-embedder-2)" in refused, refused
    assert answers["torch imported by the checks"] is False
    # the cached model itself: the vectors of its snapshot directory, loaded as a model directory
    assert answers["dim"] == 32 and answers["difference"] < 1e-6, answers


@pytest.mark.slow
def test_onnx_backend_agrees_with_pytorch(minilm: Embedder, tmp_path: Path, shared_data: Path) -> None:
    """The optimised backend: exported and quantised once (cached), cosine >= 0.99 to the PyTorch vectors."""
    from tldrlab.data.readers import read_threads
    from tldrlab.data.sentences import split_sentences
    from tldrlab.embed.onnx import OnnxEmbedder

    threads = read_threads(shared_data / "stackexchange_beer" / "Posts.xml", limit=8)
    texts = [s.text for t in threads for p in t.posts for s in split_sentences(p.text)][:200] + SENTENCES
    onnx = OnnxEmbedder(cache_dir=tmp_path)
    assert onnx.name == "minilm-onnx" and onnx.dim == 384
    vectors = onnx.encode(texts, batch_size=16)
    assert vectors.shape == (len(texts), 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(vectors, onnx.encode(texts, batch_size=16))
    cosine = np.sum(vectors * minilm.encode(texts), axis=1)
    assert float(cosine.mean()) >= 0.99
    assert float(cosine.min()) >= 0.99

    exported = onnx.onnx_path
    stamp = exported.stat().st_mtime_ns
    again = OnnxEmbedder(cache_dir=tmp_path)  # the cached export is reused, not redone
    assert again.onnx_path == exported and exported.stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(
        again.encode(texts[:20], batch_size=16), onnx.encode(texts[:20], batch_size=16)
    )
