"""The payment rules (pure): Infernet's accepted_payments semantics, the wallets' checks, the config
keys, the error table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_chain_pure import make_sub

from node_agent.chain import errors, payments
from node_agent.chain.payments import Refusal, Settlement, WalletView
from node_agent.config import ContainerConfig, parse_config
from node_agent.errors import ConfigError

TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
OTHER = "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512"
ETH = "0x0000000000000000000000000000000000000000"
WALLET = "0x00000000000000000000000000000000000000aa"
VERIFIER = "0x0000000000000000000000000000000000000009"


def container(cid: str, accepted: dict[str, int] | None = None) -> ContainerConfig:
    return ContainerConfig.model_validate(
        {"id": cid, "image": "x", "accepted_payments": accepted or {}}
    )


def code(refusal: Refusal | None) -> str | None:
    return None if refusal is None else refusal.code


def test_floor_is_the_sum_over_the_containers_and_tokens_match_in_any_case() -> None:
    # keys written checksummed, in lower case or upper case all mean the same token
    a = container("a", {TOKEN: 300, ETH: 10})
    b = container("b", {TOKEN.lower(): 200})
    c = container("c")  # no requirements: adds nothing, accepts anything
    sub = make_sub(payment_amount=500, payment_token=TOKEN.upper().replace("0X", "0x"))
    assert payments.floor(sub, [a, b, c]) == 500
    assert payments.terms_refusal(sub, [a, b, c], WALLET) is None
    below = make_sub(payment_amount=499, payment_token=TOKEN)
    refusal = payments.terms_refusal(below, [a, b, c], WALLET)
    assert refusal is not None and refusal.code == "below_floor"
    assert "499" in refusal.message and "500" in refusal.message
    # ETH: only a lists it, so b refuses it
    eth = make_sub(payment_amount=10**18, payment_token=ETH)
    refusal = payments.terms_refusal(eth, [a, b], WALLET)
    assert refusal == Refusal("token_not_accepted", "token ETH not accepted by container b")
    assert payments.terms_refusal(eth, [a, c], WALLET) is None
    unaccepted = make_sub(payment_amount=10**30, payment_token=OTHER)
    assert code(payments.terms_refusal(unaccepted, [a], WALLET)) == "token_not_accepted"
    # containers without requirements take any payment in any token
    assert payments.terms_refusal(unaccepted, [c], WALLET) is None


def test_free_and_unpayable_subscriptions() -> None:
    paid_container = container("a", {ETH: 1})
    free = make_sub()
    assert payments.terms_refusal(free, [container("b")], None) is None
    assert code(payments.terms_refusal(free, [paid_container], WALLET)) == "payment_required"
    verifier_only = make_sub(verifier=VERIFIER)
    assert code(payments.terms_refusal(verifier_only, [container("b")], WALLET)) == (
        "verifier_without_payment"
    )
    paying = make_sub(payment_amount=5)
    assert code(payments.terms_refusal(paying, [container("b")], None)) == "no_payment_address"


def view(
    consumer: tuple[bool, int, int] = (True, 100, 100),
    node: tuple[bool, int, int] = (True, 100, 100),
    fee_bps: int = 500,
    supported: bool = True,
    verifier_fee: int = 0,
) -> Settlement:
    return Settlement(WalletView(*consumer), WalletView(*node), fee_bps, supported, verifier_fee)


def test_wallet_checks_in_the_order_the_coordinator_pays() -> None:
    sub = make_sub(payment_amount=100, payment_token=TOKEN, wallet=WALLET)
    assert payments.funds_refusal(sub, view()) is None
    assert code(payments.funds_refusal(sub, view(consumer=(False, 0, 0)))) == (
        "consumer_wallet_invalid"
    )
    assert code(payments.funds_refusal(sub, view(consumer=(True, 99, 100)))) == (
        "consumer_underfunded"
    )
    assert code(payments.funds_refusal(sub, view(consumer=(True, 100, 99)))) == (
        "consumer_allowance"
    )
    assert code(payments.funds_refusal(sub, view(node=(False, 0, 0)))) == "node_wallet_invalid"
    # without a verifier the node's balance does not matter
    assert payments.funds_refusal(sub, view(node=(True, 0, 0))) is None


def test_proof_subscriptions_need_the_verifier_and_the_node_stake() -> None:
    sub = make_sub(payment_amount=100, payment_token=TOKEN, wallet=WALLET, verifier=VERIFIER)
    assert payments.funds_refusal(sub, view()) is None
    assert code(payments.funds_refusal(sub, view(supported=False))) == "verifier_token"
    # FEE 5 %: the protocol takes 2 x 5 % = 10, so the verifier may take at most 90
    assert payments.protocol_cut(100, 500) == 10
    assert payments.funds_refusal(sub, view(verifier_fee=90)) is None
    assert code(payments.funds_refusal(sub, view(verifier_fee=91))) == "verifier_fee"
    assert code(payments.funds_refusal(sub, view(node=(True, 99, 10**9)))) == "node_stake"
    assert code(payments.funds_refusal(sub, view(node=(True, 10**9, 99)))) == "node_allowance"
    # stake promised to another delivery in flight is not counted twice
    assert payments.funds_refusal(sub, view(node=(True, 199, 10**9)), reserved=100) is not None
    assert payments.funds_refusal(sub, view(node=(True, 200, 10**9)), reserved=100) is None


def test_only_funds_and_fees_are_transient_refusals() -> None:
    """Balances, allowances and fees move while an interval is open; the rules do not."""
    sub = make_sub(payment_amount=100, payment_token=TOKEN, wallet=WALLET, verifier=VERIFIER)
    cases = {
        "consumer_underfunded": view(consumer=(True, 99, 100)),
        "consumer_allowance": view(consumer=(True, 100, 99)),
        "node_stake": view(node=(True, 99, 10**9)),
        "node_allowance": view(node=(True, 10**9, 99)),
        "verifier_fee": view(verifier_fee=91),
        "consumer_wallet_invalid": view(consumer=(False, 0, 0)),
        "node_wallet_invalid": view(node=(False, 0, 0)),
        "verifier_token": view(supported=False),
    }
    transient = set()
    for expected, settlement in cases.items():
        refusal = payments.funds_refusal(sub, settlement)
        assert refusal is not None and refusal.code == expected
        if refusal.transient:
            transient.add(refusal.code)
    assert transient == payments.TRANSIENT == set(list(cases)[:5])
    a = container("a", {TOKEN: 300})
    for terms in (
        payments.terms_refusal(make_sub(payment_amount=1, payment_token=TOKEN), [a], WALLET),
        payments.terms_refusal(make_sub(payment_amount=1, payment_token=OTHER), [a], WALLET),
        payments.terms_refusal(make_sub(payment_amount=1), [a], None),
    ):
        assert terms is not None and not terms.transient


def test_protocol_cut_rounds_down() -> None:
    assert payments.protocol_cut(1, 5000) == 1
    assert payments.protocol_cut(19, 500) == 1
    assert payments.protocol_cut(10**18, 0) == 0


def test_config_keys() -> None:
    base = {"containers": [{"id": "a", "image": "x", "accepted_payments": {TOKEN: 5, ETH: 7}}]}
    config = parse_config(base)
    assert config.containers[0].accepted_payments == {TOKEN.lower(): 5, ETH: 7}
    for bad in ({"not-an-address": 1}, {TOKEN: -1}):
        broken = {"containers": [{"id": "a", "image": "x", "accepted_payments": bad}]}
        with pytest.raises(ConfigError):
            parse_config(broken)
    wallet = {"private_key": "0x" + "11" * 32, "payment_address": "nope"}
    with pytest.raises(ConfigError) as raised:
        parse_config({"chain": {"wallet": wallet}})
    assert "payment_address" in str(raised.value.params)
    wallet["payment_address"] = ""  # Infernet's sample config leaves it empty
    assert parse_config({"chain": {"wallet": wallet}}).chain.wallet.payment_address is None  # type: ignore[union-attr]


def test_every_contract_error_has_a_name() -> None:
    shipped = Path(__file__).resolve().parents[2] / "node_agent" / "abi" / "Errors.json"
    names = {entry["name"] for entry in json.loads(shipped.read_text())}
    assert names <= set(errors.SELECTORS.values())
    assert "PaymentsNotSupported" not in errors.SELECTORS.values()
    assert errors.Reverted("0x23455ba1").name == "InvalidWallet"
