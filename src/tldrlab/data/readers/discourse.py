"""`discourse`: Discourse topic JSON, the `/t/{id}.json` shape. A file holds one topic, a list of topics or
one topic per line; a directory holds such files.

Each topic -> a Thread (id = topic `id`, `title`, `tags`); `post_stream.posts[]` -> posts ordered by
`post_number`: `id`, `post_number` -> number, `username` -> author, `cooked` HTML -> text (html_to_text),
`created_at`, `reply_to_post_number` -> reply_to (the id of that post; None when the post answers the topic),
likes (`like_count`, or the like entry of `actions_summary`) -> score, `accepted_answer` (the Solved plugin)
-> accepted. URLs need the forum's address: the `base_url` option ("https://meta.discourse.org") gives
`<base_url>/t/<slug>/<topic id>/<post_number>`; without it URLs are None.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from tldrlab.data.html import html_to_text
from tldrlab.data.readers.common import (
    ReadContext,
    get_int,
    get_str,
    iter_json_items,
    record_error,
    require_str,
    type_name,
)
from tldrlab.data.threads import Post, Thread
from tldrlab.errors import InvalidInputError, error_message

ModelT = TypeVar("ModelT", bound=BaseModel)
LIKE_ACTION_ID = 2  # Discourse's post action type for "like"


def read_discourse(path: Path, ctx: ReadContext) -> Iterator[Thread]:
    base_url = str(ctx.options["base_url"]).rstrip("/") if ctx.options.get("base_url") else None
    parts = urlsplit(base_url or "")
    if base_url is not None and (parts.scheme.lower() not in ("http", "https") or not parts.netloc):
        # every post's link would fail the thread's URL check: a ValidationError traceback otherwise
        raise InvalidInputError(f"option base_url must be the forum's http(s):// address, got {base_url!r}")
    for where, topic in iter_json_items(path, ctx):
        try:
            thread = topic_thread(topic, path, where, base_url)
        except InvalidInputError as exc:
            ctx.invalid(exc)
            continue
        yield thread


def topic_thread(topic: dict[str, Any], path: Path, where: str, base_url: str | None) -> Thread:
    topic_id = require_str(topic, "id", path, where, is_id=True)
    stream = topic.get("post_stream")
    if not isinstance(stream, dict) or not isinstance(stream.get("posts"), list):
        raise record_error(path, where, "post_stream.posts", "missing or not a list")
    slug = get_str(topic, "slug", path, where, required=False) or "-"
    raw_posts = []
    for i, raw in enumerate(stream["posts"]):
        field = f"post_stream.posts[{i}]"
        if not isinstance(raw, dict):
            raise record_error(path, where, field, f"expected an object, got {type_name(raw)}")
        raw_posts.append((f"{where}: {field}", raw))
    numbers: dict[int, str] = {}
    for post_where, raw in raw_posts:
        number = get_int(raw.get("post_number"), path, post_where, "post_number")
        post_id = require_str(raw, "id", path, post_where, is_id=True)
        # a thread's posts are told apart by id (what highlights cite) and number (what replies name): a
        # repeat of either is a malformed topic, not one post silently taking the other's place
        if number in numbers:
            raise record_error(path, post_where, "post_number", f"post number {number} appears twice")
        if post_id in numbers.values():
            raise record_error(path, post_where, "id", f"duplicate post id {post_id!r}")
        numbers[number] = post_id
    posts = []
    for post_where, raw in sorted(raw_posts, key=lambda item: int(item[1]["post_number"])):
        number = int(raw["post_number"])
        reply_number = raw.get("reply_to_post_number")
        reply_to = None
        if reply_number is not None:
            reply_to = numbers.get(get_int(reply_number, path, post_where, "reply_to_post_number"))
        cooked = raw.get("cooked", "")
        if not isinstance(cooked, str):
            raise record_error(path, post_where, "cooked", f"expected HTML text, got {type_name(cooked)}")
        posts.append(
            _checked(
                Post,
                path,
                post_where,
                id=numbers[number],
                number=number,
                text=html_to_text(cooked),
                author=get_str(raw, "username", path, post_where, required=False),
                created=_date(raw.get("created_at"), path, post_where),
                score=_likes(raw, path, post_where),
                reply_to=reply_to,
                accepted=bool(raw.get("accepted_answer", False)),
                kind="post",
                url=f"{base_url}/t/{slug}/{topic_id}/{number}" if base_url else None,
            )
        )
    tags = [_tag(tag, path, where, f"tags[{i}]") for i, tag in enumerate(topic.get("tags") or [])]
    return _checked(
        Thread,
        path,
        where,
        id=topic_id,
        title=get_str(topic, "title", path, where, required=False) or "",
        posts=posts,
        source="discourse",
        url=f"{base_url}/t/{slug}/{topic_id}" if base_url else None,
        tags=[t for t in tags if t],
    )


FIELD_NAMES = {"number": "post_number", "text": "cooked", "author": "username"}
"""Thread / Post fields -> the topic JSON's names for them, so an error names what the file holds."""


def _checked(model: type[ModelT], path: Path, where: str, **fields: Any) -> ModelT:
    """`model(**fields)`, or the record's error naming the file's field (a post number the stores cannot
    hold, a NUL character): not a validation traceback."""
    try:
        return model(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else None
        raise record_error(path, where, FIELD_NAMES.get(name or "", name), error_message(first)) from None


def _date(value: object, path: Path, where: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise record_error(path, where, "created_at", f"not a date: {value!r}") from None


def _likes(raw: dict[str, Any], path: Path, where: str) -> int | None:
    if isinstance(raw.get("like_count"), int):
        return int(raw["like_count"])
    for action in raw.get("actions_summary") or []:
        if isinstance(action, dict) and action.get("id") == LIKE_ACTION_ID:
            # a count that is no number (null, "many") was a TypeError or ValueError traceback, which
            # --skip-invalid did not skip either
            return get_int(action.get("count", 0), path, where, "actions_summary.count")
    return None


def _tag(tag: object, path: Path, where: str, field: str) -> str:
    """A topic tag: a name, or (newer Discourse) an object with its name; anything else (a number) was an
    AttributeError traceback."""
    if isinstance(tag, str):
        return tag
    if isinstance(tag, dict):
        return str(tag.get("name", ""))
    raise record_error(path, where, field, f"expected a tag name or an object, got {type_name(tag)}")
