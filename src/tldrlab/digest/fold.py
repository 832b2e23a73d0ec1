"""Folding: fit a thread into a model's context by keeping the posts that matter most.

Priority: the first posts (the question and its framing), then the posts holding the highest-ranked
highlights, then the latest post (where threads usually conclude), then the rest in order. Kept posts are
shown in thread order; gaps are marked so the model knows posts were left out.
"""

from __future__ import annotations

from tldrlab.data.threads import Post, Thread
from tldrlab.digest.highlights import Highlight

OMITTED = "[… {n} post(s) omitted …]"
TITLE_CHARS = 300
"""A title longer than this is shortened in prompts, as key sentences are: a thread's title had no limit,
and one of 15,000 characters made every local digest of the thread fail ("the digest prompt needs 12135
tokens ...: lower k or thread_chars", which could not help) and filled a folded thread's whole budget."""


def prompt_title(thread: Thread) -> str:
    """The thread's title as prompts show it: as it is, or when longer than TITLE_CHARS, on one line and cut
    there (at a word)."""
    if len(thread.title) <= TITLE_CHARS:
        return thread.title
    cut = " ".join(thread.title.split())[:TITLE_CHARS]
    at_space = cut.rsplit(" ", 1)[0]
    return (at_space if len(at_space) >= TITLE_CHARS // 2 else cut) + "…"


def post_block(post: Post) -> str:
    who = f" {post.author}" if post.author else ""
    tag = " (accepted answer)" if post.accepted else ""
    return f"#{post.number}{who}{tag}: {' '.join(post.text.split())}"


def fold_priority(thread: Thread, highlights: list[Highlight], first_posts: int = 2) -> list[str]:
    """Post ids, most important first."""
    order: list[str] = []

    def add(post_id: str) -> None:
        if post_id not in order:
            order.append(post_id)

    for post in thread.posts[:first_posts]:
        add(post.id)
    for highlight in sorted(highlights, key=lambda h: h.rank):
        add(highlight.post_id)
    if thread.posts:
        add(thread.posts[-1].id)
    for post in thread.posts:
        add(post.id)
    return order


def fold_thread(
    thread: Thread, highlights: list[Highlight], max_chars: int, *, first_posts: int = 2
) -> tuple[str, list[str]]:
    """The thread as text within `max_chars`, and the ids of the posts kept (whole or cut)."""
    header = f"Title: {prompt_title(thread)}\n" if thread.title else ""
    blocks = {p.id: post_block(p) for p in thread.posts}
    full = header + "\n".join(blocks.values())
    if len(full) <= max_chars:
        return full, [p.id for p in thread.posts]
    budget = max_chars - len(header)
    kept: dict[str, str] = {}
    for post_id in fold_priority(thread, highlights, first_posts):
        # every kept post may be followed by a gap marker: reserve room for one per post, plus one
        markers = (len(kept) + 2) * (len(OMITTED) + 4)
        room = budget - sum(len(b) + 1 for b in kept.values()) - markers
        if room <= 40:
            break
        block = blocks[post_id]
        kept[post_id] = block if len(block) <= room else block[:room].rsplit(" ", 1)[0] + " …"
    lines, gap = [], 0
    for post in thread.posts:
        if post.id in kept:
            if gap:
                lines.append(OMITTED.format(n=gap))
                gap = 0
            lines.append(kept[post.id])
        else:
            gap += 1
    if gap:
        lines.append(OMITTED.format(n=gap))
    return header + "\n".join(lines), [p.id for p in thread.posts if p.id in kept]
