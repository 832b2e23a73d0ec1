"""The thread model: a forum thread as an ordered list of posts with structure and provenance."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

PostKind = Literal["question", "answer", "comment", "post"]
LINK_SCHEMES = ("http", "https")
POST_NUMBER_LIMIT = 2**31
"""Post numbers are stored in 32-bit INTEGER columns (PostgreSQL's; SQLite's hold 64 bits): a larger one is
refused with the thread, not met by the store half-way through writing it (the thread's row written, its
sentences not)."""
STORED = {"stored": True}
"""Validation context for threads read back from a store: links stored before they were checked are dropped
instead of failing the read."""


def _web_link(value: str | None, info: ValidationInfo) -> str | None:
    """Only http(s) links are kept: a `javascript:` or `data:` URL would run in the page that links it."""
    if value is None:
        return None
    parts = urlsplit(value.strip())
    if parts.scheme.lower() not in LINK_SCHEMES or not parts.netloc or value != value.strip():
        if info.context and info.context.get("stored"):
            return None
        raise ValueError("must be an absolute http:// or https:// URL")
    return value


WebLink = Annotated[str | None, AfterValidator(_web_link)]
"""An optional absolute http(s) URL (posts and threads link to their source with it)."""

NUL = "\x00"

MAX_THREAD_ID_CHARS = 512
"""The longest thread id. PostgreSQL indexes ids in B-trees, whose rows hold at most 2,704 bytes: a longer
id that does not compress (3,000 random characters) failed the store's write half-way through a request
(a 500, the request's earlier threads stored). POST /stream_summary has always taken ids of at most this
many characters, so a longer one was stored and could then not be digested."""
MAX_POST_ID_CHARS = 128
"""The longest post id: the store indexes (thread id, post id) together, and 512 characters of 4 bytes
plus 128 of 4 bytes stay under PostgreSQL's 2,704 bytes."""


def _at_most_chars(limit: int) -> Any:
    """A validator of an id the stores can index: one over `limit` characters is refused when it is given,
    not by the store half-way through writing the thread. A thread read back from a store is taken as it
    is."""

    def check(value: Any, info: ValidationInfo) -> Any:
        if info.context and info.context.get("stored"):
            return value
        if isinstance(value, str) and len(value) > limit:
            raise ValueError(f"must be at most {limit} characters (got {len(value)})")
        return value

    return check


def _not_a_boolean(value: Any) -> Any:
    """A boolean given for a number is refused (the project's rule, `tldrlab.numbers`): pydantic's lax mode
    took `"score": true` for one vote and `"number": true` for post 1."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got the boolean {str(value).lower()}")
    return value


def _no_nul(value: Any, info: ValidationInfo) -> Any:
    """A text field (or list of them) without U+0000: PostgreSQL's text cannot hold it, so a thread with one
    is refused when it is given, not by the store half-way through writing it. A thread read back from a
    store (SQLite holds them) is taken as it is."""
    if info.context and info.context.get("stored"):
        return value
    if any(isinstance(item, str) and NUL in item for item in (value if isinstance(value, list) else [value])):
        raise ValueError("must not contain NUL characters (U+0000): no store can hold them")
    return value


class Post(BaseModel):
    """One post of a thread; `text` is plain text (HTML already converted)."""

    model_config = ConfigDict(allow_inf_nan=False)  # POST /threads validates bodies as threads

    id: str
    """Stable id within the forum (Stack Exchange post id, Discourse post id, ...)."""

    number: int = Field(ge=-POST_NUMBER_LIMIT, lt=POST_NUMBER_LIMIT)
    """Position in the thread, 1-based (Discourse post_number; order of appearance otherwise)."""

    text: str
    """Plain text of the post; sentence offsets index into this string."""

    author: str | None = None
    created: datetime | None = None
    score: int | None = None
    """Votes or likes when the forum has them."""

    reply_to: str | None = None
    """Id of the post this one replies to (answers reply to the question, comments to their parent)."""

    accepted: bool = False
    """The thread's accepted answer."""

    kind: PostKind = "post"
    url: WebLink = None
    """Link to the post on its forum (used for attribution and highlight links); http(s) only."""

    _no_nul = field_validator("id", "text", "author", "reply_to", "url")(_no_nul)
    _id_length = field_validator("id")(_at_most_chars(MAX_POST_ID_CHARS))
    _numbers = field_validator("number", "score", mode="before")(_not_a_boolean)

    def content_hash(self) -> str:
        """Hash of the text sentences come from; re-ingestion re-embeds a post only when it changes."""
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:32]


class Thread(BaseModel):
    """A thread: title, posts in order, and where it came from."""

    model_config = ConfigDict(allow_inf_nan=False)  # POST /threads validates bodies as threads

    id: str
    title: str = ""
    posts: list[Post] = Field(default_factory=list)
    source: str = "native"
    """Reader that produced it: stackexchange, discourse, native."""

    url: WebLink = None
    """Link to the thread on its forum; http(s) only."""
    tags: list[str] = Field(default_factory=list)

    _no_nul = field_validator("id", "title", "source", "url", "tags")(_no_nul)
    _id_length = field_validator("id")(_at_most_chars(MAX_THREAD_ID_CHARS))

    def content_hash(self) -> str:
        """Changes whenever anything of the thread changes (the summary cache key): its title or link, a post
        added, removed or edited, and a post's metadata too. A digest reads more than the text: votes and the
        accepted flag rank its highlights, which carry their post's number, author and link, so a digest
        cached before such a change must not be served after it."""
        return hashlib.sha256(self.model_dump_json().encode("utf-8")).hexdigest()[:32]

    def post(self, post_id: str) -> Post | None:
        return next((p for p in self.posts if p.id == post_id), None)


def repeated_post(thread: Thread) -> tuple[int, str, str] | None:
    """The first post repeating an earlier post's id or number, as (its index, the field, the problem), or
    None. A thread's posts are told apart by id (what highlights cite) and read in number order (the store
    orders sentences by it, and a post's neighbouring sentences are the ones around it in that order): two
    posts of one number had their sentences interleaved, breaking the query-aware context and the bullets'
    reading order."""
    ids: set[str] = set()
    numbers: set[int] = set()
    for i, post in enumerate(thread.posts):
        if post.id in ids:
            return i, "id", f"duplicate post id {post.id!r}"
        if post.number in numbers:
            return i, "number", f"post number {post.number} appears twice"
        ids.add(post.id)
        numbers.add(post.number)
    return None
