"""Text for people: relative times ("3m ago", "in 2h"), aligned columns, shortened cells."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from rssd.commands.terminal import has_unsafe, safe_text

#: (seconds per unit, suffix, first value shown in the next unit instead)
_UNITS = ((1, "s", 60), (60, "m", 60), (3600, "h", 48))


def span(delta: timedelta) -> str:
    """A duration in its largest sensible unit, rounded: 59s, 4m, 47h, 12d."""
    seconds = abs(delta.total_seconds())
    for unit, suffix, limit in _UNITS:
        value = round(seconds / unit)
        if value < limit:
            return f"{value}{suffix}"
    return f"{round(seconds / 86400)}d"


def ago(moment: datetime | None, now: datetime) -> str:
    """'3m ago' for the past, 'in 2h' for the future, '-' for never."""
    if moment is None:
        return "-"
    delta = now - moment
    if abs(delta) < timedelta(seconds=1):
        return "just now"
    return f"{span(delta)} ago" if delta > timedelta(0) else f"in {span(delta)}"


def due(moment: datetime | None, now: datetime) -> str:
    """A due time: 'in 5m', or 'now' once it has passed; '-' for not scheduled."""
    if moment is None:
        return "-"
    return "now" if moment <= now else f"in {span(moment - now)}"


def plural(count: int, noun: str) -> str:
    """'1 message', '3 messages'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def shorten(text: str, width: int) -> str:
    """One line, at most ``width`` characters, an ellipsis marking a cut; characters that
    could drive a terminal are shown escaped (rssd.commands.terminal)."""
    text = safe_text(" ".join(text.split()))
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def table(
    header: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()
) -> list[str]:
    """Columns padded to their widest cell, two spaces apart; ``right`` columns (by index)
    are right-aligned (numbers); the last column is never padded. Cells are made safe
    for a terminal before they are measured, so the columns stay aligned (one search over
    every cell first: a table with nothing to escape, the usual one, is left as it is)."""
    if has_unsafe("".join(cell for row in (header, *rows) for cell in row)):
        header = [safe_text(cell) for cell in header]
        rows = [[safe_text(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    # Every column but the last, padded to its width: (str.rjust or str.ljust, width).
    pads = [(str.rjust if i in right else str.ljust, w) for i, w in enumerate(widths[:-1])]

    def line(cells: Sequence[str]) -> str:
        padded = [pad(cell, width) for (pad, width), cell in zip(pads, cells, strict=False)]
        return "  ".join([*padded, cells[-1]]).rstrip()

    return [line(header), *(line(row) for row in rows)]
