"""`stackexchange`: the official Stack Exchange data dump.

`Posts.xml` (a file, or a directory holding it), plus `Comments.xml` and `Users.xml` beside it when present
(one holding no row, even no element at all, is read as no comments or no users).

One thread per question (PostTypeId 1), posts in reading order: the question, its comments, then the answers
(PostTypeId 2) in creation order, each followed by its comments. Answers are not moved: the accepted one keeps
its place and is marked `accepted=True`. Answers and comments reply to their parent (`reply_to`). Other row
types (tag wikis 4/5, privilege wikis 7, ...) are not thread posts: they are counted, not read.

Post text is the Body HTML through `html_to_text` (comments are plain text already). Authors come from
Users.xml, else OwnerDisplayName, else "user<OwnerUserId>". URLs: https://<site>/q/<Id> for questions,
/a/<Id> for answers, /q/<question>#comment<Id>_<PostId> for comments. The site host is the `site` option
("beer" or "beer.stackexchange.com"), else a folder of the path named by a site host
("beer.stackexchange.com/Posts.xml", as the official dump archives are), else a folder named
"stackexchange_<site>" ("stackexchange_beer/") when the dump's posts link to posts of that site (a dump's
posts link to their own site's questions; "stackexchange-data/" names no site data.stackexchange.com);
when none names it, posts have no URLs (a guessed host would link each post to another site's post of the
same id).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from lxml import etree
from pydantic import ValidationError

from tldrlab.data.html import html_to_text
from tldrlab.data.readers.common import ReadContext, get_int, record_error
from tldrlab.data.threads import Post, Thread
from tldrlab.errors import InvalidInputError, error_message

QUESTION, ANSWER = 1, 2


def read_stackexchange(path: Path, ctx: ReadContext) -> Iterator[Thread]:
    posts_xml = path / "Posts.xml" if path.is_dir() else path
    host = site_host(posts_xml, ctx.options.get("site"))
    # a site a folder's short name suggests is taken once a post links to one of its posts
    guessed = folder_site(posts_xml) if host is None else None
    own_links = re.compile(rf"//{re.escape(guessed)}/(?:q|a|questions)/\d") if guessed else None
    questions: dict[str, dict[str, Any]] = {}
    answers: dict[str, list[dict[str, Any]]] = {}
    seen: set[str] = set()
    for where, row in _rows(posts_xml, ctx):
        ctx.counts["rows"] += 1
        if own_links is not None and own_links.search(row.get("Body", "")):
            host, own_links = guessed, None
        try:
            post_id = str(get_int(row.get("Id"), posts_xml, where, "Id"))
            if post_id in seen:  # a second question row replaced the first; a second answer was a second post
                raise record_error(posts_xml, where, "Id", f"duplicate post Id {post_id}")
            seen.add(post_id)
            post_type = get_int(row.get("PostTypeId"), posts_xml, where, "PostTypeId")
            if post_type == QUESTION:
                questions[post_id] = _checked(row, posts_xml, where)
            elif post_type == ANSWER:
                parent = str(get_int(row.get("ParentId"), posts_xml, where, "ParentId"))
                answers.setdefault(parent, []).append(_checked(row, posts_xml, where))
            else:
                ctx.counts[f"rows of other types (PostTypeId {post_type})"] += 1
        except InvalidInputError as exc:
            ctx.invalid(exc)
    for parent, orphans in answers.items():
        if parent not in questions:
            for row in orphans:
                ctx.invalid(
                    record_error(
                        posts_xml, row["_where"], "ParentId", f"question {parent} is not in the file"
                    )
                )
    users = _users(posts_xml.parent / "Users.xml", ctx)
    comments = _comments(posts_xml.parent / "Comments.xml", ctx)
    thread_post_ids = set(questions) | {row["Id"] for rows in answers.values() for row in rows}
    outside = sum(len(rows) for post_id, rows in comments.items() if post_id not in thread_post_ids)
    if outside:  # comments on tag wikis and other non-thread posts: counted, as those rows are
        ctx.counts["comments on posts outside threads"] += outside
    for question_id, question in questions.items():
        try:
            thread = _thread(question_id, question, answers.get(question_id, []), comments, users, host)
        except ValidationError as exc:  # an Id too long for the stores: the record's error, not a traceback
            first = exc.errors()[0]
            name = "Id" if first["loc"] and first["loc"][-1] == "id" else None
            ctx.invalid(record_error(posts_xml, question["_where"], name, error_message(first)))
            continue
        yield thread


def site_host(posts_xml: Path, site: object = None) -> str | None:
    """The forum host for post URLs: the `site` option, else a folder of the path named by a site host
    (`beer.stackexchange.com`), else None (`folder_site` may suggest one)."""
    if site:
        site = str(site).strip().lower().removeprefix("https://").removeprefix("http://").strip("/")
        return site if "." in site else f"{site}.stackexchange.com"
    for part in reversed(posts_xml.resolve().parts[:-1]):
        part = part.lower()
        if re.fullmatch(
            r"[a-z0-9.-]+\.(stackexchange|stackoverflow|serverfault|superuser|askubuntu)\.com", part
        ):
            return part
    return None


def folder_site(posts_xml: Path) -> str | None:
    """The host a folder of the path named `stackexchange_<site>` (or `-<site>`) suggests: only a suggestion,
    which the dump's contents confirm (`read_stackexchange`). Taken as it was, `stackexchange-data/` linked
    every post to data.stackexchange.com, the Data Explorer."""
    for part in reversed(posts_xml.resolve().parts[:-1]):
        match = re.fullmatch(r"stackexchange[_-]([a-z0-9]+)", part.lower())
        if match:
            return f"{match.group(1)}.stackexchange.com"
    return None


def _rows(path: Path, ctx: ReadContext) -> Iterator[tuple[str, dict[str, str]]]:
    """(where, attributes) of every <row>; an XML syntax error stops the read (it cannot be skipped)."""
    if not path.exists():
        raise InvalidInputError(f"{path}: no such file", file=str(path))
    if path.stat().st_size == 0:
        raise InvalidInputError(f"{path}: file is empty", file=str(path))
    try:
        for _, element in etree.iterparse(str(path), events=("end",), tag="row"):
            yield f"line {element.sourceline} (row Id={element.get('Id')})", dict(element.attrib)
            element.clear()
    except etree.XMLSyntaxError as exc:
        line = exc.position[0] if exc.position else "?"
        raise InvalidInputError(f"{path}: line {line}: not valid XML ({exc.msg})", file=str(path)) from None


NO_ELEMENT = re.compile(rb"\s*(<\?xml[^>]*\?>)?\s*")
"""The whole of a file holding no XML element: nothing, blanks, the XML declaration alone."""
NO_ELEMENT_BYTES = 4096
"""Longer files hold more than NO_ELEMENT matches (a declaration is well under a hundred bytes)."""


def _companion_rows(path: Path, ctx: ReadContext) -> Iterator[tuple[str, dict[str, str]]]:
    """`_rows` of a file read beside Posts.xml (Users.xml, Comments.xml): none when it is not there or holds
    no element (0 bytes, blanks, the XML declaration alone), as when it holds only its root element. Such a
    file stopped the read ("file is empty", "not valid XML"), leaving the posts beside it unread."""
    if not path.exists():
        return
    if path.stat().st_size <= NO_ELEMENT_BYTES:
        head = path.read_bytes().removeprefix(b"\xef\xbb\xbf")  # a byte-order mark is no element either
        if NO_ELEMENT.fullmatch(head):
            return
    yield from _rows(path, ctx)


def _checked(row: dict[str, str], path: Path, where: str) -> dict[str, Any]:
    """The row with its typed fields parsed up front, so one bad row is skipped alone, not its thread."""
    created = None
    if row.get("CreationDate"):
        try:
            created = datetime.fromisoformat(row["CreationDate"])
        except ValueError:
            raise record_error(path, where, "CreationDate", f"not a date: {row['CreationDate']!r}") from None
    score = get_int(row.get("Score", "0"), path, where, "Score")
    return {**row, "_where": where, "_created": created, "_score": score}


def _author(row: dict[str, Any], users: dict[str, str], user_field: str, name_field: str) -> str | None:
    user_id = row.get(user_field)
    if user_id and user_id in users:
        return users[user_id]
    return row.get(name_field) or (f"user{user_id}" if user_id else None)


def _thread(
    question_id: str,
    question: dict[str, Any],
    answer_rows: list[dict[str, Any]],
    comments: dict[str, list[dict[str, Any]]],
    users: dict[str, str],
    host: str | None,
) -> Thread:
    question_url = f"https://{host}/q/{question_id}" if host else None
    accepted_id = question.get("AcceptedAnswerId")
    posts: list[Post] = []

    def add(row: dict[str, Any], kind: str, reply_to: str | None, url: str | None) -> None:
        posts.append(
            Post(
                id=row["Id"],
                number=len(posts) + 1,
                text=html_to_text(row.get("Body", "")),
                author=_author(row, users, "OwnerUserId", "OwnerDisplayName"),
                created=row["_created"],
                score=row["_score"],
                reply_to=reply_to,
                accepted=kind == "answer" and row["Id"] == accepted_id,
                kind=kind,  # type: ignore[arg-type]
                url=url,
            )
        )
        for comment in comments.get(row["Id"], []):
            posts.append(
                Post(
                    id=f"c{comment['Id']}",
                    number=len(posts) + 1,
                    text=comment.get("Text", ""),
                    author=_author(comment, users, "UserId", "UserDisplayName"),
                    created=comment["_created"],
                    score=comment["_score"],
                    reply_to=row["Id"],
                    kind="comment",
                    url=f"{question_url}#comment{comment['Id']}_{row['Id']}" if question_url else None,
                )
            )

    add(question, "question", None, question_url)
    for answer in sorted(answer_rows, key=lambda r: (r.get("CreationDate", ""), int(r["Id"]))):
        add(answer, "answer", question_id, f"https://{host}/a/{answer['Id']}" if host else None)
    tags = [t for t in re.split(r"[<>|]+", question.get("Tags", "")) if t]
    return Thread(
        id=question_id,
        title=question.get("Title", ""),
        posts=posts,
        source="stackexchange",
        url=question_url,
        tags=tags,
    )


def _users(path: Path, ctx: ReadContext) -> dict[str, str]:
    return {
        row["Id"]: row["DisplayName"]
        for _, row in _companion_rows(path, ctx)
        if "Id" in row and "DisplayName" in row
    }


def _comments(path: Path, ctx: ReadContext) -> dict[str, list[dict[str, Any]]]:
    """Comments.xml rows grouped by the post they comment on, in creation order."""
    by_post: dict[str, list[dict[str, Any]]] = {}
    seen: set[str] = set()
    for where, row in _companion_rows(path, ctx):
        ctx.counts["comment rows"] += 1
        try:
            comment_id = str(get_int(row.get("Id"), path, where, "Id"))
            if comment_id in seen:  # two posts `c<Id>` in one thread: its ingest failed half-way in the store
                raise record_error(path, where, "Id", f"duplicate comment Id {comment_id}")
            seen.add(comment_id)
            parent = str(get_int(row.get("PostId"), path, where, "PostId"))
            if "Text" not in row:
                raise record_error(path, where, "Text", "missing")
            checked = _checked(row, path, where)
        except InvalidInputError as exc:
            ctx.invalid(exc)
            continue
        by_post.setdefault(parent, []).append(checked)
    for rows in by_post.values():
        rows.sort(key=lambda r: (r.get("CreationDate", ""), int(r["Id"])))
    return by_post
