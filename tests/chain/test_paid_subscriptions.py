"""Paid subscriptions served by a real ChainService on anvil with the project's contracts (issue 14,
node side): Wallets from the WalletFactory (the node's made by ``node-agent wallet create``), the
protocol fee at 5 %, ETH and an ERC-20, the atomic and optimistic example verifiers, balances
checked to the wei. The container is a real HTTP service speaking the Infernet protocol; for
``prover`` it returns the five-key output whose proof is the subscription's input.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from chain_support import (
    KEYS,
    PERIOD,
    Deployment,
    HttpRunner,
    artifact,
    deliveries,
    equals,
    eventually,
    is_true,
    rpc,
    send_at_nonce,
    settle,
)
from eth_account import Account
from jsonschema import Draft202012Validator
from prometheus_client.parser import text_string_to_metric_families
from test_agent_processes import funded_agent, http_client
from test_daemon_chain import ChainIdOnly
from web3.logs import DISCARD

from node_agent import cli
from node_agent.api import openapi
from node_agent.chain import journal as jr
from node_agent.chain import walletops
from node_agent.chain.devnet import Anvil
from node_agent.chain.service import ChainService
from node_agent.chain.wallet import NodeKey
from node_agent.config import parse_config
from tests.support.agent import running_agent
from tests.support.infernet_client import load_node_client, load_subscription_class
from tests.support.net import serving

pytestmark = pytest.mark.chain

ETH = "0x" + "00" * 20
FEE_BPS = 500
DEPLOYER = Account.from_key(KEYS[0]).address
NODE_KEY = KEYS[1]
NODE = Account.from_key(NODE_KEY).address
THIRD_PARTY = Account.from_key(KEYS[3]).address
VERIFIER_WALLET = "0x00000000000000000000000000000000000F7e7e"
MIN_ETH, MIN_TOKEN, MIN_TOKEN_2 = 10**15, 1_000, 500
WEEK = 7 * 24 * 3600


def protocol(amount: int, bps: int = FEE_BPS) -> int:
    """What the Coordinator takes (SDK v1.1: 2 x FEE basis points, rounded down)."""
    return amount * 2 * bps // 10_000


# --- the container ----------------------------------------------------------------------------


class Prover:
    """``prover``: five-key output, proof = the input (on-chain hex, or a delegated body's
    ``proof``); any other container echoes its input."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        container = request.match_info.get("container", "prover")
        body = await request.json()
        self.requests.append({"container": container, **body})
        data = body["data"]
        if container != "prover":
            return web.json_response({"container": container, "echo": data})
        proof = data if isinstance(data, str) else data.get("proof", "")
        return web.json_response(
            {
                "raw_input": "",
                "processed_input": "",
                "raw_output": b"ok".hex(),
                "processed_output": "",
                "proof": proof,
            }
        )


@asynccontextmanager
async def prover_service() -> AsyncIterator[tuple[Prover, str]]:
    prover = Prover()
    app = web.Application()
    app.router.add_post("/{container}/service_output", prover.handle)
    async with serving(app) as url:
        yield prover, url


# --- the market: Fee at 5 %, a token, verifiers, a consumer Wallet, the node's Wallet ----------


@dataclass
class Market:
    dep: Deployment
    fee: Any
    factory: Any
    token: Any
    atomic: Any
    optimistic: Any
    callback: Any
    consumer_wallet: Any
    wallets: dict[str, str] = field(default_factory=dict)  # node key -> its Wallet

    @property
    def node_wallet(self) -> str:
        return self.wallets[NODE_KEY]

    def contract(self, name: str, address: str) -> Any:
        return self.dep.chain.w3.eth.contract(address=address, abi=artifact(name)["abi"])

    async def send(self, fn: Any, sender: str = DEPLOYER) -> dict[str, Any]:
        tx = await fn.build_transaction({"from": sender})
        return await self.dep.chain.transact(tx)

    async def new_wallet(self) -> Any:
        receipt = await self.send(self.factory.functions.createWallet(DEPLOYER))
        (event,) = self.factory.events.WalletCreated().process_receipt(receipt, errors=DISCARD)
        return self.contract("Wallet", event["args"]["wallet"])

    async def fund(self, wallet: str, token: str, amount: int, spender: str | None = None) -> None:
        """Put ``amount`` in ``wallet``; let ``spender`` (a consumer contract) spend it."""
        if token == ETH:
            await self.dep.chain.transact({"to": wallet, "value": amount})
        else:
            await self.send(self.token.functions.mint(wallet, amount))
        if spender is not None:
            await self.send(
                self.contract("Wallet", wallet).functions.approve(spender, token, amount)
            )

    async def request(
        self,
        container: str,
        amount: int,
        token: str = ETH,
        *,
        verifier: str = ETH,
        inputs: bytes = b"x",
        wallet: str | None = None,
        redundancy: int = 1,
    ) -> tuple[int, dict[str, Any]]:
        """A paid one-shot request through the callback consumer: (id, receipt)."""
        payer = wallet or self.consumer_wallet.address
        fn = self.callback.functions.requestPaidCompute(
            container, inputs, redundancy, token, amount, payer, verifier
        )
        receipt = await self.send(fn)
        coordinator = self.dep.coordinator
        (created,) = coordinator.events.SubscriptionCreated().process_receipt(
            receipt, errors=DISCARD
        )
        return int(created["args"]["id"]), receipt

    async def balance(self, who: str, token: str) -> int:
        if token == ETH:
            return int(await self.dep.chain.w3.eth.get_balance(who))
        return int(await self.token.functions.balanceOf(who).call())

    async def locked(self, wallet: str, token: str) -> int:
        return int(await self.contract("Wallet", wallet).functions.lockedBalance(token).call())


@pytest.fixture
async def market(deployment: Deployment) -> Market:
    dep = deployment
    registry = dep.registry.functions
    fee = dep.chain.w3.eth.contract(address=await registry.FEE().call(), abi=artifact("Fee")["abi"])
    factory = dep.chain.w3.eth.contract(
        address=await registry.WALLET_FACTORY().call(), abi=artifact("WalletFactory")["abi"]
    )
    await dep.chain.call_fn(fee.functions.updateFee(FEE_BPS))
    token = await dep.chain.deploy("ExampleToken", "Example", "EXT", 6)
    market = Market(
        dep=dep,
        fee=fee,
        factory=factory,
        token=token,
        atomic=await dep.chain.deploy("ExampleAtomicVerifier", dep.registry.address),
        optimistic=await dep.chain.deploy("ExampleOptimisticVerifier", dep.registry.address),
        callback=await dep.chain.deploy("ExampleCallbackConsumer", dep.registry.address),
        consumer_wallet=None,
    )
    market.consumer_wallet = await market.new_wallet()
    for asset, amount in ((ETH, 10**18), (token.address, 10**9)):
        await market.fund(market.consumer_wallet.address, asset, amount, market.callback.address)
    await dep.chain.w3.provider.make_request(  # type: ignore[arg-type]
        "anvil_setBalance", [NODE, hex(10**20)]
    )
    return market


def raw_config(
    market: Market, url: str, state: Path, payment_address: str | None, key: str = NODE_KEY
) -> dict[str, Any]:
    token = market.token.address
    wallet: dict[str, Any] = {"private_key": key, "max_fee_per_gas_gwei": 50}
    if payment_address:
        wallet["payment_address"] = payment_address
    return {
        "manage_containers": False,
        "containers": [
            {"id": "echo", "url": f"{url}/echo"},
            {
                "id": "paid",
                "url": f"{url}/paid",
                "accepted_payments": {ETH: MIN_ETH, token: MIN_TOKEN},
            },
            {
                "id": "paid2",
                "url": f"{url}/paid2",
                "accepted_payments": {token.lower(): MIN_TOKEN_2},
            },
            {
                "id": "prover",
                "url": f"{url}/prover",
                "generates_proofs": True,
                "accepted_payments": {token: MIN_TOKEN},
            },
        ],
        "agent": {"state_dir": str(state)},
        "chain": {
            "enabled": True,
            "rpc_url": str(market.dep.chain.w3.provider.endpoint_uri),  # type: ignore[attr-defined]
            "registry_address": market.dep.registry.address,
            "trail_head_blocks": 0,
            "wallet": wallet,
            "snapshot_sync": {"sync_period": 0.1, "batch_size": 50},
            "rpc_timeout": 5.0,
        },
        "onchain": {"stuck_after_seconds": 5.0},
    }


async def create_node_wallet(market: Market, url: str, state: Path, key: str = NODE_KEY) -> str:
    """The node's Wallet, made by ``node-agent wallet create``'s code with the node's config."""
    config = parse_config(raw_config(market, url, state, None, key))
    tokens = walletops.tokens(config, [])
    assert tokens == [ETH, market.token.address]  # ETH always, plus what a container accepts
    node = NodeKey(Account.from_key(key))
    created = await walletops.create(config, node, tokens, force=False)
    wallet = str(created["payment_address"])
    assert created["owner"] == node.address and created["approved"] == tokens
    node_wallet = market.contract("Wallet", wallet)
    assert await node_wallet.functions.owner().call() == node.address
    assert await market.factory.functions.isValidWallet(wallet).call()
    for token in tokens:  # the node key may lock stakes, for good
        assert await node_wallet.functions.allowance(node.address, token).call() == 2**256 - 1
    market.wallets[key] = wallet
    return wallet


@asynccontextmanager
async def paid_node(
    market: Market, url: str, state: Path, key: str = NODE_KEY
) -> AsyncIterator[ChainService]:
    address = market.wallets.get(key) or await create_node_wallet(market, url, state, key)
    node = ChainService(
        parse_config(raw_config(market, url, state, address, key)), state, HttpRunner(url)
    )
    await node.start()
    try:
        await eventually(lambda: is_true(node.status()["ready"]), what="node connected")
        yield node
    finally:
        await node.stop(2)


def runner_calls(node: ChainService) -> list[dict[str, Any]]:
    assert isinstance(node.runner, HttpRunner)
    return node.runner.calls


async def node_nonce(market: Market) -> int:
    return int(await market.dep.chain.w3.eth.get_transaction_count(NODE, "latest"))


async def pool_nonce(market: Market) -> int:
    return int(await market.dep.chain.w3.eth.get_transaction_count(NODE, "pending"))


async def delivery_errors(node: ChainService) -> dict[str, str | None]:
    path = node.journal.path

    def read() -> dict[str, str | None]:
        import sqlite3

        with sqlite3.connect(path) as db:
            rows = db.execute("SELECT sub_key, state, error FROM deliveries").fetchall()
        return {str(r[0]): f"{r[1]}: {r[2]}" for r in rows}

    return await asyncio.to_thread(read)


# --- tests ------------------------------------------------------------------------------------


async def test_paid_eth_and_erc20_subscriptions_are_delivered_and_paid_to_the_wei(
    market: Market, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = market.token.address
    async with prover_service() as (_, url), paid_node(market, url, tmp_path) as node:
        wallet, consumer = market.node_wallet, market.consumer_wallet.address
        nonce = await node_nonce(market)  # wallet create sent 3: createWallet and 2 approvals
        assert nonce == 3
        cases = [(ETH, 10**16, "paid"), (token, 5_000, "paid"), (token, 1_700, "paid,paid2")]
        for count, (asset, amount, containers) in enumerate(cases, start=1):
            before = {who: await market.balance(who, asset) for who in (DEPLOYER, wallet, consumer)}
            _, receipt = await market.request(containers, amount, asset)
            await eventually(lambda n=count: equals(deliveries(market.callback), n))
            await settle(node, market.dep)
            cut = protocol(amount)
            gas = receipt["gasUsed"] * receipt["effectiveGasPrice"] if asset == ETH else 0
            assert await market.balance(DEPLOYER, asset) - before[DEPLOYER] == cut - gas
            assert await market.balance(wallet, asset) - before[wallet] == amount - cut
            assert await market.balance(consumer, asset) - before[consumer] == -amount
        assert await node_nonce(market) == nonce + 3  # one transaction per delivery
        status = node.status()["payments"]
        assert status["payment_address"] == wallet and status["payment_address_valid"] is True
        assert status["refused"] == 0
        assert status["wallet_factory"] == market.factory.address
        assert status["fee_contract"] == market.fee.address
        # The provider's view (/info, status page): read at start and every 30 s; re-read now.
        await eventually(lambda: is_true(node.status()["payments"]["balances"] is not None))
        await node.payments.refresh_balances([ETH, token])
        shown = node.status()["payments"]["balances"]
        assert shown["wallet"][ETH] == {
            "unlocked_wei": str(10**16 - protocol(10**16)),
            "locked_wei": "0",
        }
        assert shown["wallet"][token]["unlocked_wei"] == str(
            5_000 + 1_700 - protocol(5_000) - protocol(1_700)
        )
        assert shown["gas_wei"] == str(await market.balance(NODE, ETH))

    # node-agent wallet show, reading the chain and the (stopped) node's journal
    async with prover_service() as (_, url):
        config = tmp_path / "config.json"
        config.write_text(json.dumps(raw_config(market, url, tmp_path, wallet)))
        argv = ["wallet", "show", "--config", str(config), "--json"]
        capsys.readouterr()
        assert await asyncio.to_thread(cli.main, argv) == 0
        shown = json.loads(capsys.readouterr().out)
        balances = {b["token"]: b for b in shown["balances"]}
        assert shown["valid"] is True and shown["owner"] == NODE
        assert balances["ETH"]["unlocked"] == str(10**16 - protocol(10**16))
        assert balances[token]["unlocked"] == str(5_000 + 1_700 - protocol(5_000) - protocol(1_700))
        assert balances[token]["locked"] == "0" and balances[token]["node_key_allowance"] == "max"
        assert await asyncio.to_thread(cli.main, ["wallet", "show", "--config", str(config)]) == 0
        text = capsys.readouterr().out
        assert wallet in text and "node key" in text and NODE_KEY[2:] not in text

        # node-agent wallet withdraw: earnings to the Wallet's owner, the node key; a
        # withdrawal that cannot succeed is refused before anything is sent
        earned_eth = 10**16 - protocol(10**16)
        earned_token = 5_000 + 1_700 - protocol(5_000) - protocol(1_700)
        withdraw = ["wallet", "withdraw", "--config", str(config)]
        nonce = await node_nonce(market)
        assert await asyncio.to_thread(cli.main, [*withdraw, "--amount", str(earned_eth + 1)]) == 1
        refused = capsys.readouterr().err
        assert f"{earned_eth} unlocked" in refused and NODE_KEY[2:] not in refused
        assert await asyncio.to_thread(cli.main, [*withdraw, "--amount", "1.5"]) == 2
        assert await asyncio.to_thread(cli.main, [*withdraw]) == 2
        assert await node_nonce(market) == nonce  # nothing sent
        capsys.readouterr()
        before = await market.balance(NODE, ETH)
        assert await asyncio.to_thread(cli.main, [*withdraw, "--amount", "1000", "--json"]) == 0
        done = json.loads(capsys.readouterr().out)
        receipt = await market.dep.chain.w3.eth.get_transaction_receipt(done["tx"])
        gas = receipt["gasUsed"] * receipt["effectiveGasPrice"]
        assert await market.balance(NODE, ETH) - before == 1000 - gas
        assert await market.balance(wallet, ETH) == earned_eth - 1000
        assert (done["to"], done["token"], done["amount"]) == (NODE, "ETH", "1000")
        assert done["unlocked_after"] == str(earned_eth - 1000) and done["locked_after"] == "0"
        held = await market.balance(NODE, token)
        argv = [*withdraw, "--token", token, "--amount", "all"]
        assert await asyncio.to_thread(cli.main, argv) == 0
        text = capsys.readouterr().out
        assert f"Withdrew {earned_token} {token}" in text and NODE_KEY[2:] not in text
        assert await market.balance(NODE, token) - held == earned_token
        assert await market.balance(wallet, token) == 0

        # Beside a running node: the node used the withdrawal's nonce first (with higher
        # fees); the command says so and stops instead of waiting for a receipt never coming.
        dep, left = market.dep, earned_eth - 1000
        await rpc(dep, "evm_setAutomine", False)
        try:
            mined = await node_nonce(market)
            running = asyncio.create_task(
                asyncio.to_thread(cli.main, [*withdraw, "--amount", "all"])
            )
            await eventually(lambda: equals(pool_nonce(market), mined + 1), what="in the pool")
            await send_at_nonce(dep, NODE_KEY, mined, 10**11, 10**11)
            await rpc(dep, "evm_mine")
            assert await running == 1
            refused = capsys.readouterr().err
            assert f"nonce {mined} of the node key was used by another transaction" in refused
            assert await market.balance(wallet, ETH) == left  # nothing left the Wallet
        finally:
            await rpc(dep, "evm_setAutomine", True)


async def test_below_floor_and_unaccepted_tokens_are_skipped_with_their_reason(
    market: Market, tmp_path: Path
) -> None:
    token = market.token.address
    stranger = market.atomic.address  # any address that is not an accepted token
    async with prover_service() as (_, url), paid_node(market, url, tmp_path) as node:
        nonce = await node_nonce(market)
        below, _ = await market.request("paid", MIN_ETH - 1, ETH)
        summed, _ = await market.request("paid,paid2", MIN_TOKEN + MIN_TOKEN_2 - 1, token)
        unaccepted, _ = await market.request("paid", 10**18, stranger)
        fine, _ = await market.request("paid", MIN_ETH, ETH)
        await eventually(lambda: equals(deliveries(market.callback), 1))
        await settle(node, market.dep)
        skipped = {s["id"]: s for s in node.status()["recent_skipped"]}
        assert set(skipped) == {below, summed, unaccepted}
        assert '"code": "below_floor"' in skipped[below]["reason"]
        assert skipped[below]["reason"].startswith("Invalid payment")
        assert f"floor {MIN_TOKEN + MIN_TOKEN_2}" in skipped[summed]["reason"]
        assert '"code": "token_not_accepted"' in skipped[unaccepted]["reason"]
        assert node.status()["skipped_subscriptions"] == 3
        assert [s.sub_id for s in await node.journal.skipped_subscriptions()] == sorted(
            skipped, reverse=True
        )
        assert [c["container"] for c in runner_calls(node)] == ["paid"]  # only the fine one
        assert await node_nonce(market) == nonce + 1
        assert (await market.callback.functions.getDelivery(fine, 1).call())[0] == NODE
        # rules are not retried: a later block (funds arriving) changes nothing
        await market.fund(market.consumer_wallet.address, ETH, 10**18)
        await settle(node, market.dep)
        assert len(runner_calls(node)) == 1 and await node_nonce(market) == nonce + 1
        status = node.status()["payments"]
        assert (status["refused"], status["waiting"]) == (0, 0)


def refusals(node: ChainService) -> dict[str, dict[str, Any]]:
    """The /info refusal entries by subscription key (the newest of each)."""
    return {r["subscription"]: r for r in node.status()["payments"]["recent_refusals"][::-1]}


async def test_a_wallet_that_cannot_pay_yet_is_served_once_it_can(
    market: Market, tmp_path: Path
) -> None:
    poor = await market.new_wallet()  # a factory Wallet with nothing in it
    stingy = await market.new_wallet()  # funded, but the consumer contract may not spend it
    await market.fund(stingy.address, ETH, 10**18)
    async with prover_service() as (_, url):
        async with paid_node(market, url, tmp_path) as node:
            nonce = await node_nonce(market)
            broke, _ = await market.request("paid", MIN_ETH, ETH, wallet=poor.address)
            unapproved, _ = await market.request("paid", MIN_ETH, ETH, wallet=stingy.address)
            jobs = (f"s:{broke}", f"s:{unapproved}")

            async def checked_again() -> bool:  # refused, and checked again with backoff
                shown = refusals(node)
                return all(job in shown and shown[job]["checks"] >= 3 for job in jobs)

            await eventually(checked_again, what="both refused and checked again")
            await settle(node, market.dep)
            shown, status = refusals(node), node.status()["payments"]
            assert shown[jobs[0]]["code"] == "consumer_underfunded"
            assert f"holds 0 unlocked ETH, the payment is {MIN_ETH}" in shown[jobs[0]]["reason"]
            assert shown[jobs[1]]["code"] == "consumer_allowance"
            assert all(shown[job]["retrying"] for job in jobs)
            # counted (and logged) once each, however often checked; nothing journaled
            assert (status["refused"], status["waiting"]) == (2, 2)
            assert await delivery_errors(node) == {}
            assert runner_calls(node) == [] and await node_nonce(market) == nonce
            assert await deliveries(market.callback) == 0

        # a restart finds both intervals not handled and checks them at once
        async with paid_node(market, url, tmp_path) as node:
            await eventually(lambda: is_true(node.status()["payments"]["waiting"] == 2))
            # the consumer tops up: delivered in the same interval, the node paid
            before = await market.balance(market.node_wallet, ETH)
            await market.fund(poor.address, ETH, MIN_ETH, market.callback.address)
            await eventually(lambda: deliveries_of(market, broke), what="topped up, delivered")
            gained = await market.balance(market.node_wallet, ETH) - before
            assert gained == MIN_ETH - protocol(MIN_ETH)
            assert await market.balance(poor.address, ETH) == 0
            # the owner approves: delivered too
            approve = market.contract("Wallet", stingy.address).functions.approve
            await market.send(approve(market.callback.address, ETH, MIN_ETH))
            await eventually(lambda: deliveries_of(market, unapproved), what="approved, delivered")
            await settle(node, market.dep)
            shown, status = refusals(node), node.status()["payments"]
            assert not any(shown[job]["retrying"] for job in jobs)
            assert all(shown[job]["cleared_at"] for job in jobs)
            assert status["waiting"] == 0
            assert await delivery_errors(node) == {job: "confirmed: None" for job in jobs}
            assert len(runner_calls(node)) == 2 and await node_nonce(market) == nonce + 2


async def test_waiting_for_funds_is_bounded_in_count_and_in_time(
    market: Market, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anyone can open paid subscriptions from an empty Wallet: waiting for funds has a cap on
    how many wait and how long (a callback request's interval never closes)."""
    from node_agent.chain import service

    monkeypatch.setattr(service, "MAX_WAITING", 1)
    monkeypatch.setattr(service, "WAIT_MAX_S", 4.0)
    poor = await market.new_wallet()
    async with prover_service() as (_, url), paid_node(market, url, tmp_path) as node:
        nonce = await node_nonce(market)
        first, _ = await market.request("paid", MIN_ETH, ETH, wallet=poor.address)
        await eventually(lambda: is_true(node.status()["payments"]["waiting"] == 1))
        second, _ = await market.request("paid", MIN_ETH, ETH, wallet=poor.address)

        async def skipped(sub_id: int) -> bool:
            error = (await delivery_errors(node)).get(f"s:{sub_id}") or ""
            return error.startswith("skipped: Invalid payment: consumer wallet")

        # the wait list is full: the second is skipped at once, with its reason
        await eventually(lambda: skipped(second), what="the second skipped at once")
        assert node.status()["payments"]["waiting"] == 1
        # the first waited its longest: skipped with its last reason, nothing ever sent
        await eventually(lambda: skipped(first), what="the first skipped after its wait")
        assert node.status()["payments"]["waiting"] == 0
        assert refusals(node)[f"s:{first}"]["checks"] >= 2
        assert runner_calls(node) == [] and await node_nonce(market) == nonce


async def test_atomic_verifier_valid_pays_and_invalid_slashes_the_node(
    market: Market, tmp_path: Path
) -> None:
    token, atomic, amount, verifier_fee = market.token.address, market.atomic, 20_000, 1_000
    await accept_good_proofs(market, verifier_fee)
    async with prover_service() as (prover, url), paid_node(market, url, tmp_path) as node:
        wallet, consumer = market.node_wallet, market.consumer_wallet.address
        escrowed = amount - protocol(amount) - verifier_fee
        # without stake in the node's Wallet the proof subscription waits, nothing computed
        refused, _ = await market.request(
            "prover", amount, token, verifier=atomic.address, inputs=b"good-proof"
        )
        await eventually(lambda: is_true(node.status()["payments"]["waiting"] == 1))
        (refusal,) = node.status()["payments"]["recent_refusals"]
        assert (refusal["subscription"], refusal["code"]) == (f"s:{refused}", "node_stake")
        assert refusal["retrying"] is True and prover.requests == []
        # the provider deposits: delivered in the same interval, its stake locked and released
        await market.fund(wallet, token, 10 * amount)
        await eventually(lambda: deliveries_of(market, refused), what="staked, delivered")
        await settle(node, market.dep)
        assert refusals(node)[f"s:{refused}"]["retrying"] is False
        assert node.status()["payments"]["waiting"] == 0
        # a "verifier" that reverts on every call (the Coordinator itself): a rule refusal,
        # skipped for good and never checked again, no crash
        hostile, _ = await market.request(
            "prover", amount, token, verifier=market.dep.coordinator.address
        )
        await eventually(lambda: is_true(node.status()["payments"]["refused"] == 2))
        refusal = node.status()["payments"]["recent_refusals"][0]
        assert (refusal["subscription"], refusal["code"]) == (f"s:{hostile}", "verifier_token")
        assert refusal["retrying"] is False and len(prover.requests) == 1
        errors = await delivery_errors(node)
        assert errors[f"s:{hostile}"].startswith("skipped: Invalid payment: verifier")

        outcomes = {}
        for inputs, valid in ((b"good-proof", True), (b"forged", False)):
            before = {
                who: await market.balance(who, token)
                for who in (DEPLOYER, wallet, consumer, VERIFIER_WALLET)
            }
            sub_id, _ = await market.request(
                "prover", amount, token, verifier=atomic.address, inputs=inputs
            )
            await eventually(lambda s=sub_id: deliveries_of(market, s))
            await settle(node, market.dep)
            record = await market.callback.functions.getDelivery(sub_id, 1).call()
            assert record[4] == inputs  # the container's proof went into the delivery
            cut = protocol(amount) + verifier_fee * FEE_BPS // 10_000
            assert await market.balance(DEPLOYER, token) - before[DEPLOYER] == cut
            verifier_net = verifier_fee - verifier_fee * FEE_BPS // 10_000
            assert await market.balance(VERIFIER_WALLET, token) - before[VERIFIER_WALLET] == (
                verifier_net
            )
            node_delta = await market.balance(wallet, token) - before[wallet]
            consumer_delta = await market.balance(consumer, token) - before[consumer]
            assert node_delta == (escrowed if valid else -amount)
            assert consumer_delta == (-amount if valid else escrowed)
            assert await market.locked(wallet, token) == 0
            assert await market.locked(consumer, token) == 0
            outcomes[sub_id] = jr.PROOF_RELEASED if valid else jr.PROOF_SLASHED

        async def settled() -> bool:
            proofs = node.status()["payments"]["proofs"]
            return bool(proofs["released"] == 2 and proofs["slashed"] == 1)

        await eventually(settled, what="proof outcomes recorded")
        recorded = {r.sub_id: r for r in await node.journal.proof_requests()}
        assert {i: r.state for i, r in recorded.items()} == {refused: jr.PROOF_RELEASED, **outcomes}
        shown = refusals(node)[f"s:{hostile}"]  # blocks and seconds later: never checked again
        assert (shown["checks"], node.status()["payments"]["refused"]) == (1, 2)
        assert all(r.finalized_by == atomic.address for r in recorded.values())
        assert node.status()["payments"]["proofs"]["open_requests"] == []


async def deliveries_of(market: Market, sub_id: int) -> bool:
    record = await market.callback.functions.getDelivery(sub_id, 1).call()
    return bool(record[0] == NODE)


async def test_optimistic_verifier_later_and_expired_requests_finalized(
    market: Market, tmp_path: Path
) -> None:
    token, optimistic, amount = market.token.address, market.optimistic, 4_000
    await market.dep.chain.call_fn(optimistic.functions.setTokenFee(token, True, 0))
    escrowed = amount - protocol(amount)

    async def deliver(inputs: bytes, node: ChainService) -> int:
        sub_id, _ = await market.request(
            "prover", amount, token, verifier=optimistic.address, inputs=inputs
        )
        await eventually(lambda: deliveries_of(market, sub_id))
        await settle(node, market.dep)
        return sub_id

    async def state_of(node: ChainService, sub_id: int, state: str) -> bool:
        rows = await node.journal.proof_requests()
        return any(r.sub_id == sub_id and r.state == state for r in rows)

    async with prover_service() as (_, url):
        async with paid_node(market, url, tmp_path) as node:
            wallet = market.node_wallet
            await market.fund(wallet, token, 10 * amount)
            start = await market.balance(wallet, token)

            # 1. decided later by the verifier
            first = await deliver(b"first", node)
            await eventually(lambda: state_of(node, first, jr.PROOF_OPEN), what="open")
            assert await market.locked(wallet, token) == amount
            proofs = node.status()["payments"]["proofs"]
            assert proofs["open"] == 1
            (shown,) = proofs["open_requests"]
            assert (shown["id"], shown["stake"], shown["token"]) == (
                first,
                str(amount),
                token.lower(),
            )
            assert shown["expiry"] >= await market.dep.chain.now() + WEEK - 60
            await market.dep.chain.call_fn(optimistic.functions.resolve(first, 1, NODE, True))
            await eventually(lambda: state_of(node, first, jr.PROOF_RELEASED), what="released")
            assert await market.locked(wallet, token) == 0
            assert await market.balance(wallet, token) - start == escrowed

            # 2. never decided: the node finalizes its own request after the expiry
            second = await deliver(b"second", node)
            await eventually(lambda: state_of(node, second, jr.PROOF_OPEN), what="open")
            nonce = await node_nonce(market)
            await market.dep.chain.advance(WEEK + 1)
            await eventually(lambda: state_of(node, second, jr.PROOF_RELEASED), what="finalized")
            assert await node_nonce(market) == nonce + 1  # its finalizeProofVerification
            (row,) = [r for r in await node.journal.proof_requests() if r.sub_id == second]
            assert row.finalized_by == NODE
            assert await market.balance(wallet, token) - start == 2 * escrowed

            # 3. the node is down when the request expires; someone else finalizes it
            third = await deliver(b"third", node)
            await eventually(lambda: state_of(node, third, jr.PROOF_OPEN), what="open")
        await market.dep.chain.advance(WEEK + 1)
        finalize = market.dep.coordinator.functions.finalizeProofVerification(third, 1, NODE, False)
        await market.send(finalize, THIRD_PARTY)  # after the expiry: in the node's favour
        async with paid_node(market, url, tmp_path) as node:
            await eventually(lambda: state_of(node, third, jr.PROOF_RELEASED), what="seen")
            (row,) = [r for r in await node.journal.proof_requests() if r.sub_id == third]
            assert row.finalized_by == THIRD_PARTY
            assert await market.locked(wallet, token) == 0
            assert await market.balance(wallet, token) - start == 3 * escrowed
            proofs = node.status()["payments"]["proofs"]
            assert (proofs["released"], proofs["open"], proofs["pending"]) == (3, 0, 0)


async def test_redundancy_two_paid_nodes_each_paid_from_one_consumer_wallet(
    market: Market, tmp_path: Path
) -> None:
    second_key = KEYS[2]
    await market.dep.chain.w3.provider.make_request(  # type: ignore[arg-type]
        "anvil_setBalance", [Account.from_key(second_key).address, hex(10**20)]
    )
    token, amount = market.token.address, 8_000
    async with (
        prover_service() as (prover, url),
        paid_node(market, url, tmp_path / "a") as first,
        paid_node(market, url, tmp_path / "b", second_key) as second,
    ):
        wallets = [market.wallets[NODE_KEY], market.wallets[second_key]]
        assert wallets[0] != wallets[1]
        consumer = market.consumer_wallet.address
        before = {w: await market.balance(w, token) for w in (*wallets, consumer, DEPLOYER)}
        sub_id, _ = await market.request("paid", amount, token, redundancy=2)
        await eventually(lambda: equals(deliveries(market.callback), 2), what="both delivered")
        for node in (first, second):
            await settle(node, market.dep)
        record = await market.callback.functions.getDelivery(sub_id, 1).call()
        assert record[1] == 2  # the second delivery saw redundancy count 2
        for wallet in wallets:  # each node paid once, into its own Wallet
            assert await market.balance(wallet, token) - before[wallet] == amount - protocol(amount)
        assert await market.balance(consumer, token) - before[consumer] == -2 * amount
        assert await market.balance(DEPLOYER, token) - before[DEPLOYER] == 2 * protocol(amount)
        assert len(prover.requests) == 2


# --- delegated (real daemon, real infernet-client) and kill -9 (real agent processes) ----------


def signed_body(
    sub: Any, *, nonce: int, expiry: int, key: str, chain_id: int, coordinator: str
) -> dict[str, Any]:
    """What infernet-client 1.4.0 POSTs for a delegated subscription."""
    typed = sub.get_delegate_subscription_typed_data(nonce, expiry, chain_id, coordinator)
    signed = Account.sign_message(typed, key)
    signature = {"nonce": nonce, "expiry": expiry, "v": signed.v, "r": signed.r, "s": signed.s}
    return {"subscription": sub.serialized, "signature": signature, "data": {"x": 1}}


async def test_delegated_paid_subscription_is_checked_before_the_reply(
    market: Market, tmp_path: Path
) -> None:
    dep, signer = market.dep, Account.from_key(KEYS[3])
    delegator = await dep.chain.deploy(
        "ExampleDelegatorConsumer", dep.registry.address, signer.address
    )
    consumer = market.consumer_wallet
    await market.send(consumer.functions.approve(delegator.address, ETH, 10**17))
    poor = await market.new_wallet()
    subscription = load_subscription_class()
    chain_id, coordinator = await dep.chain.w3.eth.chain_id, dep.coordinator.address
    now = await dep.chain.now()

    def sub(amount: int, wallet: str) -> Any:
        return subscription(
            delegator.address, now - 1, 0, 1, 1, ["paid"], False, ETH, amount, ETH, wallet
        )

    async with prover_service() as (prover, url):
        wallet = await create_node_wallet(market, url, tmp_path)
        raw = raw_config(market, url, tmp_path / "state", wallet)
        async with (
            running_agent(raw, tmp_path) as (_, base),
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
        ):
            await eventually(lambda: chain_ready(http, base), what="chain ready in /info")
            refusals = {
                "below_floor": sub(MIN_ETH - 1, consumer.address),
                "consumer_underfunded": sub(MIN_ETH, poor.address),
            }
            for nonce, (code, refused) in enumerate(refusals.items(), start=1):
                body = signed_body(
                    refused,
                    nonce=nonce,
                    expiry=now + 600,
                    key=signer.key.hex(),
                    chain_id=chain_id,
                    coordinator=coordinator,
                )
                async with http.post(f"{base}/api/jobs", json=body) as response:
                    assert response.status == 400
                    answer = await response.json()
                assert answer["error"] == "Invalid payment"
                assert answer["params"]["code"] == code and answer["params"]["reason"]
            assert prover.requests == []

            before = await market.balance(wallet, ETH)
            amount = 3 * MIN_ETH
            client = load_node_client()(base)
            await client.request_delegated_subscription(
                sub(amount, consumer.address),
                ChainIdOnly(chain_id),
                coordinator,
                now + 600,
                3,
                "0x" + signer.key.hex().removeprefix("0x"),
                {"prompt": "paid"},
            )
            await eventually(lambda: equals(deliveries(delegator), 1), what="delegated paid")
            assert await market.balance(wallet, ETH) - before == amount - protocol(amount)
            assert [r["data"] for r in prover.requests] == [{"prompt": "paid"}]


async def chain_ready(http: aiohttp.ClientSession, base: str) -> bool:
    async with http.get(f"{base}/info") as response:
        info = await response.json()
    return bool(info["chain"].get("ready"))


async def test_kill_9_between_paid_broadcast_and_receipt_never_delivers_or_locks_twice(
    market: Market, anvil: Anvil, tmp_path: Path
) -> None:
    dep, token, amount = market.dep, market.token.address, 6_000
    await dep.chain.call_fn(market.optimistic.functions.setTokenFee(token, True, 0))
    consumer = await dep.chain.deploy(
        "ExampleSubscriptionConsumer", dep.registry.address, b"proof-bytes"
    )
    await market.send(market.consumer_wallet.functions.approve(consumer.address, token, amount))
    create = consumer.functions.createPaidSubscription(
        "prover",
        1,
        PERIOD,
        1,
        False,
        token,
        amount,
        market.consumer_wallet.address,
        market.optimistic.address,
    )
    await dep.chain.call_fn(create)
    agent = await funded_agent(dep, tmp_path, NODE_KEY)
    async with prover_service() as (prover, url), http_client() as http:
        wallet = await create_node_wallet(market, url, tmp_path / "setup")
        await market.fund(wallet, token, 10 * amount)
        agent.configure(url, anvil, dep.registry.address)
        path = agent.workdir / "config.yaml"
        config = json.loads(path.read_text())
        config["containers"] = raw_config(market, url, agent.state, wallet)["containers"]
        config["chain"]["wallet"]["payment_address"] = wallet
        path.write_text(json.dumps(config))
        nonce = await node_nonce(market)
        tx_hash = await agent.kill_9_after_broadcast(http, dep)
        assert len(prover.requests) == 1

        async with agent.run():
            await eventually(lambda: agent.tracking(http, 1), what="restarted agent up")
            await rpc(dep, "evm_mine")
            await rpc(dep, "evm_setAutomine", True)
            await eventually(lambda: equals(deliveries(consumer), 1))
            await eventually(lambda: agent.settled(http, dep), what="restarted agent settled")

            async def proof_open() -> bool:
                proofs = (await agent.chain_info(http))["payments"]["proofs"]
                return bool(proofs["open"] == 1 and proofs["pending"] == 0)

            await eventually(proof_open, what="the stake followed as an open proof request")
            assert (await dep.chain.w3.eth.get_transaction_receipt(tx_hash))["status"] == 1
            assert agent.journaled_txs() == [tx_hash]
            assert len(prover.requests) == 1  # never recomputed
            assert await node_nonce(market) == nonce + 1
            assert await market.locked(wallet, token) == amount  # locked once, not twice
            record = await consumer.functions.getDelivery(1, 1).call()
            assert record[4] == b"proof-bytes"


# --- /metrics and /info of a real agent taking payments --------------------------------------


async def accept_good_proofs(market: Market, fee: int) -> None:
    """The atomic example verifier takes ``fee`` in the token and accepts b"good-proof"."""
    atomic, token = market.atomic.functions, market.token.address
    for fn in (
        atomic.setTokenFee(token, True, fee),
        atomic.setFeeWallet(VERIFIER_WALLET),
        atomic.setProofAccepted(market.dep.chain.w3.keccak(b"good-proof"), True),
    ):
        await market.dep.chain.call_fn(fn)


PAYMENT_SERIES = tuple(
    f"node_agent_chain_{part}_"
    for part in ("paid", "payment", "payments", "proof", "wallet", "gas", "balances")
)


async def paid_series(http: aiohttp.ClientSession, base: str) -> dict[tuple[str, str], float]:
    """The payment samples of one scrape, parsed as Prometheus parses it: (name, label) ->
    value, the label being the token, code, outcome or state ("" for none)."""
    async with http.get(f"{base}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(PAYMENT_SERIES):
                (label,) = sample.labels.values() or ("",)
                found[(sample.name, label)] = sample.value
    return found


async def test_paid_deliveries_refusals_proofs_and_wallet_in_metrics_and_info(
    market: Market, tmp_path: Path
) -> None:
    token, atomic, stake, verifier_fee = market.token.address, market.atomic, 20_000, 1_000
    await accept_good_proofs(market, verifier_fee)
    poor = await market.new_wallet()
    async with prover_service() as (_, url):
        wallet = await create_node_wallet(market, url, tmp_path)
        await market.fund(wallet, token, 10 * stake)
        raw = raw_config(market, url, tmp_path / "state", wallet)
        async with (
            running_agent(raw, tmp_path) as (daemon, base),
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
        ):
            await eventually(lambda: chain_ready(http, base), what="chain ready in /info")
            before = await paid_series(http, base)
            assert before[("node_agent_chain_proof_outcomes_total", "released")] == 0
            assert before[("node_agent_chain_proof_requests", "open")] == 0
            assert not any(name == "node_agent_chain_paid_deliveries_total" for name, _ in before)

            paid_eth, _ = await market.request("paid", 10**16, ETH)
            proven, _ = await market.request(
                "prover", stake, token, verifier=atomic.address, inputs=b"good-proof"
            )
            await market.request("paid", MIN_ETH, ETH, wallet=poor.address)  # cannot pay

            async def all_seen() -> bool:
                series = await paid_series(http, base)
                return (
                    series.get(("node_agent_chain_paid_deliveries_total", token)) == 1
                    and series.get(("node_agent_chain_paid_deliveries_total", ETH)) == 1
                    and series.get(("node_agent_chain_proof_outcomes_total", "released")) == 1
                    and ("node_agent_chain_payment_refusals_total", "consumer_underfunded")
                    in series
                )

            await eventually(all_seen, what="paid deliveries, refusal and proof in /metrics")
            assert await deliveries_of(market, paid_eth) and await deliveries_of(market, proven)
            # read every 30 s; now, on the chain's loop
            await daemon.chain.call("refresh_balances", [ETH, token])
            series = await paid_series(http, base)
            assert series[("node_agent_chain_paid_amount_total", ETH)] == 10**16  # gross
            assert series[("node_agent_chain_paid_amount_total", token)] == stake
            # once, however often the delivery waiting on it is checked again
            assert series[("node_agent_chain_payment_refusals_total", "consumer_underfunded")] == 1
            assert series[("node_agent_chain_proof_outcomes_total", "slashed")] == 0
            assert series[("node_agent_chain_proof_requests", "open")] == 0
            escrowed = stake - protocol(stake) - verifier_fee
            assert series[("node_agent_chain_wallet_unlocked_balance", ETH)] == (
                10**16 - protocol(10**16)
            )
            assert (
                series[("node_agent_chain_wallet_unlocked_balance", token)] == 10 * stake + escrowed
            )
            assert series[("node_agent_chain_wallet_locked_balance", token)] == 0
            assert series[("node_agent_chain_gas_balance_wei", "")] == float(
                await market.balance(NODE, ETH)
            )
            assert series[("node_agent_chain_balances_read_timestamp_seconds", "")] > 0

            # /info's chain.payments as the OpenAPI document describes it
            async with http.get(f"{base}/info") as response:
                payments = (await response.json())["chain"]["payments"]
            # closed here (open for clients): the node sends no field the document leaves out
            doc = openapi.build()
            for name in ("ChainPayments", "PaymentRefusal", "ProofRequest"):
                doc["components"]["schemas"][name]["additionalProperties"] = False
            schema = {"$ref": "#/components/schemas/ChainPayments", **doc}
            errors = [e.message for e in Draft202012Validator(schema).iter_errors(payments)]
            assert not errors, (errors[:3], payments)
            assert payments["balances"]["wallet"][token]["unlocked_wei"] == str(
                10 * stake + escrowed
            )
            (refusal,) = payments["recent_refusals"]
            assert (refusal["code"], refusal["retrying"]) == ("consumer_underfunded", True)
            assert series[("node_agent_chain_payments_waiting", "")] == payments["waiting"] == 1
            (released,) = payments["proofs"]["recent"]
            assert (released["id"], released["state"]) == (proven, "released")
