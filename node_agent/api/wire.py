"""Request bodies of the Infernet REST API, parsed strictly into typed values.

The hot path (off-chain jobs) is checked by hand, which is several times faster than a model;
the delegated-subscription body is rarer and gets a pydantic model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from node_agent.errors import BadRequest

# Keys the reference let a client inject to choose its job id or impersonate another IP.
FORBIDDEN_KEYS = ("id", "ip")


@dataclass(frozen=True, slots=True)
class OffchainJobRequest:
    containers: list[str]
    data: dict[str, Any]
    requires_proof: bool


def _invalid(field: str, problem: str) -> BadRequest:
    return BadRequest("Invalid request body", {"field": field, "problem": problem})


def is_delegated(body: dict[str, Any]) -> bool:
    return "subscription" in body or "signature" in body


def parse_offchain_job(body: Any) -> OffchainJobRequest:
    if not isinstance(body, dict):
        raise BadRequest("Invalid request body", {"problem": "expected a JSON object"})
    for key in FORBIDDEN_KEYS:
        if key in body:
            raise BadRequest(
                "Field not allowed", {"field": key, "problem": "set by the node, not the client"}
            )
    containers = body.get("containers")
    if not isinstance(containers, list) or not all(isinstance(c, str) for c in containers):
        raise _invalid("containers", "must be a list of container ids (strings)")
    data = body.get("data")
    if not isinstance(data, dict):
        raise _invalid("data", "must be a JSON object")
    requires_proof = body.get("requires_proof")
    if requires_proof is None:
        requires_proof = False
    elif not isinstance(requires_proof, bool):
        raise _invalid("requires_proof", "must be true, false or null")
    return OffchainJobRequest(containers, data, requires_proof)


# --- delegated subscriptions (what infernet-client 1.4.0 sends) --------------------------------

Uint32 = Annotated[int, Field(ge=0, lt=2**32)]
Uint256 = Annotated[int, Field(ge=0, lt=2**256)]
Address = Annotated[str, Field(pattern=r"^0x[0-9a-fA-F]{40}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class WireSubscription(_Strict):
    owner: Address
    active_at: Uint32
    period: Uint32
    frequency: Uint32
    redundancy: Annotated[int, Field(ge=0, lt=2**16)]
    containers: str
    lazy: bool
    verifier: Address
    payment_amount: Uint256
    payment_token: Address
    wallet: Address

    @field_validator("containers")
    @classmethod
    def _bytes32(cls, value: str) -> str:
        """The container-set hash, with or without ``0x`` (hexbytes ≥ 1 drops it)."""
        digits = value[2:] if value.lower().startswith("0x") else value
        if len(digits) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digits):
            raise ValueError("must be a 32-byte hex string (the container-set hash)")
        return "0x" + digits.lower()


class WireSignature(_Strict):
    nonce: Uint32
    expiry: Uint32
    v: Annotated[int, Field(ge=0, lt=256)]
    r: Uint256
    s: Uint256


class DelegatedSubscriptionRequest(_Strict):
    subscription: WireSubscription
    signature: WireSignature
    data: dict[str, Any]
    requires_proof: bool | None = None


def parse_delegated(body: dict[str, Any]) -> DelegatedSubscriptionRequest:
    for key in FORBIDDEN_KEYS:
        if key in body:
            raise BadRequest(
                "Field not allowed", {"field": key, "problem": "set by the node, not the client"}
            )
    try:
        return DelegatedSubscriptionRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise _invalid(field, first["msg"]) from None
