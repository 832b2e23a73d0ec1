from __future__ import annotations

import json

import pytest

from tldrlab.data.readers import detect_format, read_records, read_threads
from tldrlab.errors import NotFoundError
from tldrlab.samples import SAMPLES, list_samples, sample_path


def test_every_sample_reads_and_is_attributed() -> None:
    assert set(list_samples()) == set(SAMPLES)
    (thread,) = read_threads(sample_path("beer_thread"))
    assert detect_format(sample_path("beer_thread")) == "native"
    assert thread.posts[0].kind == "question" and sum(p.accepted for p in thread.posts) == 1
    assert all(p.url and p.url.startswith("https://beer.stackexchange.com/") for p in thread.posts)
    raw = json.loads(sample_path("beer_thread").read_text(encoding="utf-8"))
    assert raw["license"].startswith("CC BY-SA 3.0")
    threads = read_threads(sample_path("beer_threads"))
    assert len(threads) == 3 and threads[0] == thread
    readme = (sample_path("beer_thread").parent / "README.md").read_text(encoding="utf-8")
    assert all(p.url in readme for t in threads for p in t.posts)
    pairs = read_records(sample_path("debian_pairs"))
    assert len(pairs) == 6 and all(r.summary and r.document for r in pairs)
    assert all(r.id in readme for r in pairs)


def test_unknown_sample() -> None:
    with pytest.raises(NotFoundError, match="beer_thread"):
        sample_path("nope")
