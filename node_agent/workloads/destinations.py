"""Where the node may send a workload's callback: not into networks it must never reach.

A callback URL comes from whoever submits the workload, and the node POSTs to it from inside
the provider's network. Some addresses are never a receiver but are dangerous to reach from a
GPU host: the cloud metadata service (169.254.169.254, fd00:ec2::254; its credentials), other
link-local services, multicast and unspecified addresses. Those are blocked by default; the
provider can block more (private ranges, its own management network) with
``workloads.callbacks.blocked_networks``. Loopback stays allowed by default: the orchestrator's
protocol takes plain-HTTP callbacks to this host.

The check is made on the address actually connected to (a resolver that filters what DNS
answers, see :class:`GuardedResolver`), so a name that resolves to a blocked address later (DNS
rebinding) is caught as well as a literal IP.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_BLOCKED = (
    "0.0.0.0/8",  # "this network": on Linux 0.0.0.0 reaches local services
    "169.254.0.0/16",  # link-local: cloud metadata services live here
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, and the broadcast address
    "::/128",
    "fe80::/10",  # link-local
    "fd00:ec2::254/128",  # AWS's IPv6 metadata service
    "ff00::/8",  # multicast
)


class BlockedDestination(OSError):
    """The callback's host is (or resolves only to) addresses in a blocked network."""


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(value, strict=False) for value in values)


def is_blocked(address: Address, blocked: Sequence[Network]) -> bool:
    """``address`` is in one of ``blocked``; an IPv4-mapped IPv6 address counts as its IPv4."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == net.version and address in net for net in blocked)


def literal_address(host: str) -> Address | None:
    """The host of a URL as an IP address, when it is one (brackets of IPv6 removed)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_host(host: str, blocked: Sequence[Network]) -> None:
    """Refuse a literal IP host in a blocked network (a name is checked when resolved)."""
    address = literal_address(host)
    if address is not None and is_blocked(address, blocked):
        raise BlockedDestination(f"{address} is in a network the node does not call")


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver without the addresses in blocked networks: a host with nothing else
    fails to connect with :class:`BlockedDestination`. aiohttp skips resolvers for literal
    IPs, so callers also run :func:`check_host`."""

    def __init__(
        self, blocked: Callable[[], Sequence[Network]], inner: AbstractResolver | None = None
    ) -> None:
        self.blocked = blocked  # read per lookup: a reload applies to the next callback
        # getaddrinfo in a thread: nothing to release (aiohttp never closes a resolver it was
        # given, so an aiodns channel here would leak with each session)
        self._inner = inner or ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        blocked = self.blocked()
        allowed = [a for a in answers if not _blocks(a, blocked)]
        if not allowed:
            raise BlockedDestination(f"{host} resolves only to networks the node does not call")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def _blocks(answer: ResolveResult, blocked: Sequence[Network]) -> bool:
    address = literal_address(str(answer["host"]))
    return address is None or is_blocked(address, blocked)


def guarded_session(blocked: Callable[[], Sequence[Network]]) -> aiohttp.ClientSession:
    """An aiohttp session whose connections never reach ``blocked()`` (built inside a loop)."""
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(blocked))
    return aiohttp.ClientSession(connector=connector)
