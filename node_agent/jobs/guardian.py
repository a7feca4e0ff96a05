"""Access rules for jobs: pure functions over the container policies (Infernet §2).

The order of the checks and their error strings are the reference node's, because clients
match on them; the statuses are ours (4xx instead of 405/500, see the README).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from node_agent.config import ContainerConfig
from node_agent.errors import AccessDenied, GuardianRejection

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class ContainerPolicy:
    """What the guardian needs to know about one configured container."""

    id: str
    external: bool = True
    generates_proofs: bool = False
    allowed_networks: tuple[IpNetwork, ...] = ()
    allowed_addresses: frozenset[str] = frozenset()
    allowed_delegate_addresses: frozenset[str] = frozenset()
    allowed_clients: frozenset[str] = frozenset()  # job namespaces ("key:<id>"); empty: any

    @classmethod
    def from_config(cls, config: ContainerConfig) -> ContainerPolicy:
        return cls(
            id=config.id,
            external=config.external,
            generates_proofs=config.generates_proofs,
            allowed_networks=tuple(
                ipaddress.ip_network(n, strict=False) for n in config.allowed_ips
            ),
            allowed_addresses=frozenset(a.lower() for a in config.allowed_addresses),
            allowed_delegate_addresses=frozenset(
                a.lower() for a in config.allowed_delegate_addresses
            ),
            allowed_clients=frozenset(f"key:{k}" for k in config.allowed_keys),
        )

    def admits_ip(self, ip: IpAddress) -> bool:
        if not self.allowed_networks:
            return True
        # An IPv4 client seen through a dual-stack socket arrives as ::ffff:a.b.c.d.
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.allowed_networks)


Policies = Mapping[str, ContainerPolicy]


def policies_from_config(containers: Sequence[ContainerConfig]) -> dict[str, ContainerPolicy]:
    return {c.id: ContainerPolicy.from_config(c) for c in containers}


def check_chain(policies: Policies, containers: Sequence[str], requires_proof: bool) -> None:
    """Rules 1–4, shared by off-chain jobs and (decoded) delegated subscriptions."""
    if not containers:
        raise GuardianRejection("No containers specified")
    for container in containers:
        if container not in policies:
            raise GuardianRejection("Container not supported", {"container": container})
    first = policies[containers[0]]
    if not first.external:
        raise GuardianRejection(
            "First container must be external", {"first_container": containers[0]}
        )
    last = policies[containers[-1]]
    if requires_proof and not last.generates_proofs:
        raise GuardianRejection("Container does not generate proof", {"container": last.id})


def check_offchain_job(
    policies: Policies,
    containers: Sequence[str],
    requires_proof: bool,
    client_ip: IpAddress,
    client: str | None = None,
) -> None:
    """Raise the first rule an off-chain job breaks; return quietly when it may run.

    ``client`` is the caller's job namespace (``key:<id>`` with an API key, else its address),
    checked against a container's ``allowed_keys``."""
    check_chain(policies, containers, requires_proof)
    for container in containers:
        policy = policies[container]
        if not policy.admits_ip(client_ip):
            raise AccessDenied(
                "Container not allowed for address",
                {"container": container, "address": str(client_ip)},
            )
        if policy.allowed_clients and client not in policy.allowed_clients:
            raise AccessDenied("Container not allowed for this API key", {"container": container})


def check_delegate_owner(policies: Policies, containers: Sequence[str], owner: str) -> None:
    """Rule 6 for delegated subscriptions: the owner contract must be allowed everywhere."""
    owner_lower = owner.lower()
    for container in containers:
        allowed = policies[container].allowed_delegate_addresses
        if allowed and owner_lower not in allowed:
            raise AccessDenied(
                "Container not allowed for address", {"container": container, "address": owner}
            )
