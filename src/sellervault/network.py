"""Which networks may reach the service, and who the client is behind a trusted proxy.

``SELLERVAULT_ALLOWED_NETWORKS`` (CIDRs, default loopback only) is checked by the HTTP
protocol (``web.limits``) once a request's head is in and before the application sees
anything of it: a client outside gets a bare 403 (no body, no reason) and an
``http:refused`` event with reason ``network_not_allowed``, nothing more. The head has to be
read first because the client behind a proxy is only known from it.

``SELLERVAULT_TRUSTED_PROXIES`` (CIDRs, default none) says whose ``X-Forwarded-For`` is
believed. From any other peer the header is ignored: anyone can write one, and believing it
would let a caller pick the address the allowlist, the per-address login throttle and the
security log see. From a trusted proxy, the client is the rightmost address of the chain
that is not itself a trusted proxy (each proxy appends the address it received the request
from, so everything left of the first untrusted hop was written by someone untrusted).
Several ``X-Forwarded-For`` headers are one list, in order (RFC 9110 5.3). A hop that is not
an address (``unknown``, an obfuscated identifier, garbage) ends the walk without a client:
the request is refused, since nobody can say where it came from.

Addresses are compared and logged in one form: an IPv4-mapped IPv6 address
(``::ffff:192.0.2.1``, what a dual-stack socket reports for an IPv4 client) is the IPv4
address, so ``192.0.2.0/24`` matches it and the log and the counters see one client, not two.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

LOOPBACK = "127.0.0.0/8,::1/128"
"""The default allowlist: this machine only."""


class NetworkSettingError(ValueError):
    """A CIDR list that does not parse; the message names the entry's position, not text."""


def parse_address(text: str) -> Address | None:
    """``text`` as an address in its one form (IPv4-mapped IPv6 as IPv4), or None."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            return None  # a zone ("fe80::1%eth0") names an interface, not a client
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
    return address


def normalise(text: str | None) -> str | None:
    """The address as it is logged and counted; None for what is not an address."""
    address = parse_address(text) if text else None
    return None if address is None else str(address)


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated CIDRs (a bare address is a /32 or /128). Host bits set
    (``10.0.0.1/8``) are refused: such an entry usually means a mistyped prefix, and
    guessing which network was meant is how an allowlist ends up wider than intended."""
    networks = []
    for position, entry in enumerate(part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            network = ipaddress.ip_network(entry, strict=True)
        except ValueError:
            raise NetworkSettingError(
                f"entry {position + 1} is not a network in CIDR notation (e.g. 10.0.0.0/8) "
                "or has host bits set") from None
        if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped:
            # ::ffff:10.0.0.0/104 is 10.0.0.0/8: addresses are compared as IPv4 (normalise)
            network = ipaddress.ip_network(
                f"{network.network_address.ipv4_mapped}/{network.prefixlen - 96}")
        networks.append(network)
    return tuple(networks)


@dataclass(frozen=True, slots=True)
class Networks:
    """A set of networks; an address is in it when any network contains it."""

    networks: tuple[Network, ...]

    @classmethod
    def parse(cls, text: str) -> Networks:
        return cls(parse_networks(text))

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        return any(address.version == network.version and address in network
                   for network in self.networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    @property
    def loopback_only(self) -> bool:
        return all(network.is_loopback for network in self.networks)


def is_loopback_host(host: str) -> bool:
    """Whether a listening address is this machine only (``localhost`` or a loopback
    address); ``0.0.0.0``, ``::`` and a name are not."""
    if host == "localhost":
        return True
    address = parse_address(host.strip("[]"))
    return address is not None and address.is_loopback


def forwarded_chain(values: Iterable[bytes]) -> list[str]:
    """The hops of every ``X-Forwarded-For`` header, in order, as one list."""
    return [hop.strip() for value in values
            for hop in value.decode("latin-1").split(",")]


def client_address(peer: str | None, forwarded_for: list[bytes],
                   trusted_proxies: Networks) -> Address | None:
    """The client a request comes from: the TCP peer, or, when the peer is a trusted proxy
    that says whom it forwards for, the rightmost hop that is not a trusted proxy. None when
    it cannot be told (the peer or a hop is not an address)."""
    address = parse_address(peer) if peer else None
    if address is None or address not in trusted_proxies or not forwarded_for:
        return address
    for hop in reversed(forwarded_chain(forwarded_for)):
        hop_address = parse_address(hop)
        if hop_address is None:
            return None
        address = hop_address
        if address not in trusted_proxies:
            break
    return address


@dataclass(frozen=True, slots=True)
class NetworkGate:
    """The allowlist and the proxies of one server (``web.limits`` asks it per request)."""

    allowed: Networks
    trusted_proxies: Networks

    def admit(self, peer: str | None, forwarded_for: list[bytes]) -> Address | None:
        """The client's address if it may reach the service, else None."""
        address = client_address(peer, forwarded_for, self.trusted_proxies)
        return address if address is not None and address in self.allowed else None

    @property
    def loopback_only(self) -> bool:
        return self.allowed.loopback_only


OPEN_GATE = NetworkGate(Networks.parse("0.0.0.0/0,::/0"), Networks(()))
"""For the protocol class used on its own (tests of ``web.limits``)."""
