"""The address guard, on the address actually connected to.

aiohttp connects to exactly the addresses its resolver returns, so a resolver that drops
non-global addresses guards the connection itself: a name that resolves to a public
address when checked and to 127.0.0.1 when connected (DNS rebinding) cannot slip through,
as there is no second lookup. IP literals skip the resolver in aiohttp and are checked
before the request (``check_literal``), as are numeric hosts in forms other than the
dotted quad, refused outright (rssd.net.numeric).
"""

from __future__ import annotations

import socket

from aiohttp.abc import AbstractResolver, ResolveResult

from rssd.net.addresses import IPAddress, address_class, parse_address
from rssd.net.numeric import numeric_host_refusal
from rssd.net.resolver import DaemonThreadResolver

ALLOW_HINT = "set [webhooks] allow_private_networks = true to allow it"


def refusal(address: IPAddress) -> str | None:
    """Why a webhook may not reach ``address`` by default, or None if it is global."""
    kind = address_class(address)
    return None if kind.is_global else f"{address} is a {kind.value} address"


class AddressRefused(OSError):
    """A webhook URL leads only to addresses the guard refuses; nothing was sent."""


def check_literal(host: str, allow_private: bool) -> None:
    """Refuse an IP-literal host at once (aiohttp does not resolve literals), and a
    numeric host in any form but the dotted quad (rssd.net.numeric), whatever the setting."""
    numeric = numeric_host_refusal(host)
    if numeric:
        raise AddressRefused(f"refused: {numeric}")
    address = parse_address(host)
    if address is None or allow_private:
        return
    reason = refusal(address)
    if reason:
        raise AddressRefused(f"refused: {reason}; {ALLOW_HINT}")


class GuardedResolver(AbstractResolver):
    """Resolves as usual, then keeps only the addresses a webhook may reach."""

    def __init__(self, allow_private: bool, inner: AbstractResolver | None = None) -> None:
        self._allow_private = allow_private
        self._inner = inner or DaemonThreadResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if self._allow_private:
            return results
        allowed, reasons = [], []
        for result in results:
            address = parse_address(result["host"])
            reason = refusal(address) if address is not None else "not an IP address"
            if reason is None:
                allowed.append(result)
            else:
                reasons.append(reason)
        if not allowed:
            raise AddressRefused(f"refused: {host} resolves to {'; '.join(reasons)}; {ALLOW_HINT}")
        return allowed

    async def close(self) -> None:
        await self._inner.close()
