"""Pure core: typed data, signer recovery, interval math, scheduling, guardian, outputs."""

from __future__ import annotations

import json

import pytest
from eth_abi import decode, encode
from eth_account import Account
from eth_utils import keccak

from node_agent.chain import abi, eip712, errors, guardian, outputs, scheduler
from node_agent.chain.subscription import CANCELLED_ACTIVE_AT, ZERO_ADDRESS, Subscription
from node_agent.config import ContainerConfig
from tests.support.infernet_client import load_subscription_class

OWNER = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
COORDINATOR = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"


def make_sub(**changes: object) -> Subscription:
    fields: dict[str, object] = dict(
        owner=OWNER,
        active_at=1000,
        period=10,
        frequency=3,
        redundancy=2,
        container_id=eip712.container_set_hash(["a", "b"]),
        lazy=False,
        verifier=ZERO_ADDRESS,
        payment_amount=0,
        payment_token=ZERO_ADDRESS,
        wallet=ZERO_ADDRESS,
    )
    fields.update(changes)
    return Subscription(**fields)  # type: ignore[arg-type]


# --- EIP-712 ------------------------------------------------------------------------------


def test_container_hash_is_abi_encoded_string() -> None:
    expected = keccak(encode(["string"], ["a,b"]))
    assert eip712.container_set_hash(["a", "b"]) == expected
    assert expected != keccak(b"a,b")


def test_type_hashes_match_the_sdk() -> None:
    sub_type = (
        "Subscription(address owner,uint32 activeAt,uint32 period,uint32 frequency,"
        "uint16 redundancy,bytes32 containerId,bool lazy,address verifier,"
        "uint256 paymentAmount,address paymentToken,address wallet)"
    )
    assert keccak(text=sub_type).hex() == (
        "3da81ed66ee47395e568c52867826ec137777eef9c1bdfb6bf972dd4385bc5a9"
    )


def test_digest_matches_an_independent_computation() -> None:
    sub = make_sub()
    sub_type = (
        "Subscription(address owner,uint32 activeAt,uint32 period,uint32 frequency,"
        "uint16 redundancy,bytes32 containerId,bool lazy,address verifier,"
        "uint256 paymentAmount,address paymentToken,address wallet)"
    )
    delegate_type = "DelegateSubscription(uint32 nonce,uint32 expiry,Subscription sub)" + sub_type
    domain_type = (
        "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
    )
    sub_hash = keccak(
        encode(
            [
                "bytes32",
                "address",
                "uint32",
                "uint32",
                "uint32",
                "uint16",
                "bytes32",
                "bool",
                "address",
                "uint256",
                "address",
                "address",
            ],
            [keccak(text=sub_type), *sub.to_tuple()],
        )
    )
    struct = keccak(
        encode(
            ["bytes32", "uint32", "uint32", "bytes32"],
            [keccak(text=delegate_type), 7, 5000, sub_hash],
        )
    )
    domain = keccak(
        encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [
                keccak(text=domain_type),
                keccak(text="InfernetCoordinator"),
                keccak(text="1"),
                31337,
                COORDINATOR,
            ],
        )
    )
    expected = keccak(b"\x19\x01" + domain + struct)
    got = eip712.digest(sub, nonce=7, expiry=5000, chain_id=31337, coordinator=COORDINATOR)
    assert got == expected


def test_signature_from_the_real_client_recovers() -> None:
    client_subscription = load_subscription_class()  # infernet-client 1.4.0's own class
    account = Account.create()
    client_sub = client_subscription(
        OWNER, 1000, 10, 3, 2, ["a", "b"], False, ZERO_ADDRESS, 0, ZERO_ADDRESS, ZERO_ADDRESS
    )
    message = client_sub.get_delegate_subscription_typed_data(7, 5000, 31337, COORDINATOR)
    signed = Account.sign_message(message, account.key)
    ours = eip712.digest(make_sub(), nonce=7, expiry=5000, chain_id=31337, coordinator=COORDINATOR)
    assert signed.message_hash == ours
    assert eip712.recover_signer(ours, signed.v, signed.r, signed.s) == account.address


def test_recovery_refuses_high_s_and_garbage() -> None:
    account = Account.create()
    digest = keccak(b"x")
    signed = Account.unsafe_sign_hash(digest, account.key)
    assert eip712.recover_signer(digest, signed.v, signed.r, signed.s) == account.address
    high_s = eip712.SECP256K1_N - signed.s
    flipped_v = 55 - signed.v
    with pytest.raises(eip712.InvalidSignature):
        eip712.recover_signer(digest, flipped_v, signed.r, high_s)
    with pytest.raises(eip712.InvalidSignature):
        eip712.recover_signer(digest, 27, 0, 1)
    with pytest.raises(eip712.InvalidSignature):
        eip712.recover_signer(digest, 29, signed.r, signed.s)


# --- subscription / scheduler ------------------------------------------------------------


def test_interval_math_uses_the_given_block_time() -> None:
    sub = make_sub()
    assert not sub.is_active(999)
    assert sub.is_active(1000) and sub.interval_at(1000) == 1
    assert sub.interval_at(1009) == 1 and sub.interval_at(1010) == 2
    assert sub.interval_at(1029) == 3 and not sub.is_past(1029)
    assert sub.is_past(1030)
    callback = make_sub(period=0, frequency=1)
    assert callback.interval_at(10**9) == 1 and callback.seconds_left_in_interval(10**6) is None


def test_current_interval_margin_cancel_and_past() -> None:
    sub = make_sub()
    assert scheduler.current_interval(sub, 1005, margin=2) == 1
    assert scheduler.current_interval(sub, 1008, margin=2) is None  # 2 s left: too late
    assert scheduler.current_interval(sub, 1030) is None
    assert scheduler.current_interval(make_sub(active_at=CANCELLED_ACTIVE_AT), 2**31) is None


def test_is_finished() -> None:
    sub = make_sub()
    assert not scheduler.is_finished(sub, 1000)
    assert not scheduler.is_finished(sub, 1025, last_interval_count=1)
    assert scheduler.is_finished(sub, 1025, last_interval_count=2)
    assert scheduler.is_finished(sub, 1030)
    assert scheduler.is_finished(make_sub(active_at=CANCELLED_ACTIVE_AT), 0)


def test_candidates_and_redundancy_split() -> None:
    subs = {1: make_sub(), 2: make_sub(active_at=5000), 3: make_sub(redundancy=1)}
    done = {(3, 1)}
    work = scheduler.candidates(subs, 1001, done=lambda s, i: (s, i) in done)
    assert work == [scheduler.Due(1, 1)]
    open_, full = scheduler.due_after_counts(subs, work, [2])
    assert open_ == [] and full == [scheduler.Due(1, 1)]


def test_container_lookup_is_bounded() -> None:
    external = {f"c{i}": i < 5 for i in range(10)}
    lookup = scheduler.ContainerLookup(external, pipelines=[("c9", "c8", "c7")], max_length=2)
    # 5 external singles + 5 * 9 pairs + 1 explicit pipeline
    assert len(lookup) == 5 + 45 + 1
    assert lookup.containers(eip712.container_set_hash(["c0", "c9"])) == ("c0", "c9")
    assert lookup.containers(eip712.container_set_hash(["c9"])) is None  # not external
    assert lookup.containers(eip712.container_set_hash(["c9", "c8", "c7"])) == ("c9", "c8", "c7")
    big = scheduler.ContainerLookup(
        {f"c{i}": True for i in range(200)}, max_length=3, max_sets=50_000
    )
    assert big.max_length == 2 and len(big) == 200 + 200 * 199


# --- guardian ----------------------------------------------------------------------------


def containers(**overrides: dict[str, object]) -> dict[str, ContainerConfig]:
    out = {}
    for cid in ("a", "b"):
        out[cid] = ContainerConfig.model_validate(
            {"id": cid, "image": "x", **overrides.get(cid, {})}
        )
    return out


def test_guardian_accepts_and_rejects_with_reasons() -> None:
    lookup = scheduler.ContainerLookup({"a": True, "b": True})
    chain, rejection = guardian.check_subscription(make_sub(), lookup, containers())
    assert chain == ("a", "b") and rejection is None

    unknown = make_sub(container_id=eip712.container_set_hash(["zzz"]))
    _, rejection = guardian.check_subscription(unknown, lookup, containers())
    assert rejection is not None and rejection.error == "Container-set not supported"

    paying = make_sub(payment_amount=5)
    _, rejection = guardian.check_subscription(paying, lookup, containers(), sub_id=4)
    assert rejection == guardian.Rejection(
        "Invalid payment",
        {
            "code": "no_payment_address",
            "reason": "this node takes no payments (no chain.wallet.payment_address)",
            "subscription_id": 4,
        },
    )
    wallet = "0x00000000000000000000000000000000000000aa"
    _, rejection = guardian.check_subscription(paying, lookup, containers(), payment_address=wallet)
    assert rejection is None

    restricted = containers(b={"allowed_addresses": ["0x0000000000000000000000000000000000000001"]})
    _, rejection = guardian.check_subscription(make_sub(), lookup, restricted)
    assert rejection is not None and rejection.error == "Container not allowed for address"
    assert rejection.access and rejection.params["container"] == "b"
    # the delegated path reads allowed_delegate_addresses instead
    _, rejection = guardian.check_subscription(make_sub(), lookup, restricted, delegated=True)
    assert rejection is None

    proof = make_sub(verifier="0x0000000000000000000000000000000000000009")
    _, rejection = guardian.check_subscription(proof, lookup, containers())
    assert rejection is not None and rejection.error == "Container does not generate proof"


# --- outputs -----------------------------------------------------------------------------


def test_five_key_output() -> None:
    delivery = outputs.encode_output(
        {
            "raw_input": "01",
            "processed_input": None,
            "raw_output": "0xbeef",
            "processed_output": "",
            "proof": "ff",
        }
    )
    assert decode(["bytes", "bytes"], delivery.input) == (b"\x01", b"")
    assert decode(["bytes", "bytes"], delivery.output) == (b"\xbe\xef", b"")
    assert delivery.proof == b"\xff"


def test_other_outputs_are_json_strings() -> None:
    payload = {"result": "hi", "n": 1, "code": 200}
    delivery = outputs.encode_output(payload)
    (text,) = decode(["string"], delivery.output)
    assert json.loads(text) == payload and "'" not in text
    assert delivery.input == b"" and delivery.proof == b""
    outputs.encode_output({"code": "200"})
    with pytest.raises(outputs.OutputError):
        outputs.encode_output({"code": 500})
    with pytest.raises(outputs.OutputError):
        outputs.encode_output({k: "zz" for k in outputs.FIVE_KEYS})


# --- errors / abi ------------------------------------------------------------------------


def test_error_selectors() -> None:
    assert errors.decode_error_name("0x88a21e4f") == "NodeRespondedAlready"
    assert errors.decode_error_name(bytes.fromhex("4db310c3") + b"\x00" * 32) == "IntervalMismatch"
    assert errors.decode_error_name("0x12345678") is None
    assert errors.decode_error_name(None) is None
    assert errors.Reverted("0x2f4ca85b").name == "IntervalCompleted"


def test_abi_selectors_match_the_sdk() -> None:
    assert abi.DELIVER_COMPUTE.selector.hex() == "c509543d"
    assert abi.DELIVER_COMPUTE_DELEGATEE.selector.hex() == "9fff314a"
    assert abi.READ_SUBSCRIPTION_BATCH.selector.hex() == "3ddc29f5"
    assert abi.READ_REDUNDANCY_COUNT_BATCH.selector.hex() == "757f1c84"
    assert abi.GET_CONTAINER_INPUTS.selector.hex() == "962fad75"
    assert abi.GET_SIGNER.selector.hex() == "7ac3c02f"
    assert abi.GET_SUBSCRIPTION.selector.hex() == "a17b920b"


def test_subscription_json_round_trip() -> None:
    sub = make_sub()
    assert Subscription.from_json(json.loads(json.dumps(sub.to_json()))) == sub
    assert Subscription.from_tuple(sub.to_tuple()) == sub
