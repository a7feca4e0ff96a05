"""The guardian's on-chain rules (pure): which subscriptions this node takes on.

Same checks and error strings as the Infernet node's listener (§2); the payment terms
(``Invalid payment``) come from :mod:`node_agent.chain.payments`, with a ``code`` and a ``reason``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from node_agent.chain.payments import terms_refusal
from node_agent.chain.scheduler import ContainerLookup
from node_agent.chain.subscription import Subscription
from node_agent.config import ContainerConfig


@dataclass(frozen=True)
class Rejection:
    error: str
    params: dict[str, Any] = field(default_factory=dict)
    # AccessDenied (403) rather than a plain rejection (400) when served over HTTP
    access: bool = False


def check_subscription(
    sub: Subscription,
    lookup: ContainerLookup,
    containers: Mapping[str, ContainerConfig],
    *,
    delegated: bool = False,
    sub_id: int | None = None,
    payment_address: str | None = None,
) -> tuple[tuple[str, ...], Rejection | None]:
    """The container chain of ``sub`` and the first rule it breaks (None = accepted).

    ``delegated`` applies ``allowed_delegate_addresses`` instead of ``allowed_addresses``;
    without a ``payment_address`` (the node's Wallet) every paid subscription is refused.
    """
    chain = lookup.containers(sub.container_id)
    if not chain:
        return (), Rejection(
            "Container-set not supported", {"containers_hash": "0x" + sub.container_id.hex()}
        )
    configs = [containers[cid] for cid in chain]
    if not configs[0].external:
        return chain, Rejection("First container must be external", {"first_container": chain[0]})
    owner = sub.owner.lower()
    for config in configs:
        allowed = config.allowed_delegate_addresses if delegated else config.allowed_addresses
        if allowed and owner not in allowed:
            return chain, Rejection(
                "Container not allowed for address",
                {"container": config.id, "address": sub.owner},
                access=True,
            )
    if sub.requires_proof and not configs[-1].generates_proofs:
        return chain, Rejection("Container does not generate proof", {"container": chain[-1]})
    refusal = terms_refusal(sub, configs, payment_address)
    if refusal is not None:
        params: dict[str, Any] = {"code": refusal.code, "reason": refusal.message}
        if sub_id is not None:
            params["subscription_id"] = sub_id
        return chain, Rejection("Invalid payment", params)
    return chain, None
