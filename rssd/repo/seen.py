"""seen_items: the item fingerprints of each source's last parsed document (a parse cache).

Written in the transaction that stores the posts those items became, so the cache never
claims an item whose post was not stored. Read only for a body that has to be parsed.
"""

from __future__ import annotations

from rssd.repo.db import Database

_SAVE = """
INSERT INTO seen_items (content_source_id, digests) VALUES (:source_id, :digests)
ON CONFLICT (content_source_id) DO UPDATE SET digests = excluded.digests
"""


async def load_seen(db: Database, source_id: int) -> bytes:
    """The stored fingerprints, b"" when there are none."""
    row = await db.fetchone(
        "SELECT digests FROM seen_items WHERE content_source_id = :source_id",
        {"source_id": source_id},
    )
    return bytes(row["digests"]) if row is not None else b""


def seen_saving(source_id: int, digests: bytes) -> tuple[str, dict[str, object]]:
    """The statement that replaces the source's fingerprints, and its parameters: the
    caller runs it inside its transaction, with its next statement where it can
    (``Tx.fetchall_after``)."""
    return _SAVE, {"source_id": source_id, "digests": digests}
