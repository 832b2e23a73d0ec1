"""Folding long threads: first posts, best-ranked posts and the latest survive, gaps are marked."""

from __future__ import annotations

from tldrlab.data.threads import Post, Thread
from tldrlab.digest.fold import fold_thread
from tldrlab.digest.highlights import Highlight


def long_thread(n: int = 40) -> Thread:
    posts = [
        Post(id=f"p{i}", number=i, text=f"Post number {i} says " + "words " * 60) for i in range(1, n + 1)
    ]
    return Thread(id="long", title="A long thread", posts=posts)


def highlight_in(post_id: str, number: int, rank: int) -> Highlight:
    return Highlight(
        id=f"{post_id}:0",
        rank=rank,
        score=1.0,
        text="x",
        thread_id="long",
        post_id=post_id,
        post_number=number,
        sentence_index=0,
        start=0,
        end=1,
    )


def test_short_threads_are_kept_whole() -> None:
    thread = long_thread(3)
    text, kept = fold_thread(thread, [], max_chars=100_000)
    assert kept == ["p1", "p2", "p3"] and "omitted" not in text


def test_long_threads_keep_first_ranked_and_latest_posts() -> None:
    thread = long_thread(40)
    text, kept = fold_thread(thread, [highlight_in("p25", 25, 1), highlight_in("p12", 12, 2)], max_chars=2000)
    assert len(text) <= 2000
    assert kept[:2] == ["p1", "p2"]
    assert {"p12", "p25", "p40"} <= set(kept)
    assert kept == sorted(kept, key=lambda p: int(p[1:]))  # shown in thread order
    assert "post(s) omitted" in text and text.startswith("Title: A long thread")


def omitted_counts(text: str) -> list[int]:
    return [int(line.split()[1]) for line in text.splitlines() if "omitted" in line]


def test_the_best_ranked_post_wins_a_tight_budget_and_every_gap_is_counted() -> None:
    thread = long_thread(40)
    # room for the first two posts and one more: the rank-1 highlight's post, not the rank-2 one
    text, kept = fold_thread(thread, [highlight_in("p25", 25, 2), highlight_in("p12", 12, 1)], max_chars=1200)
    assert kept == ["p1", "p2", "p12"]
    assert omitted_counts(text) == [9, 28]  # p3..p11, then p13..p40 (a gap at the end is marked too)
    # a gap of a single post is marked as one
    text, kept = fold_thread(thread, [highlight_in("p4", 4, 1), highlight_in("p25", 25, 2)], max_chars=1400)
    assert kept == ["p1", "p2", "p4", "p25"]
    assert omitted_counts(text) == [1, 20, 15] and len(kept) + sum(omitted_counts(text)) == 40
