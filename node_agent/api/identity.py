"""Who is calling: the peer address, or the client behind a trusted reverse proxy.

``X-Forwarded-For`` is honoured only when the TCP peer is one of ``server.trusted_proxies``
(the reference trusted it from anyone for rate limiting, so the limit was trivially evaded).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

from node_agent.jobs.guardian import IpAddress, IpNetwork


def parse_networks(cidrs: Sequence[str]) -> tuple[IpNetwork, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def normalise(ip: IpAddress) -> IpAddress:
    """Map ``::ffff:a.b.c.d`` to ``a.b.c.d`` so one client has one identity."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _in(ip: IpAddress, networks: Sequence[IpNetwork]) -> bool:
    return any(ip.version == n.version and ip in n for n in networks)


@functools.lru_cache(maxsize=4096)
def _parse_peer(peer: str) -> IpAddress | None:
    """Peers repeat (keep-alive, few clients): parse each address string once."""
    try:
        return normalise(ipaddress.ip_address(peer.split("%", 1)[0]))
    except ValueError:
        return None


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: Sequence[IpNetwork]
) -> IpAddress | None:
    """The caller's address; ``None`` when it cannot be known (no peer, junk peer)."""
    if not peer:
        return None
    ip = _parse_peer(peer)
    if ip is None:
        return None
    if not forwarded_for or not trusted or not _in(ip, trusted):
        return ip
    # Walk from the right: the first hop that is not one of our proxies is the client.
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        try:
            candidate = normalise(ipaddress.ip_address(hop))
        except ValueError:
            return ip  # a garbled header: fall back to the proxy itself, never to junk
        if not _in(candidate, trusted):
            return candidate
        ip = candidate
    return ip


LOCAL_STATUS_NETWORKS = parse_networks(["127.0.0.0/8", "::1/128", "172.16.0.0/12"])


def is_local(ip: IpAddress) -> bool:
    """May report job status (``PUT /api/status``): loopback and Docker bridge networks."""
    return _in(ip, LOCAL_STATUS_NETWORKS)
