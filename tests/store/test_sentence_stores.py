"""The shared sentence-store suite: every store behaviour is checked on both backends (real SQLite + FAISS,
real PostgreSQL 18 + pgvector), with real beer.stackexchange threads embedded by the real MiniLM."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from tldrlab.data.sentences import split_sentences
from tldrlab.data.threads import Post, Thread
from tldrlab.errors import ConflictError, DimensionMismatchError, InvalidInputError, NotFoundError
from tldrlab.store import STORES, tables
from tldrlab.store.base import PostSentences, SentenceRecord, SentenceStore, ThreadChangedError

StoreFactory = Callable[..., SentenceStore]


@pytest.fixture(params=list(STORES))
def store_kind(request: pytest.FixtureRequest) -> str:
    """Every registered store runs this whole suite (the store contract)."""
    return str(request.param)


@pytest.fixture
def open_test_store(
    store_kind: str, request: pytest.FixtureRequest, tldrlab_home: Path
) -> Iterator[StoreFactory]:
    """`open_test_store(dim=384, embedder=None, **options)` opens the same store again on each call."""
    from tldrlab.store.postgres_pgvector import PostgresPgvectorStore
    from tldrlab.store.sqlite_faiss import SqliteFaissStore

    opened: list[Any] = []
    url = request.getfixturevalue("postgres_url") if store_kind == "postgres_pgvector" else None

    def factory(dim: int = 384, embedder: str | None = None, **options: Any) -> SentenceStore:
        store: Any
        if store_kind == "sqlite_faiss":
            store = SqliteFaissStore(
                tldrlab_home / "store" / "sentences.db", dim, embedder=embedder, **options
            )
        elif store_kind == "postgres_pgvector":
            assert url is not None
            store = PostgresPgvectorStore(url, dim, embedder=embedder)
        else:
            pytest.fail(f"store {store_kind!r} is registered but this suite cannot open it: add it here")
        opened.append(store)
        return store

    yield factory
    for store in opened:
        with contextlib.suppress(Exception):  # already closed by the test
            store.close()


@dataclass
class EmbeddedThread:
    thread: Thread
    records: dict[str, list[SentenceRecord]]
    """post id -> its sentences."""
    vectors: dict[str, np.ndarray]


def post_records(thread: Thread, post: Post) -> list[SentenceRecord]:
    return [
        SentenceRecord(
            thread_id=thread.id,
            post_id=post.id,
            post_number=post.number,
            sentence_index=s.index,
            start=s.start,
            end=s.end,
            text=s.text,
            author=post.author,
            url=post.url,
        )
        for s in split_sentences(post.text)
    ]


@pytest.fixture(scope="session")
def beer_threads(shared_data: Path) -> list[EmbeddedThread]:
    """Six real beer.stackexchange threads, split into sentences and embedded with the real MiniLM."""
    from tldrlab.data.readers import read_threads
    from tldrlab.embed import get_embedder

    embedder = get_embedder("minilm")
    out = []
    for thread in read_threads(shared_data / "stackexchange_beer" / "Posts.xml", limit=6):
        records = {post.id: post_records(thread, post) for post in thread.posts}
        vectors = {pid: embedder.encode([r.text for r in recs]) for pid, recs in records.items()}
        out.append(EmbeddedThread(thread, records, vectors))
    return out


def post_sentences(item: EmbeddedThread, posts: list[Post] | None = None) -> list[PostSentences]:
    """The write of these posts of the thread (all by default), in the order given."""
    return [
        PostSentences(post.id, post.content_hash(), item.records[post.id], item.vectors[post.id])
        for post in (item.thread.posts if posts is None else posts)
    ]


def store_thread(store: SentenceStore, item: EmbeddedThread) -> None:
    store.replace_thread(item.thread, post_sentences(item), [])


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


# --- the shared suite: every test below runs against both stores -------------------------------------------


def test_threads_round_trip_and_listing(
    open_test_store: StoreFactory, beer_threads: list[EmbeddedThread]
) -> None:
    store = open_test_store()
    for item in beer_threads[:3]:
        store_thread(store, item)
    first = beer_threads[0]
    assert store.get_thread(first.thread.id) == first.thread
    infos = {info.id: info for info in store.list_threads()}
    assert set(infos) == {item.thread.id for item in beer_threads[:3]}
    for item in beer_threads[:3]:
        info = infos[item.thread.id]
        assert info.title == item.thread.title
        assert info.posts == len(item.thread.posts)
        assert info.sentences == sum(len(r) for r in item.records.values())
        assert info.content_hash == item.thread.content_hash()
    assert len(store.list_threads(limit=2)) == 2
    assert len(store.list_threads(limit=2, offset=2)) == 1
    assert store.count() == sum(info.sentences for info in infos.values())
    assert store.post_hashes(first.thread.id) == {p.id: p.content_hash() for p in first.thread.posts}

    # a write of the row alone (no posts) replaces the metadata in place and keeps the sentences
    renamed = first.thread.model_copy(update={"title": "renamed"})
    store.replace_thread(renamed, [], [])
    assert store.get_thread(first.thread.id).title == "renamed"
    assert len(store.thread_sentences(first.thread.id)[0]) == infos[first.thread.id].sentences


def test_unknown_threads_are_not_found(open_test_store: StoreFactory) -> None:
    store = open_test_store()
    query = unit_vectors(1, 384, seed=0)[0]
    with pytest.raises(NotFoundError, match="nope"):
        store.get_thread("nope")
    with pytest.raises(NotFoundError):
        store.thread_sentences("nope")
    with pytest.raises(NotFoundError):
        store.search(query, thread_id="nope")
    assert store.post_hashes("nope") == {}
    assert store.search(query) == []  # an empty store has no hits


def test_thread_sentences_keep_order_provenance_and_vectors(
    open_test_store: StoreFactory, beer_threads: list[EmbeddedThread]
) -> None:
    store = open_test_store()
    item = beer_threads[1]
    # write posts in reverse order: reads must still come back in (post number, sentence index) order
    store.replace_thread(item.thread, post_sentences(item, list(reversed(item.thread.posts))), [])
    records, vectors = store.thread_sentences(item.thread.id)
    expected = [r for post in item.thread.posts for r in item.records[post.id]]
    assert records == expected
    np.testing.assert_allclose(vectors, np.vstack([item.vectors[p.id] for p in item.thread.posts]), atol=1e-6)
    assert vectors.dtype == np.float32
    for record in records:  # the span points into the post's text
        post = item.thread.post(record.post_id)
        assert post is not None and post.text[record.start : record.end] == record.text


def filler_thread(i: int) -> Thread:
    post = Post(id="p", number=1, text="Hi.")
    return Thread(id=f"filler-{i:04d}", title=f"Filler thread {i}", posts=[post])


def test_thread_filter_finds_an_old_thread_in_sql(open_test_store: StoreFactory) -> None:
    """The listing's `q` finds a thread past the newest 1,000 by id or title substring (any case, % and _
    taken literally), with paging, on both backends."""
    store: Any = open_test_store()  # both stores share `tables` over their `db`: rows written cheaply
    old = Thread(
        id="se-beer-42", title="Which hops for a NEIPA? 100%_dry", posts=[Post(id="q", number=1, text="Hm.")]
    )
    with store.db.transaction() as db:
        tables.write_thread_row(db, old)
        for i in range(1001):
            tables.write_thread_row(db, filler_thread(i))
    assert old.id not in {t.id for t in store.list_threads(limit=1000)}
    assert [t.id for t in store.list_threads(q="neipa")] == [old.id]  # the title, another case
    assert [t.id for t in store.list_threads(q="BEER-4")] == [old.id]  # the id
    assert [t.id for t in store.list_threads(q="%_")] == [old.id]  # literal: not "anything"
    assert store.list_threads(q="no such thread") == []
    page = store.list_threads(limit=10, offset=995, q="filler")
    assert [t.id for t in page] == [f"filler-{i:04d}" for i in range(5, -1, -1)]  # newest first
    assert {t.title for t in page} == {f"Filler thread {i}" for i in range(6)}


def test_thread_filter_folds_case_beyond_ascii_alike_on_both_backends(open_test_store: StoreFactory) -> None:
    """`q` ignores case as Python's str.casefold does, on both backends: SQLite's LOWER folded ASCII only, so
    "É" found "é" on PostgreSQL and not on SQLite."""
    store: Any = open_test_store()
    threads = [
        Thread(id="Étude-1", title="Café CRÈME au lait", posts=[Post(id="p", number=1, text="Hm.")]),
        Thread(id="de-2", title="Die Straße nach Köln", posts=[Post(id="p", number=1, text="Hm.")]),
        Thread(id="gr-3", title="ΣΟΦΙΑ and beer", posts=[Post(id="p", number=1, text="Hm.")]),
    ]
    with store.db.transaction() as db:
        for thread in threads:
            tables.write_thread_row(db, thread)

    def found(q: str) -> list[str]:
        return sorted(t.id for t in store.list_threads(q=q))

    assert found("café crème") == ["Étude-1"]  # É/È in the title, é/è asked
    assert found("CAFÉ") == ["Étude-1"]
    assert found("étude") == ["Étude-1"]  # the id
    assert found("STRASSE") == ["de-2"]  # casefold: ß is ss
    assert found("straße") == ["de-2"]
    assert found("KÖLN") == ["de-2"]
    assert found("σοφια") == ["gr-3"]
    assert found("ètude") == []  # folding is of case, not of accents

    # a store written before the folded names were stored is folded when opened
    store.db.execute("UPDATE store_threads SET id_folded = NULL, title_folded = NULL")
    store.close()
    store = open_test_store()
    assert [t.id for t in store.list_threads(q="straSSe")] == ["de-2"]


def test_replace_and_delete_posts(open_test_store: StoreFactory, beer_threads: list[EmbeddedThread]) -> None:
    from tldrlab.embed import get_embedder

    store = open_test_store()
    item = beer_threads[1]
    store_thread(store, item)
    before = store.count()
    question, answer = item.thread.posts[0], item.thread.posts[1]

    edited = answer.model_copy(update={"text": "Brewing is older than writing. Nobody knows exactly when."})
    records = post_records(item.thread, edited)
    vectors = get_embedder("minilm").encode([r.text for r in records])
    posts = [edited if p.id == edited.id else p for p in item.thread.posts]
    edited_version = item.thread.model_copy(update={"posts": posts})
    # only the edited post is written: the others keep their sentences
    store.replace_thread(
        edited_version, [PostSentences(edited.id, edited.content_hash(), records, vectors)], []
    )
    assert store.post_hashes(item.thread.id)[edited.id] == edited.content_hash()
    texts = [r.text for r in store.thread_sentences(item.thread.id)[0] if r.post_id == answer.id]
    assert texts == ["Brewing is older than writing.", "Nobody knows exactly when."]
    assert store.count() == before - len(item.records[answer.id]) + 2
    hit = store.search(vectors[0], k=1)[0]
    assert hit.sentence.text == "Brewing is older than writing." and hit.score == pytest.approx(1.0, abs=1e-4)

    remaining_thread = item.thread.model_copy(update={"posts": item.thread.posts[2:]})
    store.replace_thread(remaining_thread, [], [answer.id, question.id])
    assert store.get_thread(item.thread.id) == remaining_thread
    remaining = store.thread_sentences(item.thread.id)[0]
    assert {r.post_id for r in remaining} == {p.id for p in item.thread.posts[2:]}
    assert set(store.post_hashes(item.thread.id)) == {p.id for p in item.thread.posts[2:]}
    assert all(h.sentence.post_id not in (answer.id, question.id) for h in store.search(vectors[0], k=50))


def test_a_deleted_thread_is_gone_from_reads_searches_and_a_reopened_store(
    open_test_store: StoreFactory, beer_threads: list[EmbeddedThread]
) -> None:
    store = open_test_store()
    kept, deleted = beer_threads[0], beer_threads[1]
    store_thread(store, kept)
    store_thread(store, deleted)
    count = store.count()
    gone = sum(len(records) for records in deleted.records.values())
    probe = next(v for v in deleted.vectors.values() if len(v))[0]
    assert store.search(probe, k=1)[0].sentence.thread_id == deleted.thread.id

    assert store.delete_thread(deleted.thread.id) == gone
    for read in (store.get_thread, store.thread_sentences, store.delete_thread):
        with pytest.raises(NotFoundError):
            read(deleted.thread.id)
    assert store.post_hashes(deleted.thread.id) == {}
    assert [t.id for t in store.list_threads()] == [kept.thread.id]
    assert store.count() == count - gone
    assert all(h.sentence.thread_id == kept.thread.id for h in store.search(probe, k=50))
    with pytest.raises(InvalidInputError):
        store.delete_thread("")
    store.close()

    reopened = open_test_store()  # the saved FAISS index, or PostgreSQL's rows, no longer hold it
    assert reopened.count() == count - gone
    assert all(h.sentence.thread_id == kept.thread.id for h in reopened.search(probe, k=50))
    store_thread(reopened, deleted)  # and it can be ingested again
    assert reopened.get_thread(deleted.thread.id) == deleted.thread and reopened.count() == count


def test_failed_replace_changes_nothing(
    open_test_store: StoreFactory, beer_threads: list[EmbeddedThread]
) -> None:
    store = open_test_store()
    item = beer_threads[0]
    store_thread(store, item)
    post = item.thread.posts[0]
    old_records, old_vectors = store.thread_sentences(item.thread.id)
    old_hashes = store.post_hashes(item.thread.id)
    good = post_records(item.thread, post)
    # The database refuses a sentence without text half-way through the insert: the delete of the old
    # sentences that ran before it in the same transaction must be rolled back.
    broken = [*good[:1], SentenceRecord(item.thread.id, post.id, post.number, 99, 0, 1, None)]  # type: ignore[arg-type]

    def write(records: list[SentenceRecord], vectors: np.ndarray) -> None:
        store.replace_thread(item.thread, [PostSentences(post.id, "new-hash", records, vectors)], [])

    with pytest.raises(Exception):  # noqa: B017 - sqlite3.IntegrityError or psycopg's NotNullViolation
        write(broken, unit_vectors(2, 384, 1))
    with pytest.raises(DimensionMismatchError, match="dimension 128"):
        write(good[:1], unit_vectors(1, 128, 1))
    with pytest.raises(InvalidInputError, match="3 vectors for 1 sentences"):
        write(good[:1], unit_vectors(3, 384, 1))
    with pytest.raises(InvalidInputError, match="NaN"):
        write(good[:1], np.full((1, 384), np.nan))
    records, vectors = store.thread_sentences(item.thread.id)
    assert records == old_records
    np.testing.assert_array_equal(vectors, old_vectors)
    assert store.post_hashes(item.thread.id) == old_hashes
    # and the index still answers exactly as before
    assert store.search(old_vectors[0], k=1)[0].sentence == old_records[0]


class WrongDimensionEmbedder:
    """The real MiniLM, except that any call with a sentence holding `marker` returns vectors one dimension
    too wide (as a misconfigured embedder would): the store must refuse them before writing anything."""

    def __init__(self, marker: str) -> None:
        from tldrlab.embed import get_embedder

        self.inner = get_embedder("minilm")
        self.name, self.dim, self.marker = self.inner.name, self.inner.dim, marker

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        vectors = self.inner.encode(texts, batch_size=batch_size)
        if any(self.marker in text for text in texts):
            return np.concatenate([vectors, np.zeros((len(texts), 1), np.float32)], axis=1)
        return vectors


def refuse_sentences_holding(store: Any, marker: str) -> Callable[[], None]:
    """Make the store's database refuse (a real constraint error) any sentence row holding `marker`; returns
    a function lifting the refusal."""
    db = store.db
    if db.is_postgres:
        db.execute(
            f"ALTER TABLE store_sentences ADD CONSTRAINT refuse_marker CHECK (strpos(text, '{marker}') = 0)"
        )
        return lambda: db.execute("ALTER TABLE store_sentences DROP CONSTRAINT refuse_marker")
    db.execute(
        f"CREATE TRIGGER refuse_marker BEFORE INSERT ON store_sentences WHEN instr(NEW.text, '{marker}') > 0 "
        "BEGIN SELECT RAISE(ABORT, 'sentence refused'); END"
    )
    return lambda: db.execute("DROP TRIGGER refuse_marker")


@pytest.mark.parametrize("failure", ["row refused by the database", "vectors of the wrong dimension"])
def test_failed_thread_reingest_keeps_the_old_thread_exactly(
    failure: str, open_test_store: StoreFactory, beer_threads: list[EmbeddedThread]
) -> None:
    """A re-ingest that fails half-way (after the thread's first changed post, before its second) leaves the
    thread's text, posts, sentences, offsets, vectors and index exactly as before; a good re-ingest works."""
    from tldrlab.digest.ingest import ingest_threads, post_sentence_records
    from tldrlab.embed import get_embedder

    store = open_test_store()
    embedder = get_embedder("minilm")
    old = next(item.thread for item in beer_threads if len(item.thread.posts) >= 3)
    other = next(item.thread for item in beer_threads if item.thread.id != old.id)
    ingest_threads([old, other], store, embedder)
    before = {
        "thread": store.get_thread(old.id),
        "sentences": store.thread_sentences(old.id),
        "hashes": store.post_hashes(old.id),
        "listing": store.list_threads(),
        "count": store.count(),
    }
    assert before["thread"] == old

    # the new version edits the first post, edits the second (with a sentence that will fail), drops the last
    marker = "Zyxwv"
    posts = list(old.posts)
    posts[0] = posts[0].model_copy(update={"text": "A new first sentence. " + posts[0].text})
    posts[1] = posts[1].model_copy(update={"text": f"The {marker} sentence fails. " + posts[1].text})
    new = old.model_copy(update={"title": "a new title", "posts": posts[:-1]})

    if failure == "row refused by the database":
        lift = refuse_sentences_holding(store, marker)
        with pytest.raises((sqlite3.IntegrityError, psycopg.IntegrityError), match="refuse"):
            ingest_threads([new], store, embedder)
        lift()
    else:
        with pytest.raises(DimensionMismatchError):
            ingest_threads([new], store, WrongDimensionEmbedder(marker))

    def check_unchanged(reader: SentenceStore) -> None:
        assert reader.get_thread(old.id) == old
        records, vectors = reader.thread_sentences(old.id)
        assert records == before["sentences"][0]
        np.testing.assert_array_equal(vectors, before["sentences"][1])
        assert reader.post_hashes(old.id) == before["hashes"]
        assert reader.list_threads() == before["listing"]
        assert reader.count() == before["count"]
        # the index across threads (FAISS for sqlite_faiss) still finds the old sentences, and no new one
        for i in (0, len(records) - 1):
            hit = reader.search(vectors[i], k=1)[0]
            assert hit.sentence == records[i] and hit.score == pytest.approx(1.0, abs=1e-4)
        texts = {h.sentence.text for h in reader.search(vectors[0], k=reader.count())}
        assert "A new first sentence." not in texts

    check_unchanged(store)
    store.close()
    check_unchanged(open_test_store())  # and so does a store opened afresh

    store = open_test_store()
    stats = ingest_threads([new], store, embedder)
    assert (stats.threads, stats.embedded, stats.removed_posts) == (1, 2, 1)
    assert store.get_thread(old.id) == new
    records, vectors = store.thread_sentences(old.id)
    assert records == [r for post in new.posts for r in post_sentence_records(new, post)]
    for record in records:
        post = next(p for p in new.posts if p.id == record.post_id)
        assert post.text[record.start : record.end] == record.text
    assert store.post_hashes(old.id) == {p.id: p.content_hash() for p in new.posts}
    assert store.count() == before["count"] - len(before["sentences"][0]) + len(records)
    hit = store.search(vectors[0], k=1)[0]
    assert hit.sentence == records[0] and hit.sentence.text == "A new first sentence."


def edited_thread(thread: Thread, post_index: int, prefix: str) -> Thread:
    """`thread` with one post's text edited (a new first sentence)."""
    posts = list(thread.posts)
    posts[post_index] = posts[post_index].model_copy(update={"text": prefix + " " + posts[post_index].text})
    return thread.model_copy(update={"posts": posts})


def assert_stored_exactly(store: SentenceStore, thread: Thread) -> None:
    """The store holds `thread`: its row, a hash per post, and every sentence is its post's text at its
    offsets, split as ingest splits it."""
    from tldrlab.digest.ingest import post_sentence_records

    assert store.get_thread(thread.id) == thread
    assert store.post_hashes(thread.id) == {p.id: p.content_hash() for p in thread.posts}
    records, vectors = store.thread_sentences(thread.id)
    assert records == [r for post in thread.posts for r in post_sentence_records(thread, post)]
    texts = {p.id: p.text for p in thread.posts}
    for record in records:
        assert texts[record.post_id][record.start : record.end] == record.text
    assert vectors.shape == (len(records), store.dim)


def test_a_write_computed_against_stale_hashes_is_refused(
    open_test_store: StoreFactory, beer_threads: list[EmbeddedThread]
) -> None:
    """Two writers (two store connections, as two processes) compute a write of one thread against the same
    stored hashes; the second to commit is refused and the first one's thread stays exactly as written."""
    from tldrlab.digest.ingest import ingest_threads, post_sentence_records
    from tldrlab.embed import get_embedder

    embedder = get_embedder("minilm")
    first, second = open_test_store(), open_test_store()
    old = next(item.thread for item in beer_threads if len(item.thread.posts) >= 3)
    ingest_threads([old], first, embedder)
    base = first.thread_state(old.id)
    assert second.thread_state(old.id) == base and base.post_hashes == first.post_hashes(old.id)

    def write_of(thread: Thread, post_index: int) -> list[PostSentences]:
        post = thread.posts[post_index]
        records = post_sentence_records(thread, post)
        return [
            PostSentences(post.id, post.content_hash(), records, embedder.encode([r.text for r in records]))
        ]

    a = edited_thread(old, 0, "Writer A edits the first post.")
    b = edited_thread(old, 1, "Writer B edits the second post.")
    a_write, b_write = write_of(a, 0), write_of(b, 1)  # both computed against `base`
    second.replace_thread(b, b_write, [], expected=base)
    count = first.count()
    with pytest.raises(ThreadChangedError, match=r"changed by another writer .*posts \[") as refused:
        first.replace_thread(a, a_write, [], expected=base)
    assert refused.value.code == "thread_changed" and refused.value.http_status == 409
    for reader in (first, second):
        assert_stored_exactly(reader, b)
        assert reader.count() == count
    texts = {h.sentence.text for h in first.search(a_write[0].vectors[0], k=first.count())}
    assert "Writer A edits the first post." not in texts
    # against the hashes stored now the same write goes through
    first.replace_thread(a, [*a_write, *write_of(a, 1)], [], expected=first.thread_state(old.id))
    assert_stored_exactly(second, a)


def test_a_write_computed_against_a_stale_title_or_thread_field_is_refused(
    open_test_store: StoreFactory, beer_threads: list[EmbeddedThread]
) -> None:
    """The compare-and-set covers the thread row, not only the post hashes: two writers changing only the
    title (or the tags, or a post's votes: anything the row holds) computed against one state; the second
    to commit is refused and the first one's row stays (before, the last one won silently)."""
    from tldrlab.digest.ingest import ingest_threads
    from tldrlab.embed import get_embedder

    first, second = open_test_store(), open_test_store()
    old = beer_threads[0].thread
    ingest_threads([old], first, get_embedder("minilm"))
    voted = [old.posts[0].model_copy(update={"score": (old.posts[0].score or 0) + 7}), *old.posts[1:]]
    changes = [{"title": "Writer B's title"}, {"tags": ["writer-b"]}, {"posts": voted}]
    for change in changes:
        base = first.thread_state(old.id)
        assert base.row is not None and base.post_hashes == first.post_hashes(old.id)
        b = first.get_thread(old.id).model_copy(update=change)
        a = b.model_copy(update={"title": "Writer A's title"})
        second.replace_thread(b, [], [], expected=base)
        assert first.thread_state(old.id).post_hashes == base.post_hashes  # no post text changed
        with pytest.raises(ThreadChangedError, match="title or other thread fields") as refused:
            first.replace_thread(a, [], [], expected=base)
        assert refused.value.code == "thread_changed" and refused.value.http_status == 409
        assert first.get_thread(old.id) == b and second.get_thread(old.id) == b
        first.replace_thread(a, [], [], expected=first.thread_state(old.id))  # against what is stored now
        assert second.get_thread(old.id) == a
    # a thread another writer created since the (empty) state was read is refused too
    absent = first.thread_state("new-thread")
    assert absent.row is None and absent.post_hashes == {}
    fresh = Thread(id="new-thread", title="one", posts=[])
    second.replace_thread(fresh, [], [], expected=absent)
    with pytest.raises(ThreadChangedError, match="not stored yet"):
        first.replace_thread(fresh.model_copy(update={"title": "two"}), [], [], expected=absent)
    assert first.get_thread("new-thread").title == "one"


class InterleavedStore:
    """A store whose first `replace_thread` lets another ingest of the same thread land just before it (two
    processes ingesting one thread at once, interleaved by hand); everything else goes to the real store."""

    def __init__(self, store: SentenceStore, before_first_write: Callable[[], None]) -> None:
        self.store = store
        self.before_first_write: Callable[[], None] | None = before_first_write
        self.writes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    def replace_thread(self, *args: Any, **kwargs: Any) -> None:
        self.writes += 1
        if self.before_first_write is not None:
            interleave, self.before_first_write = self.before_first_write, None
            interleave()
        self.store.replace_thread(*args, **kwargs)


def test_concurrent_ingests_of_one_thread_never_leave_it_mixed(
    open_test_store: StoreFactory, beer_threads: list[EmbeddedThread]
) -> None:
    """Ingest A (editing post 1) computes its write against the stored hashes; ingest B (editing post 2, in
    another connection) lands before A writes. A's write is refused and recomputed: the thread ends as A's
    version, every sentence its post's text, with post 2 re-embedded and post 1's vectors reused (before,
    A's write went through over B's post 2 sentences: A's text with B's sentences)."""
    from tldrlab.digest.ingest import ingest_threads
    from tldrlab.embed import get_embedder

    embedder = get_embedder("minilm")
    old = next(item.thread for item in beer_threads if len(item.thread.posts) >= 3)
    ingest_threads([old], open_test_store(), embedder)
    a = edited_thread(old, 0, "Ingest A edits the first post.")
    b = edited_thread(old, 1, "Ingest B edits the second post.")
    other = open_test_store()
    store = InterleavedStore(open_test_store(), lambda: ingest_threads([b], other, embedder))

    stats = ingest_threads([a], store, embedder)  # type: ignore[arg-type]  # a SentenceStore by delegation
    assert_stored_exactly(open_test_store(), a)
    assert_stored_exactly(other, a)
    assert store.writes == 2 and stats.rewrites == 1
    assert (stats.threads, stats.embedded) == (1, 2)  # post 1 once, then post 2 (B's text is not A's)
    # the retry's write holds nothing of B: B's sentence is gone from the index too
    hits = other.search(embedder.encode(["Ingest B edits the second post."])[0], k=other.count())
    assert "Ingest B edits the second post." not in {h.sentence.text for h in hits}


def test_concurrent_ingests_changing_only_the_title_are_noticed(
    open_test_store: StoreFactory, beer_threads: list[EmbeddedThread]
) -> None:
    """Ingest A retitles a thread; ingest B (another connection) retitles it too and lands before A writes.
    A's write is refused (B's title was not what A computed against), A re-reads the state and writes again:
    nothing re-embedded, A's version whole. Before, the compare-and-set looked at post hashes only, so A's
    write went through without noticing B's."""
    from tldrlab.digest.ingest import ingest_threads
    from tldrlab.embed import get_embedder

    embedder = get_embedder("minilm")
    old = beer_threads[0].thread
    ingest_threads([old], open_test_store(), embedder)
    a = old.model_copy(update={"title": "Ingest A's title"})
    b = old.model_copy(update={"title": "Ingest B's title"})
    other = open_test_store()
    store = InterleavedStore(open_test_store(), lambda: ingest_threads([b], other, embedder))

    stats = ingest_threads([a], store, embedder)  # type: ignore[arg-type]  # a SentenceStore by delegation
    assert store.writes == 2 and stats.rewrites == 1
    assert (stats.threads, stats.embedded) == (1, 0)  # the posts were never changed: nothing re-embedded
    assert_stored_exactly(other, a)


def test_an_ingest_that_keeps_losing_the_race_gives_up_with_a_clear_error(
    open_test_store: StoreFactory, beer_threads: list[EmbeddedThread]
) -> None:
    from tldrlab.digest.ingest import WRITE_TRIES, ingest_threads
    from tldrlab.embed import get_embedder

    embedder = get_embedder("minilm")
    old = next(item.thread for item in beer_threads if len(item.thread.posts) >= 3)
    other = open_test_store()
    ingest_threads([old], other, embedder)
    rivals = iter(edited_thread(old, 1, f"Rival edit number {i}.") for i in range(WRITE_TRIES + 1))

    class AlwaysInterleaved(InterleavedStore):
        def replace_thread(self, *args: Any, **kwargs: Any) -> None:
            ingest_threads([next(rivals)], other, embedder)
            super().replace_thread(*args, **kwargs)

    store = AlwaysInterleaved(open_test_store(), lambda: None)
    a = edited_thread(old, 0, "Ingest A edits the first post.")
    with pytest.raises(ThreadChangedError, match=f"each of {WRITE_TRIES} tries") as refused:
        ingest_threads([a], store, embedder)  # type: ignore[arg-type]
    assert store.writes == WRITE_TRIES
    last_rival = edited_thread(old, 1, f"Rival edit number {WRITE_TRIES - 1}.")
    assert_stored_exactly(other, last_rival)  # the other writer's thread, whole
    assert "ingest it again" in refused.value.message


def reworded(item: EmbeddedThread) -> tuple[Thread, list[PostSentences]]:
    """A new version of the thread, retitled and with a sentence before each post's text (every sentence's
    offsets move), and the full write of it (the new posts' sentences, split as ingest splits them)."""
    posts = [p.model_copy(update={"text": f"Edited reply {p.number}. {p.text}"}) for p in item.thread.posts]
    thread = item.thread.model_copy(update={"title": "A reworded title", "posts": posts})
    write = []
    for number, post in enumerate(thread.posts):
        records = post_records(thread, post)
        write.append(
            PostSentences(post.id, post.content_hash(), records, unit_vectors(len(records), 384, number))
        )
    return thread, write


@contextlib.contextmanager
def writes_after_thread_reads(
    reader: SentenceStore, writes: list[Callable[[], None]]
) -> Iterator[list[Callable[[], None]]]:
    """While open, each statement of `reader` that reads the thread row (store_threads) is followed at once by
    the next of `writes`, a re-ingest that another connection commits before `reader` reads anything more:
    the interleaving a server meets now and then when a thread is re-ingested while it is digested, made
    certain. Yields the writes still pending."""
    db = reader.db  # type: ignore[attr-defined]  # both stores keep their Database there
    query = db.query
    pending = list(writes)

    def query_then_write(sql: str, params: Any = (), **options: Any) -> list[dict[str, Any]]:
        rows = query(sql, params, **options)
        if pending and "FROM store_threads" in sql:
            pending.pop(0)()
        return rows

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(db, "query", query_then_write)
        yield pending


def assert_point_into(thread: Thread, sentences: list[Any]) -> None:
    """Every sentence (a SentenceRecord or a Highlight) names a post of `thread` by id and number, and its
    offsets slice that post's text to the sentence's text."""
    posts = {p.id: p for p in thread.posts}
    assert sentences
    for sentence in sentences:
        post = posts[sentence.post_id]
        assert sentence.post_number == post.number
        assert post.text[sentence.start : sentence.end] == sentence.text, (sentence, post.text[:80])


def test_a_thread_snapshot_is_one_version_while_a_reingest_commits_between_its_reads(
    open_test_store: StoreFactory, beer_threads: list[EmbeddedThread]
) -> None:
    """A re-ingest (another connection) commits right after the snapshot read the thread row and before it
    read the sentences: the snapshot is still the old version whole, text, sentences and vectors; the next
    one is the new version whole."""
    reader, writer = open_test_store(), open_test_store()
    item = next(item for item in beer_threads if len(item.thread.posts) >= 3)
    store_thread(writer, item)
    before = reader.thread_sentences(item.thread.id)
    new, write = reworded(item)

    with writes_after_thread_reads(reader, [lambda: writer.replace_thread(new, write, [])]) as pending:
        snapshot = reader.thread_snapshot(item.thread.id)
        assert not pending  # the write did land in the middle of the snapshot
    assert snapshot.thread == item.thread
    assert snapshot.sentences == before[0]
    np.testing.assert_array_equal(snapshot.vectors, before[1])
    assert_point_into(snapshot.thread, snapshot.sentences)

    after = reader.thread_snapshot(item.thread.id)
    assert after.thread == new and after.sentences == [r for p in write for r in p.sentences]
    np.testing.assert_allclose(after.vectors, np.concatenate([p.vectors for p in write]), atol=1e-6)
    assert_point_into(after.thread, after.sentences)
    with pytest.raises(NotFoundError):
        reader.thread_snapshot("nope")


def test_a_digest_cites_the_version_of_the_thread_it_was_made_from_while_it_is_reingested(
    open_test_store: StoreFactory, beer_threads: list[EmbeddedThread]
) -> None:
    """Re-ingests of the thread (another connection) commit after every read of its row while it is digested,
    back and forth between two versions. The digest is of one version: its title and content hash are that
    version's and every highlight's offsets slice that version's posts. Before, the digest read the thread
    and then, in a second call, its sentences: the new version's offsets over the old version's text."""
    from tldrlab.digest.pipeline import DigestOptions, make_digest

    store, writer = open_test_store(), open_test_store()
    item = next(item for item in beer_threads if len(item.thread.posts) >= 3)
    store_thread(writer, item)
    new, write = reworded(item)
    versions = {item.thread.content_hash(): item.thread, new.content_hash(): new}

    def reingest(version: Thread) -> Callable[[], None]:
        posts = write if version == new else post_sentences(item)
        return lambda: writer.replace_thread(version, posts, [])

    with writes_after_thread_reads(store, [reingest(new), reingest(item.thread)]) as pending:
        options = DigestOptions(summarizer="extractive", k=50, use_cache=False)
        digest = make_digest(store, item.thread.id, options)
        assert len(pending) < 2
    thread = versions[digest.content_hash]
    assert digest.title == thread.title
    assert_point_into(thread, digest.highlights)
    cited = {c for bullet in digest.bullets for c in bullet.citations}
    assert cited and cited <= {h.id for h in digest.highlights}  # so every citation points into it too


def test_search_ranks_real_sentences(
    open_test_store: StoreFactory, beer_threads: list[EmbeddedThread]
) -> None:
    from tldrlab.embed import get_embedder

    store = open_test_store()
    for item in beer_threads:
        store_thread(store, item)
    embedder = get_embedder("minilm")
    by_title = {item.thread.title: item.thread.id for item in beer_threads}
    serving = by_title["What temperature should I serve my beer?"]
    query = embedder.encode(["At what temperature is beer best served?"])[0]
    hits = store.search(query, k=5)
    assert len(hits) == 5
    assert hits[0].sentence.thread_id == serving
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    citra = by_title["What is a citra hop, and how does it differ from other hops?"]
    hops = store.search(embedder.encode(["Citra hops aroma"])[0], k=3)
    assert hops[0].sentence.thread_id == citra

    # within one thread: exactly the brute-force ranking over that thread's stored vectors
    for item in beer_threads[:3]:
        records, vectors = store.thread_sentences(item.thread.id)
        scores = vectors @ query
        k = min(4, len(records))
        within = store.search(query, k=k, thread_id=item.thread.id)
        assert [h.sentence for h in within] == [records[i] for i in np.argsort(-scores, kind="stable")[:k]]
        np.testing.assert_allclose([h.score for h in within], np.sort(scores)[::-1][:k], atol=1e-4)
        assert all(h.sentence.thread_id == item.thread.id for h in within)
    # every stored sentence finds itself first
    records, vectors = store.thread_sentences(serving)
    for record, vector in zip(records, vectors, strict=True):
        top = store.search(vector, k=1)[0]
        assert top.score == pytest.approx(1.0, abs=1e-4)
        assert top.sentence.text == record.text


def test_wrong_dimensions_and_embedders_are_refused(
    open_test_store: StoreFactory, beer_threads: list[EmbeddedThread]
) -> None:
    store = open_test_store(embedder="minilm")
    store_thread(store, beer_threads[0])
    with pytest.raises(DimensionMismatchError, match="dimension 768"):
        store.search(unit_vectors(1, 768, 0)[0])
    with pytest.raises(InvalidInputError, match="k must be"):
        store.search(unit_vectors(1, 384, 0)[0], k=0)
    store.close()
    with pytest.raises(DimensionMismatchError, match="holds 384-d vectors but 768-d"):
        open_test_store(dim=768)
    with pytest.raises(ConflictError, match="minilm"):
        open_test_store(embedder="/models/another-model")
    same_space = open_test_store(embedder="minilm-onnx")  # same model, other runtime: vectors comparable
    assert same_space.count() == sum(len(r) for r in beer_threads[0].records.values())


def test_reopen_keeps_everything(open_test_store: StoreFactory, beer_threads: list[EmbeddedThread]) -> None:
    store = open_test_store()
    for item in beer_threads[:2]:
        store_thread(store, item)
    count = store.count()
    records, vectors = store.thread_sentences(beer_threads[1].thread.id)
    expected = store.search(vectors[2], k=3)
    store.close()

    reopened = open_test_store()
    assert reopened.count() == count
    assert reopened.get_thread(beer_threads[1].thread.id) == beer_threads[1].thread
    assert reopened.thread_sentences(beer_threads[1].thread.id)[0] == records
    assert [h.sentence for h in reopened.search(vectors[2], k=3)] == [h.sentence for h in expected]


def test_approximate_index_still_finds_exact_matches(store_kind: str, open_test_store: StoreFactory) -> None:
    """Above the size threshold sqlite_faiss switches to IVF (postgres always has HNSW); stored vectors
    queried back must still come first."""
    from tldrlab.store.faiss_index import FaissIndexConfig

    options: dict[str, Any] = {}
    if store_kind == "sqlite_faiss":
        options["index_config"] = FaissIndexConfig(approximate_above=400, nprobe=2)
    store = open_test_store(**options)
    thread = Thread(
        id="big", title="many sentences", posts=[Post(id=f"p{i}", number=i + 1, text="x") for i in range(20)]
    )
    vectors = unit_vectors(1200, 384, seed=3)
    for i, post in enumerate(thread.posts):  # one post per write: the index grows past the threshold
        rows = range(i * 60, (i + 1) * 60)
        records = [SentenceRecord("big", post.id, post.number, j, 0, 1, f"s{r}") for j, r in enumerate(rows)]
        written = PostSentences(post.id, f"h{i}", records, vectors[i * 60 : (i + 1) * 60])
        store.replace_thread(thread, [written], [])
    if store_kind == "sqlite_faiss":
        assert store.index.kind == "ivf"  # type: ignore[attr-defined]
    for r in range(0, 1200, 37):
        top = store.search(vectors[r], k=1)[0]
        assert top.sentence.text == f"s{r}"
        assert top.score == pytest.approx(1.0, abs=1e-4)
    if store_kind == "sqlite_faiss":  # shrinking well below the threshold goes back to exact search
        shrunk = thread.model_copy(update={"posts": thread.posts[:3]})
        store.replace_thread(shrunk, [], [p.id for p in thread.posts[3:]])
        assert store.index.kind == "flat"  # type: ignore[attr-defined]
        assert store.search(vectors[61], k=1)[0].sentence.text == "s61"


# --- sqlite_faiss only: the FAISS file is a cache of SQLite ------------------------------------------------


def test_faiss_file_is_reloaded_or_rebuilt(tldrlab_home: Path, beer_threads: list[EmbeddedThread]) -> None:
    from tldrlab.store.sqlite_faiss import SqliteFaissStore

    path = tldrlab_home / "store" / "sentences.db"
    with SqliteFaissStore(path) as store:
        store_thread(store, beer_threads[0])
        records, vectors = store.thread_sentences(beer_threads[0].thread.id)
    index_file = path.with_suffix(".faiss")
    assert index_file.exists()

    with SqliteFaissStore(path) as store:
        assert store.index_source == "file"
        assert store.search(vectors[0], k=1)[0].sentence == records[0]

    index_file.unlink()
    with SqliteFaissStore(path) as store:
        assert store.index_source == "rebuilt"
        assert store.search(vectors[0], k=1)[0].sentence == records[0]
    assert index_file.exists()

    index_file.write_bytes(b"not a faiss index")  # corrupt: rebuilt, never trusted
    with SqliteFaissStore(path) as store:
        assert store.index_source == "rebuilt"
        assert store.search(vectors[1], k=1)[0].sentence == records[1]


def test_writes_from_another_process_are_seen(tldrlab_home: Path, beer_threads: list[EmbeddedThread]) -> None:
    """Two handles on one file (like the API server and an ingest worker): the reader's index catches up."""
    from tldrlab.store.sqlite_faiss import SqliteFaissStore

    path = tldrlab_home / "store" / "sentences.db"
    with SqliteFaissStore(path) as reader, SqliteFaissStore(path) as writer:
        store_thread(writer, beer_threads[2])
        records, vectors = writer.thread_sentences(beer_threads[2].thread.id)
        assert reader.search(vectors[0], k=1)[0].sentence == records[0]
        thread = beer_threads[2].thread
        left = thread.model_copy(update={"posts": [p for p in thread.posts if p.id != records[0].post_id]})
        writer.replace_thread(left, [], [records[0].post_id])
        assert all(h.sentence.post_id != records[0].post_id for h in reader.search(vectors[0], k=5))
        # the reader's own write after that keeps its index consistent too
        store_thread(reader, beer_threads[3])
        r3, v3 = reader.thread_sentences(beer_threads[3].thread.id)
        assert writer.search(v3[0], k=1)[0].sentence == r3[0]
        assert reader.search(v3[0], k=1)[0].sentence == r3[0]


# --- open_store picks the backend from the settings ---------------------------------------------------------


def test_open_store_defaults_to_sqlite_under_home(tldrlab_home: Path) -> None:
    from tldrlab.store import open_store
    from tldrlab.store.sqlite_faiss import SqliteFaissStore

    store = open_store()
    try:
        assert isinstance(store, SqliteFaissStore)
        assert store.path == tldrlab_home / "store" / "sentences.db"
        assert store.dim == 384
    finally:
        store.close()


def test_open_store_uses_postgres_from_the_environment(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tldrlab.config import get_settings
    from tldrlab.store import open_store
    from tldrlab.store.postgres_pgvector import PostgresPgvectorStore

    monkeypatch.setenv("TLDRLAB_DATABASE_URL", postgres_url)
    get_settings.cache_clear()
    store = open_store(dim=8)
    try:
        assert isinstance(store, PostgresPgvectorStore)
        assert store.dim == 8
    finally:
        store.close()


def test_open_store_rejects_unknown_urls() -> None:
    from tldrlab.errors import ConfigError
    from tldrlab.store import open_store

    with pytest.raises(ConfigError, match="unsupported store URL"):
        open_store(url="mysql://localhost/db")
