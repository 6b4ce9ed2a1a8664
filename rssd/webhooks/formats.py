"""The request one outbox message makes in each user's format: pure functions from the
message's stored body (always the Standard Webhooks JSON) to a URL, headers and bytes.

The outbox keeps one body for every format, so a message reads the same after a format
change, and ``rssd deliveries`` and the retry rules do not care about formats. Each
service's limits are kept here by shortening *fields* (a long title or summary ends with
"…"); a list is never shortened: the planner splits a fetch's posts into messages of at
most ``posts_per_message(format)`` posts (rssd/models/outbox.py), which these builders
always fit. Secrets are not handled here: the sender adds signatures and tokens.

Shapes, as the services document them:
- slack: an incoming webhook's ``{"text", "blocks"}``; at most 50 blocks, a section's
  text at most 3,000 characters. ``text`` repeats the list as mrkdwn: it is the
  notification, and what Mattermost and Rocket.Chat show.
- discord: an execute-webhook ``{"content", "embeds", "allowed_mentions"}``; at most 10
  embeds, a title 256 and a description 4,096 characters, 6,000 characters in all embeds.
  Mentions are switched off: a feed's text must not ping ``@everyone``.
- ntfy: JSON publishing to the server's root, ``{"topic", "title", "message", "click",
  "tags"}``; the message stays under ntfy's 4,096 bytes (beyond, it becomes an attachment).
- gotify: ``POST /message`` ``{"title", "message", "priority", "extras"}`` with markdown
  display and a click URL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from msgspec import Struct

from rssd.models.outbox import POSTS_PER_MESSAGE
from rssd.models.redact import host_only
from rssd.models.sizes import ELLIPSIS, clip_bytes

SLACK_SECTION_CHARS = 3000
SLACK_HEADER_CHARS = 150
DISCORD_CONTENT_CHARS = 2000
DISCORD_TITLE_CHARS = 256
DISCORD_DESCRIPTION_CHARS = 240
DISCORD_AUTHOR_CHARS = 60
DISCORD_TOTAL_CHARS = 6000
NTFY_MESSAGE_BYTES = 4096
NTFY_LINE_BYTES = 360
SUMMARY_CHARS = 280
#: Longer links are left out (Slack's text of 20 posts then stays under its 40,000).
MAX_LINK_CHARS = 1500
GOTIFY_PRIORITY = 5
NTFY_TAGS = ("newspaper",)


class Item(Struct, frozen=True):
    title: str | None
    url: str | None
    author: str | None
    published_at: str | None
    summary: str | None


class Group(Struct, frozen=True):
    """Posts of one feed."""

    name: str
    url: str
    items: tuple[Item, ...]


class Notice(Struct, frozen=True):
    """What a message says, whatever its format: posts grouped by feed, or a plain text
    (a test message)."""

    user: str
    groups: tuple[Group, ...] = ()
    text: str | None = None
    #: Posts left out to fit the service (a message planned for another format), said so.
    hidden: int = 0

    @property
    def count(self) -> int:
        return sum(len(group.items) for group in self.groups)


def fit(notice: Notice, capacity: int) -> Notice:
    """At most ``capacity`` posts; the rest counted in ``hidden``, never dropped silently.
    Only a message planned under another format (the user's format changed while it was
    pending) can hold more than its format carries."""
    if notice.count <= capacity:
        return notice
    groups, left = [], capacity
    for group in notice.groups:
        if left > 0:
            groups.append(Group(group.name, group.url, group.items[:left]))
            left -= len(groups[-1].items)
    return Notice(notice.user, tuple(groups), notice.text, notice.count - capacity)


class Request(Struct, frozen=True):
    url: str
    body: bytes
    content_type: str = "application/json"

    def __repr__(self) -> str:
        """Scheme and host only: a Slack or Discord URL carries its token in the path, a
        Gotify one in the query, an ntfy topic is its own password; a traceback's locals
        or a debugging print must not show them."""
        return (
            f"Request(url={host_only(self.url)!r}, body=<{len(self.body)} "
            f"bytes>, content_type={self.content_type!r})"
        )


def notice_of(body: str) -> Notice:
    """Read a stored Standard Webhooks body: ``posts.new``, a ``posts.digest`` (several
    feeds), or a test's ``rssd.test``."""
    message = json.loads(body)
    data = message.get("data") or {}
    user = str(data.get("user") or "")
    if message.get("type") == "posts.new":
        feeds = [{**(data.get("feed") or {}), "posts": data.get("posts") or ()}]
    elif message.get("type") == "posts.digest":
        feeds = data.get("feeds") or []
    else:
        return Notice(user, text=str(data.get("message") or message.get("type") or ""))
    return Notice(user, tuple(_group(feed) for feed in feeds))


def _group(feed: Mapping[str, Any]) -> Group:
    items = tuple(
        Item(
            _text(post.get("title")),
            _text(post.get("url")),
            _text(post.get("author")),
            _text(post.get("published_at")),
            _text(post.get("summary")),
        )
        for post in feed.get("posts") or ()
    )
    url = str(feed.get("url") or "")
    return Group(str(feed.get("name") or url), url, items)


def _text(value: object) -> str | None:
    return None if value is None else " ".join(str(value).split()) or None


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters; a shortened text ends with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + ELLIPSIS


def _http(url: str | None) -> str | None:
    """A link a service will accept: http(s) only (Discord refuses an embed otherwise),
    and not absurdly long (a feed's 100 KB link would break a service's size limits; the
    post is still listed, by its title)."""
    if not url or len(url) > MAX_LINK_CHARS or " " in url:
        return None
    return url if url.startswith(("http://", "https://")) else None


def headline(notice: Notice) -> str:
    if notice.text is not None:
        return notice.text
    count = notice.count + notice.hidden
    more = f" ({notice.hidden} not listed here: rssd posts shows them)" if notice.hidden else ""
    if len(notice.groups) == 1:
        return f"{count} new post{'s' if count != 1 else ''} in {notice.groups[0].name}{more}"
    return f"{count} new posts in {len(notice.groups)} feeds{more}"


def with_token(fmt: str, url: str, token: str | None) -> str:
    """Slack's and Discord's URL with its secret last part, when that is kept apart."""
    if token is None or fmt not in ("slack", "discord"):
        return url
    return f"{url.rstrip('/')}/{quote(token, safe='')}"


def render(fmt: str, url: str, body: str) -> Request:
    """The request for ``body`` (a stored message) to a user of format ``fmt`` at ``url``."""
    if fmt == "standard":
        return Request(url, body.encode())
    notice = fit(notice_of(body), POSTS_PER_MESSAGE[fmt])
    builder = BUILDERS[fmt]
    return builder(url, notice)


def _dump(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


# --- slack ---------------------------------------------------------------------------


def slack_escape(text: str) -> str:
    """Slack reads ``&``, ``<`` and ``>`` as markup (``<!channel>`` pings everyone)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_link(url: str | None, label: str) -> str:
    link = _http(url)
    label = slack_escape(label)
    return f"<{slack_escape(link)}|{label}>" if link else label


def slack_payload(notice: Notice) -> dict[str, Any]:
    if notice.text is not None:
        text = slack_escape(clip(notice.text, SLACK_SECTION_CHARS))
        return {"text": text, "blocks": [_section(text)]}
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(headline(notice), 150)}}
    ]
    lines = []
    for group in notice.groups:
        heading = f"*{_slack_link(group.url, clip(group.name, 200))}*"
        blocks.append(_section(heading))
        lines.append(heading)
        for item in group.items:
            title = _slack_link(item.url, clip(item.title or item.url or "(untitled)", 200))
            lines.append(f"• {title}")
            meta = " · ".join(slack_escape(clip(v, 100)) for v in (item.author,) if v)
            summary = slack_escape(clip(item.summary, SUMMARY_CHARS)) if item.summary else ""
            text = "\n".join(part for part in (f"*{title}*", meta, summary) if part)
            blocks.append(_section(clip(text, SLACK_SECTION_CHARS)))
    return {"text": "\n".join(lines), "blocks": blocks}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


# --- discord -------------------------------------------------------------------------


def discord_payload(notice: Notice) -> dict[str, Any]:
    content = clip(headline(notice), DISCORD_CONTENT_CHARS)
    embeds: list[dict[str, Any]] = []
    for group in notice.groups:
        for item in group.items:
            embed: dict[str, Any] = {
                "title": clip(item.title or item.url or "(untitled)", DISCORD_TITLE_CHARS)
            }
            if link := _http(item.url):
                embed["url"] = link
            if item.summary:
                embed["description"] = clip(item.summary, DISCORD_DESCRIPTION_CHARS)
            if item.author:
                embed["author"] = {"name": clip(item.author, DISCORD_AUTHOR_CHARS)}
            if item.published_at:
                embed["timestamp"] = item.published_at
            embeds.append(embed)
    payload: dict[str, Any] = {"content": content, "allowed_mentions": {"parse": []}}
    if embeds:
        payload["embeds"] = embeds
    return payload


def discord_chars(payload: Mapping[str, Any]) -> int:
    """What Discord counts against its 6,000 characters: embeds' titles, descriptions,
    author names (and fields and footers, which rssd does not send)."""
    total = 0
    for embed in payload.get("embeds", ()):
        total += len(embed.get("title", "")) + len(embed.get("description", ""))
        total += len(embed.get("author", {}).get("name", ""))
    return total


# --- ntfy ----------------------------------------------------------------------------


def ntfy_root_and_topic(url: str) -> tuple[str, str]:
    """``https://ntfy.sh/mytopic`` -> (``https://ntfy.sh/``, ``mytopic``); a server under
    a path keeps it."""
    parts = urlsplit(url)
    head, _, topic = parts.path.rpartition("/")
    return urlunsplit((parts.scheme, parts.netloc, head + "/", "", "")), topic


def ntfy_payload(topic: str, notice: Notice) -> dict[str, Any]:
    payload: dict[str, Any] = {"topic": topic, "tags": list(NTFY_TAGS)}
    items = [(group, item) for group in notice.groups for item in group.items]
    if notice.text is not None:
        payload["title"] = "rssd"
        payload["message"] = clip_bytes(notice.text, NTFY_MESSAGE_BYTES - 96)
    elif len(items) == 1:
        group, item = items[0]
        payload["title"] = clip(item.title or item.url or group.name, 200)
        lines = [clip(item.summary, SUMMARY_CHARS) if item.summary else "", group.name]
        payload["message"] = clip_bytes("\n".join(line for line in lines if line), 1024)
        if link := _http(item.url) or _http(group.url):
            payload["click"] = link
    else:
        payload["title"] = clip(headline(notice), 200)
        lines = [
            clip_bytes(f"• {item.title or item.url or '(untitled)'}", NTFY_LINE_BYTES)
            for _, item in items
        ]
        payload["message"] = "\n".join(lines)
        if len(notice.groups) == 1 and (link := _http(notice.groups[0].url)):
            payload["click"] = link
    return payload


# --- gotify --------------------------------------------------------------------------


def gotify_url(url: str) -> str:
    """The server's ``/message`` endpoint, from its base URL (or that endpoint itself)."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    if not path.endswith("/message"):
        path += "/message"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def markdown_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "\\`*_[]()<>#|" else ch for ch in text)


def gotify_payload(notice: Notice) -> dict[str, Any]:
    if notice.text is not None:
        title, message, click = "rssd", markdown_escape(notice.text), None
    else:
        title = clip(headline(notice), 200)
        lines = []
        for group in notice.groups:
            if len(notice.groups) > 1:
                lines.append(f"**{markdown_escape(group.name)}**")
            for item in group.items:
                label = markdown_escape(clip(item.title or item.url or "(untitled)", 200))
                link = _http(item.url)
                lines.append(f"- [{label}]({link})" if link else f"- {label}")
        message = "\n".join(lines)
        items = [item for group in notice.groups for item in group.items]
        click = _http(items[0].url) if len(items) == 1 else _http(notice.groups[0].url)
    extras: dict[str, Any] = {"client::display": {"contentType": "text/markdown"}}
    if click:
        extras["client::notification"] = {"click": {"url": click}}
    return {"title": title, "message": message, "priority": GOTIFY_PRIORITY, "extras": extras}


def _slack(url: str, notice: Notice) -> Request:
    return Request(url, _dump(slack_payload(notice)))


def _discord(url: str, notice: Notice) -> Request:
    return Request(url, _dump(discord_payload(notice)))


def _ntfy(url: str, notice: Notice) -> Request:
    root, topic = ntfy_root_and_topic(url)
    return Request(root, _dump(ntfy_payload(topic, notice)))


def _gotify(url: str, notice: Notice) -> Request:
    return Request(gotify_url(url), _dump(gotify_payload(notice)))


BUILDERS = {"slack": _slack, "discord": _discord, "ntfy": _ntfy, "gotify": _gotify}


def probe_body(user: str, timestamp: str) -> str:
    """The body of ``rssd users test``: a Standard Webhooks message of its own type."""
    return json.dumps(
        {
            "type": "rssd.test",
            "timestamp": timestamp,
            "data": {"user": user, "message": f"Test message from rssd for user {user}"},
        },
        separators=(",", ":"),
    )
