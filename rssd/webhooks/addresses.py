"""Which addresses a webhook may reach (pure): only globally routable unicast ones, unless
the operator allows private networks. Guards against SSRF: a webhook URL pointing at
127.0.0.1, the LAN or the cloud metadata service (169.254.169.254).
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Ranges ``is_global`` lets through that a webhook must not reach: CGNAT is in
#: is_global's exclusions already on new Pythons, listed here for the old ones.
_EXTRA_BLOCKED = (ipaddress.ip_network("100.64.0.0/10"),)
#: NAT64's well-known prefix: the last 32 bits are the IPv4 address really reached.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def parse_address(text: str) -> IPAddress | None:
    """An IP literal (brackets and an IPv6 zone tolerated), else None (a host name)."""
    text = text.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def refusal(address: IPAddress) -> str | None:
    """Why ``address`` may not be reached by default, or None if it is global."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            reason = refusal(embedded)
            return f"{reason} (inside {address})" if reason else None
        if address.teredo is not None:
            return f"{address} is a Teredo address"
    if address.is_multicast:
        return f"{address} is a multicast address"
    if any(address in network for network in _EXTRA_BLOCKED if network.version == address.version):
        return f"{address} is a shared (CGNAT) address"
    if not address.is_global:
        kind = (
            "loopback"
            if address.is_loopback
            else "link-local"
            if address.is_link_local
            else "private"
            if address.is_private
            else "non-global"
        )
        return f"{address} is a {kind} address"
    return None
