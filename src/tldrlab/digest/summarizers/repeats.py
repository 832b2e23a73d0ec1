"""A TL;DR says each thing once: bullets equal up to case, whitespace and punctuation are merged.

Language models repeat themselves (small ones loop; any of them may restate a bullet with other casing or a
full stop), and every summarizer's bullets reach the digest through `digest/pipeline.py`, which merges them
here (`base.bullet_key` says which are the same): the first occurrence keeps its place and text, and cites
what its repeats cited too, so no citation a repeat carried is lost. (Summarizers that parse model text
merge repeats already while parsing, `base.merge_parsed_repeats`, so that a repeat does not take a place
under `max_bullets`; this is what makes it hold for every summarizer, the draft stage's too.)
"""

from __future__ import annotations

from tldrlab.digest.summarizers.base import Bullet, bullet_key

MERGE_VERSION = 1
"""Part of the digest cache key: digests cached before repeated bullets were merged are not served again."""


def _status(bullet: Bullet) -> int:
    """How much a bullet's citations are worth keeping: supported > not checked > found unsupported."""
    return {True: 2, None: 1, False: 0}[bullet.supported]


def merge_repeated_bullets(bullets: list[Bullet]) -> list[Bullet]:
    """The bullets in order with repeats (same `bullet_key`) merged into their first occurrence.

    The merged bullet cites, in order of first mention, every sentence its occurrences of the best support
    status cited (a supported occurrence's citations are not diluted by those of a repeat found unsupported,
    which rested on sentences that do not say it), with their best support score."""
    groups: dict[str, list[Bullet]] = {}
    for bullet in bullets:
        groups.setdefault(bullet_key(bullet.text), []).append(bullet)
    merged: list[Bullet] = []
    for group in groups.values():
        if len(group) == 1:
            merged.append(group[0])
            continue
        best = max(_status(b) for b in group)
        kept = [b for b in group if _status(b) == best]
        citations = list(dict.fromkeys(c for b in kept for c in b.citations))
        scores = [b.support for b in kept if b.support is not None]
        merged.append(
            group[0].model_copy(
                update={
                    "citations": citations,
                    "support": max(scores) if scores else None,
                    "supported": kept[0].supported,
                }
            )
        )
    return merged
