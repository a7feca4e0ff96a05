"""The guardian's on-chain rules (pure): which subscriptions this node takes on.

Same checks and error strings as the Infernet node's listener (§2), plus an explicit payment
rule: node-agent does not take payments yet, so a subscription that pays is refused with a
reason instead of being served for free or failing later.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from node_agent.chain.scheduler import ContainerLookup
from node_agent.chain.subscription import Subscription
from node_agent.config import ContainerConfig

PAYMENTS_UNSUPPORTED = "payments are not supported by this node yet"


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
) -> tuple[tuple[str, ...], Rejection | None]:
    """The container chain of ``sub`` and the first rule it breaks (None = accepted).

    ``delegated`` applies ``allowed_delegate_addresses`` instead of ``allowed_addresses``.
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
    reason = payment_rejection(sub, configs)
    if reason is not None:
        params: dict[str, Any] = {"reason": reason}
        if sub_id is not None:
            params["subscription_id"] = sub_id
        return chain, Rejection("Invalid payment", params)
    return chain, None


def payment_rejection(sub: Subscription, configs: Sequence[ContainerConfig]) -> str | None:
    """Why a subscription's payment terms are refused, or None when it is free."""
    if sub.pays:
        return PAYMENTS_UNSUPPORTED
    if any(config.accepted_payments for config in configs):
        # A container that asks for payment is not served for free.
        return "container requires payment: " + ",".join(
            config.id for config in configs if config.accepted_payments
        )
    return None
