"""Which numeric hosts a URL may name: the IPv4 dotted quad, and no other numeric form.

The C resolver (``inet_aton``, behind ``getaddrinfo``) reads ``127.1``, ``2130706433``,
``0177.0.0.1``, ``017700000001``, ``0x7f.1`` and ``127.000.000.001`` all as 127.0.0.1, but
Python's ``ipaddress`` reads only the dotted quad, and aiohttp before 3.14 handed every
digits-and-dots host to the socket as a literal without asking its resolver. Such a host
slipped past both halves of the address guard (the literal check and the resolver) and
reached loopback. So rssd refuses, wherever a URL comes in (config.toml, a redirect, a
discovered feed link, a webhook send), every host that looks numeric but is not a
canonical dotted quad, and names the address it stands for. Refusing rather than
rewriting keeps one spelling of each address, the one the operator sees in the guard's
messages. Pure functions, no I/O.
"""

from __future__ import annotations

import functools
import ipaddress
import re

#: One label as inet_aton reads a number: hexadecimal (0x...), octal (0...) or decimal.
_NUMBER = re.compile(r"(?:0[xX][0-9a-fA-F]*|[0-9]+)\Z")
_QUAD_PART = re.compile(r"(?:0|[1-9][0-9]{0,2})\Z")


def looks_numeric(host: str) -> bool:
    """Whether ``host`` would be read as an IPv4 number rather than looked up as a name:
    its last label (a trailing dot aside) is a number, as the URL standard rules, or it is
    digits and dots only, as aiohttp before 3.14 judged (Unicode digits included)."""
    if not host or ":" in host:  # empty, or an IPv6 literal
        return False
    labels = host.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()
    return bool(_NUMBER.match(labels[-1])) or host.replace(".", "").isdigit()


def is_dotted_quad(host: str) -> bool:
    """Four decimal octets, 0-255, ASCII digits, no leading zeros: the one IPv4 form
    every parser on the way (ipaddress, aiohttp, getaddrinfo) reads alike."""
    parts = host.split(".")
    return len(parts) == 4 and all(_QUAD_PART.match(p) and int(p) <= 255 for p in parts)


def inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """The address the C resolver makes of ``host`` (1 to 4 parts, each decimal, octal or
    hexadecimal, the last filling the remaining bytes), or None if it is no such number."""
    parts = host.split(".")
    if len(host) > 253 or not 1 <= len(parts) <= 4:  # no DNS name is longer
        return None
    if not all(_NUMBER.match(part) for part in parts):
        return None
    values: list[int] = []
    for part in parts:
        if part[:2].lower() == "0x":
            if len(part) == 2:
                return None
            values.append(int(part[2:], 16))
        elif len(part) > 1 and part[0] == "0":
            if any(digit in "89" for digit in part):
                return None
            values.append(int(part, 8))
        else:
            values.append(int(part))
    *leading, last = values
    if any(value > 255 for value in leading) or last >= 256 ** (4 - len(leading)):
        return None
    number = last
    for index, value in enumerate(leading):
        number += value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


@functools.lru_cache(maxsize=4096)
def numeric_host_refusal(host: str) -> str | None:
    """Why a URL may not name ``host`` (a numeric form other than the dotted quad), or
    None. Hosts that are names, dotted quads or IPv6 literals pass: the address guard
    judges those. Cached: every fetch asks again of the same few hosts."""
    if not looks_numeric(host) or is_dotted_quad(host):
        return None
    address = inet_aton(host.removesuffix("."))
    if address is None:
        return f"host {host} looks numeric but is no IPv4 address"
    return f"host {host} is {address} in a legacy numeric form; write it as {address}"
