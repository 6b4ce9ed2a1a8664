"""PostCreate: one feed entry, normalized. Built in the parse workers and pickled back.

A frozen msgspec Struct, not a pydantic model: the workers then need no pydantic (16 MB
less RSS in each of the forkserver and the two workers), and 50,000 posts of a cold run
pickle and unpickle in a fraction of the time. Every field is set by
rssd.fetch.entries.entry_to_post, which only ever produces ``str`` or ``None``.
"""

from __future__ import annotations

from msgspec import Struct

from rssd.models.search import Document

FIELDS = (
    "external_id",
    "title",
    "url",
    "author",
    "summary",
    "content",
    "published_at",
    "updated_at",
    "content_hash",
    "tags",
    "enclosures",
)


class PostCreate(Struct, frozen=True, kw_only=True):
    """One feed entry, normalized, ready to be upserted into ``posts``."""

    external_id: str
    title: str | None = None
    url: str | None = None
    author: str | None = None
    summary: str | None = None
    content: str | None = None
    published_at: str | None = None
    updated_at: str | None = None
    content_hash: str
    #: JSON texts: the entry's categories/tags (an array of strings) and its enclosures
    #: (an array of ``{"url", "type", "length"}``); None when it has none.
    tags: str | None = None
    enclosures: str | None = None
    #: What the post is searched by (``rssd.models.search.document`` of the fields above),
    #: computed in the parse worker so the database's writer need not strip the HTML;
    #: None when not given (then computed where needed). Not a column, not compared.
    search_doc: Document | None = None

    def _compared(self) -> tuple[str | None, ...]:
        return tuple(getattr(self, name) for name in FIELDS)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PostCreate) or other.__class__ is not self.__class__:
            return NotImplemented  # as a dataclass's: instances of the same class only
        return self._compared() == other._compared()

    def __hash__(self) -> int:
        return hash(self._compared())

    def as_row(self) -> dict[str, str | None]:
        """The fields by column name, for the named parameters of an INSERT or UPDATE."""
        return {name: getattr(self, name) for name in FIELDS}
