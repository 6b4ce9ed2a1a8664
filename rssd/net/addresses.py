"""Which IP addresses are on the public internet, and which redirects may cross into the rest.

Pure functions, no I/O, shared by the feed fetcher (redirect hops) and the webhook sender
(every delivery). Python's ``ipaddress.is_global`` is not enough on its own: on 3.11 it
calls ``::7f00:1`` (IPv4-compatible loopback), ``64:ff9b::7f00:1`` (NAT64 of 127.0.0.1) and
``2002:7f00:1::`` (6to4 of 127.0.0.1) global. So IPv6 forms that carry an IPv4 address
(mapped, compatible, translated, NAT64, 6to4) are judged by the IPv4 address they carry, and the
special-purpose ranges are listed here, named, so a refusal can say which one it was.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from enum import StrEnum

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AddressClass(StrEnum):
    GLOBAL = "global"
    LOOPBACK = "loopback"
    PRIVATE = "private"  # RFC 1918
    LINK_LOCAL = "link-local"  # 169.254/16 (cloud metadata: 169.254.169.254), fe80::/10
    SHARED = "shared"  # 100.64/10, carrier-grade NAT
    UNIQUE_LOCAL = "unique-local"  # fc00::/7 (and the deprecated site-local fec0::/10)
    MULTICAST = "multicast"
    UNSPECIFIED = "unspecified"  # 0.0.0.0/8, ::
    RESERVED = "reserved"  # documentation, benchmarking, future use, protocol ranges

    @property
    def is_global(self) -> bool:
        return self is AddressClass.GLOBAL


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _nets(kind: AddressClass, *cidrs: str) -> list[tuple[Network, AddressClass]]:
    return [(ipaddress.ip_network(cidr), kind) for cidr in cidrs]


#: Checked in order; the first match names the class.
_IPV4 = [
    *_nets(AddressClass.UNSPECIFIED, "0.0.0.0/8"),
    *_nets(AddressClass.LOOPBACK, "127.0.0.0/8"),
    *_nets(AddressClass.PRIVATE, "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"),
    *_nets(AddressClass.LINK_LOCAL, "169.254.0.0/16"),
    *_nets(AddressClass.SHARED, "100.64.0.0/10"),
    *_nets(AddressClass.MULTICAST, "224.0.0.0/4"),
    *_nets(
        AddressClass.RESERVED,
        "192.0.0.0/24",  # IETF protocol assignments (DS-Lite, NAT64 discovery...)
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",
        "203.0.113.0/24",
        "240.0.0.0/4",  # future use, and 255.255.255.255
    ),
]
_IPV6 = [
    *_nets(AddressClass.UNSPECIFIED, "::/128"),
    *_nets(AddressClass.LOOPBACK, "::1/128"),
    *_nets(AddressClass.LINK_LOCAL, "fe80::/10"),
    *_nets(AddressClass.UNIQUE_LOCAL, "fc00::/7", "fec0::/10"),
    *_nets(AddressClass.MULTICAST, "ff00::/8"),
    *_nets(AddressClass.PRIVATE, "64:ff9b:1::/48"),  # local-use NAT64 (RFC 8215)
    *_nets(
        AddressClass.RESERVED,
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments, Teredo 2001::/32 included
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation (RFC 9637)
        "5f00::/16",  # segment routing SIDs
    ),
]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_COMPATIBLE = ipaddress.ip_network("::/96")
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # RFC 2765 (SIIT)


def _carried_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for: mapped (``::ffff:a.b.c.d``), NAT64
    (``64:ff9b::a.b.c.d``), 6to4 (``2002:AABB:CCDD::``), IPv4-compatible (``::a.b.c.d``),
    IPv4-translated (``::ffff:0:a.b.c.d``, which ``ipaddress`` leaves global)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or address in _TRANSLATED or (address in _COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_class(address: IPAddress) -> AddressClass:
    """The class of one address: GLOBAL, or the kind of address that is not."""
    table: list[tuple[Network, AddressClass]] = _IPV4
    if isinstance(address, ipaddress.IPv6Address):
        address = ipaddress.IPv6Address(int(address))  # without a zone id (fe80::1%eth0)
        carried = _carried_ipv4(address)
        if carried is not None:
            return address_class(carried)
        table = _IPV6
    for network, kind in table:
        if address.version == network.version and address in network:
            return kind
    return AddressClass.GLOBAL if address.is_global else AddressClass.RESERVED


def parse_address(host: str) -> IPAddress | None:
    """``host`` as an IP address if it is one (brackets and a zone id allowed), else None."""
    text = host.strip().removeprefix("[").removesuffix("]").split("%")[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def is_global(address: IPAddress) -> bool:
    return address_class(address).is_global


def crossing(
    source: AddressClass, targets: Iterable[AddressClass], *, allow_private: bool
) -> AddressClass | None:
    """Whether a request from a server at ``source`` into ``targets`` must be refused: the
    first non-global target class if ``source`` is global (a public server pointing rssd
    at an internal one), else None.

    ``targets`` are all the addresses the next host resolves to: one non-global among
    them is enough, since the connection may use any. A non-global source is the
    operator's own network (the configured URL was there), trusted like the operator.
    """
    if allow_private or not source.is_global:
        return None
    return next((target for target in targets if not target.is_global), None)
