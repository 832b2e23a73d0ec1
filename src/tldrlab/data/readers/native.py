"""`native`: tldrlab's own thread JSON (schema in docs/formats.md). A file holds one thread object, a list of
them, or one per line (JSON lines); a directory holds such files.

A thread is the `Thread` model's JSON: {id, title?, url?, tags?, source?, posts: [post...]}; a post is
{id, text (or html), number?, author?, created?, score?, reply_to?, accepted?, kind?, url?}. `number`
defaults to the post's position (1-based); `html` is converted with html_to_text when `text` is absent.
Extra keys (for example `license`, `attribution`) are allowed and ignored.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tldrlab.data.html import html_to_text
from tldrlab.data.readers.common import ReadContext, iter_json_items, record_error, type_name
from tldrlab.data.threads import Thread, repeated_post
from tldrlab.errors import InvalidInputError, error_message


def read_native(path: Path, ctx: ReadContext) -> Iterator[Thread]:
    for where, obj in iter_json_items(path, ctx):
        try:
            thread = native_thread(obj, path, where)
        except InvalidInputError as exc:
            ctx.invalid(exc)
            continue
        yield thread


def with_native_defaults(obj: dict[str, Any]) -> dict[str, Any]:
    """A thread object with what the format leaves optional filled in: each post's `number` (its position,
    1-based), `text` from `html`, and `source`. `POST /threads` takes native threads through it too."""
    data = dict(obj)
    data.setdefault("source", "native")
    if not isinstance(data.get("posts"), list):
        return data  # validation names the field
    prepared = []
    for i, post in enumerate(data["posts"]):
        if isinstance(post, dict):
            post = dict(post)
            post.setdefault("number", i + 1)
            if "text" not in post and isinstance(post.get("html"), str):
                post["text"] = html_to_text(post["html"])
        prepared.append(post)
    data["posts"] = prepared
    return data


def native_thread(obj: dict[str, Any], path: Path, where: str) -> Thread:
    """Validate one thread object; errors name the field as a path like `posts[3].text`."""
    posts = obj.get("posts")
    if not isinstance(posts, list):
        raise record_error(path, where, "posts", f"expected a list of posts, got {type_name(posts)}")
    for i, post in enumerate(posts):
        if not isinstance(post, dict):
            raise record_error(path, where, f"posts[{i}]", f"expected an object, got {type_name(post)}")
    data = with_native_defaults(obj)
    try:
        thread = Thread.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"]).lstrip(".")
        message = error_message(first)  # only its first letter lowered: "U+0000", "NUL" keep their case
        raise record_error(path, where, field or None, message[:1].lower() + message[1:]) from None
    if (repeat := repeated_post(thread)) is not None:
        i, field, problem = repeat
        raise record_error(path, where, f"posts[{i}].{field}", problem)
    return thread
