"""Paid deliveries on anvil through the shipped ABIs: Wallets from the factory, the protocol fee,
an ERC-20 with the atomic example verifier, and every event decoded with the exported JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_account import Account
from web3 import AsyncWeb3
from web3.contract import AsyncContract
from web3.exceptions import ContractCustomError
from web3.logs import DISCARD
from web3.types import TxReceipt, Wei

from node_agent.chain.deploy import Deployer
from tests.support.anvil import DEPLOYER_KEY, NODE_KEYS, DeployedChain, transact

pytestmark = pytest.mark.chain

ETH = "0x0000000000000000000000000000000000000000"
FEE_BPS = 500
DEPLOYER = Account.from_key(DEPLOYER_KEY).address
NODE = Account.from_key(NODE_KEYS[0]).address
VERIFIER_WALLET = "0x00000000000000000000000000000000000F7e7e"


@dataclass
class Market:
    """Fee set to 5 %; a consumer Wallet owned by the deployer, a Wallet owned by the node's key."""

    w3: AsyncWeb3[Any]
    chain: DeployedChain
    coordinator: AsyncContract
    factory: AsyncContract
    fee: AsyncContract
    callback: AsyncContract
    consumer_wallet: AsyncContract
    node_wallet: AsyncContract

    def contract(self, name: str, address: str) -> AsyncContract:
        return self.chain.contract(self.w3, name, address)

    async def balance(self, who: str, token: AsyncContract | None) -> int:
        if token is None:
            return int(await self.w3.eth.get_balance(self.w3.to_checksum_address(who)))
        return int(await token.functions.balanceOf(who).call())

    async def deliver(self, sub_id: int, proof: bytes) -> TxReceipt:
        call = self.coordinator.functions.deliverCompute(
            sub_id, 1, b"in", b"out", proof, self.node_wallet.address
        )
        receipt = await transact(self.w3, NODE_KEYS[0], call)
        assert receipt["status"] == 1
        return receipt


async def create_wallet(
    w3: AsyncWeb3[Any], chain: DeployedChain, factory: AsyncContract, owner_key: str
) -> AsyncContract:
    """A Wallet from the factory, created and owned by ``owner_key``'s account."""
    owner = Account.from_key(owner_key).address
    receipt = await transact(w3, owner_key, factory.functions.createWallet(owner))
    (event,) = factory.events.WalletCreated().process_receipt(receipt, errors=DISCARD)
    assert event["args"]["caller"] == owner and event["args"]["owner"] == owner
    return chain.contract(w3, "Wallet", event["args"]["wallet"])


@pytest.fixture
async def market(chain: DeployedChain, w3: AsyncWeb3[Any]) -> AsyncIterator[Market]:
    registry = chain.contract(w3, "Registry", chain.deployment.registry)
    factory = chain.contract(w3, "WalletFactory", await registry.functions.WALLET_FACTORY().call())
    fee = chain.contract(w3, "Fee", await registry.functions.FEE().call())
    assert await fee.functions.FEE_RECIPIENT().call() == DEPLOYER  # the Coordinator's deployer
    await transact(w3, DEPLOYER_KEY, fee.functions.updateFee(FEE_BPS))
    try:
        yield Market(
            w3=w3,
            chain=chain,
            coordinator=chain.contract(w3, "Coordinator", chain.deployment.coordinator),
            factory=factory,
            fee=fee,
            callback=chain.contract(w3, "ExampleCallbackConsumer", chain.examples.callback),
            consumer_wallet=await create_wallet(w3, chain, factory, DEPLOYER_KEY),
            node_wallet=await create_wallet(w3, chain, factory, NODE_KEYS[0]),
        )
    finally:
        await transact(w3, DEPLOYER_KEY, fee.functions.updateFee(0))


async def test_paid_eth_delivery_pays_fee_recipient_and_node_to_the_wei(market: Market) -> None:
    w3, amount = market.w3, 10**18
    await w3.eth.send_transaction(
        {"from": DEPLOYER, "to": market.consumer_wallet.address, "value": Wei(amount)}
    )
    approve = market.consumer_wallet.functions.approve(market.callback.address, ETH, amount)
    await transact(w3, DEPLOYER_KEY, approve)
    request = market.callback.functions.requestPaidCompute(
        "paid", b"x", 1, ETH, amount, market.consumer_wallet.address, ETH
    )
    receipt = await transact(w3, DEPLOYER_KEY, request)
    (created,) = market.coordinator.events.SubscriptionCreated().process_receipt(
        receipt, errors=DISCARD
    )
    sub_id = created["args"]["id"]
    sub = await market.coordinator.functions.getSubscription(sub_id).call()
    assert tuple(sub[7:]) == (ETH, amount, ETH, market.consumer_wallet.address)

    recipient_before = await market.balance(DEPLOYER, None)  # only the node sends from here on
    node_before = await market.balance(market.node_wallet.address, None)
    receipt = await market.deliver(sub_id, b"")

    protocol = amount * 2 * FEE_BPS // 10_000
    assert await market.balance(DEPLOYER, None) - recipient_before == protocol
    assert await market.balance(market.node_wallet.address, None) - node_before == amount - protocol
    assert await market.balance(market.consumer_wallet.address, None) == 0
    transfers = market.consumer_wallet.events.Transfer().process_receipt(receipt, errors=DISCARD)
    assert {t["address"] for t in transfers} == {market.consumer_wallet.address}
    assert [(t["args"]["to"], t["args"]["amount"]) for t in transfers] == [
        (DEPLOYER, protocol),
        (market.node_wallet.address, amount - protocol),
    ]
    assert all(t["args"]["spender"] == market.callback.address for t in transfers)

    # The node's Wallet pays out to its owner; `Withdrawl` is the SDK's spelling.
    withdraw = market.node_wallet.functions.withdraw(ETH, amount - protocol)
    receipt = await transact(w3, NODE_KEYS[0], withdraw)
    (withdrawn,) = market.node_wallet.events.Withdrawl().process_receipt(receipt, errors=DISCARD)
    assert withdrawn["args"]["amount"] == amount - protocol


async def test_paid_erc20_delivery_with_the_atomic_verifier(market: Market) -> None:
    w3 = market.w3
    deployer = Deployer(w3, DEPLOYER_KEY)
    token_address, _ = await deployer.deploy("ExampleToken", "Example", "EXT", 6)
    verifier_address, _ = await deployer.deploy(
        "ExampleAtomicVerifier", market.chain.deployment.registry
    )
    token = market.contract("ExampleToken", token_address)
    verifier = market.contract("ExampleAtomicVerifier", verifier_address)
    amount, verifier_fee, good = 2_000_000, 10_000, b"good-proof"
    for call in (
        verifier.functions.setTokenFee(token_address, True, verifier_fee),
        verifier.functions.setFeeWallet(VERIFIER_WALLET),
        verifier.functions.setProofAccepted(w3.keccak(good), True),
        token.functions.mint(market.consumer_wallet.address, 2 * amount),
        token.functions.mint(market.node_wallet.address, 2 * amount),
        market.consumer_wallet.functions.approve(
            market.callback.address, token_address, 2 * amount
        ),
    ):
        await transact(w3, DEPLOYER_KEY, call)
    stake_approval = market.node_wallet.functions.approve(NODE, token_address, 2 * amount)
    await transact(w3, NODE_KEYS[0], stake_approval)

    protocol = amount * 2 * FEE_BPS // 10_000 + verifier_fee * FEE_BPS // 10_000
    escrowed = amount - amount * 2 * FEE_BPS // 10_000 - verifier_fee
    for proof, valid in ((good, True), (b"forged", False)):
        request = market.callback.functions.requestPaidCompute(
            "paid", b"x", 1, token_address, amount, market.consumer_wallet.address, verifier_address
        )
        receipt = await transact(w3, DEPLOYER_KEY, request)
        sub_id = market.coordinator.events.SubscriptionCreated().process_receipt(
            receipt, errors=DISCARD
        )[0]["args"]["id"]
        recipient_before = await market.balance(DEPLOYER, token)
        node_before = await market.balance(market.node_wallet.address, token)
        verifier_before = await market.balance(VERIFIER_WALLET, token)

        receipt = await market.deliver(sub_id, proof)

        (verified,) = market.coordinator.events.ProofVerified().process_receipt(
            receipt, errors=DISCARD
        )
        assert dict(verified["args"]) == {
            "id": sub_id,
            "interval": 1,
            "node": NODE,
            "active": True,
            "verifier": verifier_address,
            "valid": valid,
        }
        escrows = market.node_wallet.events.Escrow().process_receipt(receipt, errors=DISCARD)
        node_escrows = [e for e in escrows if e["address"] == market.node_wallet.address]
        assert [(e["args"]["amount"], e["args"]["locked"]) for e in node_escrows] == [
            (amount, True),
            (amount, False),
        ]
        assert await market.balance(DEPLOYER, token) - recipient_before == protocol
        verifier_net = verifier_fee - verifier_fee * FEE_BPS // 10_000
        assert await market.balance(VERIFIER_WALLET, token) - verifier_before == verifier_net
        node_delta = await market.balance(market.node_wallet.address, token) - node_before
        assert node_delta == (escrowed if valid else -amount)
        assert await market.node_wallet.functions.lockedBalance(token_address).call() == 0
        assert await market.consumer_wallet.functions.lockedBalance(token_address).call() == 0


async def test_paid_subscription_needs_a_factory_wallet(market: Market) -> None:
    request = market.callback.functions.requestPaidCompute(
        "paid", b"x", 1, ETH, 1, market.fee.address, ETH
    )
    with pytest.raises(ContractCustomError) as raised:
        await transact(market.w3, DEPLOYER_KEY, request)
    assert raised.value.data == "0x23455ba1"  # InvalidWallet()
