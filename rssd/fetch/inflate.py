"""Bounded decompression of a response body (gzip, deflate), done by rssd itself.

aiohttp has no cap on a decompressed body: a 1 MB gzip body can inflate to 1 GB. Here each
chunk is inflated at most ``budget`` bytes at a time, so a bomb never fully expands.
"""

from __future__ import annotations

import zlib


class InflateError(Exception):
    """The body cannot be decompressed: unsupported, corrupt, or cut short."""


def _is_zlib_header(data: bytes) -> bool:
    """RFC 1950: CM = 8 (deflate) and the header checksum holds."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


class Inflater:
    def __init__(self, encoding: str) -> None:
        self._head = b""  # deflate: first bytes held back until the dialect is known
        if encoding in ("gzip", "x-gzip"):
            self._obj: zlib._Decompress | None = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            # "deflate" should be zlib-wrapped, but servers also send raw deflate or
            # mislabelled gzip (browsers accept both): decided on the first bytes.
            self._obj = None
        else:
            raise InflateError(f"unsupported Content-Encoding {encoding!r}")

    def feed(self, chunk: bytes, budget: int) -> list[bytes]:
        """Inflate ``chunk``, stopping once more than ``budget`` bytes came out."""
        if self._obj is None:
            chunk = self._head + chunk
            if len(chunk) < 2:  # too little to tell the dialect yet
                self._head = chunk
                return []
            if chunk[:2] == b"\x1f\x8b":
                wbits = 16 + zlib.MAX_WBITS
            elif _is_zlib_header(chunk):
                wbits = zlib.MAX_WBITS
            else:
                wbits = -zlib.MAX_WBITS
            self._obj = zlib.decompressobj(wbits)
        out = []
        data = chunk
        try:
            while data:
                piece = self._obj.decompress(data, max(budget, 1))
                out.append(piece)
                budget -= len(piece)
                if budget <= 0:
                    break  # the caller sees the size pass its cap and stops
                data = self._obj.unconsumed_tail
        except zlib.error as exc:
            raise InflateError(f"corrupt compressed body: {exc}") from exc
        return out

    def finish(self) -> bytes:
        """The last bytes; an error if the compressed stream was cut short."""
        if self._obj is None:
            if self._head:  # a one-byte body: no dialect can make sense of it
                raise InflateError("compressed body ends early (truncated stream)")
            return b""  # an empty body
        try:
            tail = self._obj.flush()
        except zlib.error as exc:
            raise InflateError(f"corrupt compressed body: {exc}") from exc
        if not self._obj.eof:
            raise InflateError("compressed body ends early (truncated stream)")
        return tail
