"""`make demo`, on-chain part: a local devnet, the contracts, and node-agent fulfilling them.

Starts anvil (a block per second), deploys the Coordinator/Inbox/Reader/Registry and the example
consumers, restarts the demo's node-agent with ``chain.enabled: true`` (same containers), then
acts as a consumer and as a client would:

- the ExampleSubscriptionConsumer contract creates a recurring subscription (3 intervals);
- a client signs a delegated subscription (EIP-712, as infernet-client does) for the
  ExampleDelegatorConsumer and POSTs it to ``/api/jobs``; a wrongly signed one is refused;

waits for the deliveries, reads the outputs back from the chain and prints them with their
transaction hashes. Then a paid subscription: the node is stopped, ``node-agent wallet create``
makes its Wallet, the config gets ``payment_address`` and ``accepted_payments`` (ETH, for
demo-transform) and the node restarts; the deployer sets the protocol fee, a consumer creates and
funds its own Wallet through the WalletFactory and lets the consumer contract spend it, opens a paid
subscription (3 intervals), and every paid delivery is printed with the node Wallet's balance and
the fee recipient's cut (read at the delivery's block); ``node-agent wallet show`` and ``wallet
withdraw`` (the earnings to the node key) end it.
Everything is stopped (agent, then anvil) — also on errors and Ctrl-C.

    .venv/bin/python scripts/demo_chain.py --config .demo/config.yaml --port 4000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from eth_abi.abi import decode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.address import to_checksum_address
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.contract import AsyncContract
from web3.contract.async_contract import AsyncContractFunction
from web3.logs import DISCARD

from node_agent.chain import eip712
from node_agent.chain.deploy import Deployment, load_artifact
from node_agent.chain.devnet import (
    DELEGATE_SIGNER_KEY,
    DEPLOYER_KEY,
    NODE_KEYS,
    Anvil,
    deploy_devnet,
    start_anvil,
)
from node_agent.chain.subscription import Subscription
from node_agent.chain.tools import build_contracts

ROOT = Path(__file__).resolve().parents[1]
CONTAINER = "demo-echo"  # the free subscriptions (--free-container)
PERIOD, FREQUENCY = 6, 3  # recurring subscription: 3 intervals of 6 s
ZERO = "0x" + "00" * 20  # also ETH as a payment token
PAID_CONTAINER = "demo-transform"  # the container that asks for payment (--paid-container)
PAID_FREQUENCY = 3
PRICE, FLOOR = 10**16, 10**15  # wei per paid delivery; the node's floor (accepted_payments)
FEE_BPS = 500  # Fee.updateFee: 5 %; the Coordinator takes 2 x FEE of each payment
CONSUMER_KEY = "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a"  # anvil #4


def log(message: str) -> None:
    print(f"\n[demo-chain] {message}", file=sys.stderr, flush=True)


def show(title: str, value: Any) -> None:
    print(f"\n== {title}\n{json.dumps(value, indent=2)}", flush=True)


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.5)
    raise SystemExit(f"[demo-chain] timed out waiting for {what}; see the agent.log")


async def transact(
    w3: AsyncWeb3[Any], key: str, call: AsyncContractFunction | None, **tx: Any
) -> Any:
    """Sign and send a call (or a plain ``to``/``value`` transfer) as its owner would; the
    receipt once mined."""
    account = Account.from_key(key)
    fields: Any = {
        **tx,
        "from": account.address,
        "nonce": await w3.eth.get_transaction_count(account.address, "pending"),
    }
    if call is not None:
        fields = await call.build_transaction(fields)
    else:
        fields["gas"] = await w3.eth.estimate_gas(fields)
        fields["maxFeePerGas"] = await w3.eth.gas_price * 2
        fields["maxPriorityFeePerGas"] = 10**9
        fields["chainId"] = await w3.eth.chain_id
    signed = account.sign_transaction(fields)
    tx_hash = await w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
    assert receipt["status"] == 1, receipt
    return receipt


async def send(w3: AsyncWeb3[Any], key: str, call: AsyncContractFunction) -> str:
    """Sign and send a call as a consumer's owner would; returns the tx hash once mined."""
    return str((await transact(w3, key, call))["transactionHash"].to_0x_hex())


def delegated_body(
    owner: str, chain_id: int, coordinator: str, now: int, key: str, nonce: int, container: str
) -> dict[str, Any]:
    """The JSON infernet-client 1.4.0 POSTs for a delegated subscription, signed the same way
    (the same EIP-712 typed data; tests/chain checks it against the client's own code)."""
    sub = Subscription(
        owner=owner,
        active_at=now,
        period=0,
        frequency=1,
        redundancy=1,
        container_id=eip712.container_set_hash([container]),
        lazy=False,
        verifier=ZERO,
        payment_amount=0,
        payment_token=ZERO,
        wallet=ZERO,
    )
    expiry = now + 3600
    typed = eip712.typed_data(
        sub, nonce=nonce, expiry=expiry, chain_id=chain_id, coordinator=coordinator
    )
    signed = Account.sign_message(encode_typed_data(full_message=typed), key)
    wire = sub.to_json()
    wire["containers"] = wire.pop("container_id").removeprefix("0x")  # as the client sends it
    return {
        "signature": {
            "nonce": nonce,
            "expiry": expiry,
            "v": signed.v,
            "r": int(signed.r),
            "s": int(signed.s),
        },
        "subscription": wire,
        "data": {"prompt": "hello from a delegated subscription"},
    }


def readable(output: bytes) -> Any:
    """Outputs are abi.encode(string) of compact JSON (docs/chain.md); un-hex echoed inputs."""
    (text,) = decode(["string"], output)
    value = json.loads(text)
    echoed = value.get("output") if isinstance(value, dict) else None
    if isinstance(echoed, str):
        with contextlib.suppress(ValueError):
            value["output_as_text"] = bytes.fromhex(echoed).decode()
    return value


async def deliveries(contract: AsyncContract) -> list[dict[str, Any]]:
    """Every delivery a consumer received, read back from the chain (events + storage)."""
    events = await contract.events.OutputReceived.get_logs(from_block=0)
    found = []
    for event in events:
        sub_id, interval = event["args"]["subscriptionId"], event["args"]["interval"]
        record = await contract.functions.getDelivery(sub_id, interval).call()
        found.append(
            {
                "subscription": sub_id,
                "interval": interval,
                "node": event["args"]["node"],
                "tx": event["transactionHash"].to_0x_hex(),
                "block": event["blockNumber"],
                "output": readable(record[3]),
            }
        )
    return found


class Agent:
    """node-agent as its own process (SIGTERM stops it gracefully, containers included)."""

    def __init__(self, config: Path, state: Path, log_path: Path) -> None:
        self.config, self.state, self.log_path = config, state, log_path
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                str(ROOT / ".venv" / "bin" / "node-agent"),
                *("run", "--config", str(self.config), "--state-dir", str(self.state)),
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        log("stopping node-agent (SIGTERM)")
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 90)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


def chain_config(
    base: Path,
    port: int,
    anvil: Anvil,
    registry: str,
    key_file: Path,
    *,
    paid: str | None = None,
    payment_address: str | None = None,
) -> Path:
    """The demo's own node config (same containers), with the chain enabled; ``paid``: the
    container that asks for at least FLOOR wei in ETH; ``payment_address``: the node's Wallet."""
    raw = yaml.safe_load(base.read_text())
    raw["server"] = {**raw.get("server", {}), "port": port}
    wallet: dict[str, Any] = {"private_key": {"file": str(key_file)}, "max_fee_per_gas_gwei": 100}
    if payment_address is not None:
        wallet["payment_address"] = payment_address
    if paid:
        for container in raw["containers"]:
            if container["id"] == paid:
                container["accepted_payments"] = {ZERO: FLOOR}
    raw["chain"] = {
        "enabled": True,
        "rpc_url": anvil.url,
        "registry_address": registry,
        "trail_head_blocks": 0,
        "wallet": wallet,
        "snapshot_sync": {"sync_period": 0.25},
    }
    path = key_file.parent / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


async def node_agent_cli(*argv: str) -> str:
    """Run a ``node-agent`` command as an operator would; its stdout (exit if it fails)."""
    process = await asyncio.create_subprocess_exec(
        str(ROOT / ".venv" / "bin" / "node-agent"),
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"[demo-chain] node-agent {' '.join(argv[:2])} failed: {err.decode()}")
    return out.decode()


class Node:
    """The running node as a client sees it (HTTP)."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http, self.url = http, url

    async def get(self, path: str) -> Any:
        async with self.http.get(f"{self.url}{path}") as response:
            return await response.json()

    async def ready(self, container: str) -> bool:
        """The chain connected and ``container`` running."""
        try:
            health = await self.get("/health")
            info = await self.get("/info")
        except aiohttp.ClientError:
            return False
        running = {c["id"] for c in info["containers"]}
        return bool(
            health["checks"].get("chain", {}).get("status") == "ok" and container in running
        )


def eth(wei: int) -> str:
    return f"{wei / 10**18:.6f} ETH"


class Paid:
    """The paid part: node Wallet, configuration, Fee, consumer Wallet, paid subscription."""

    def __init__(
        self,
        w3: AsyncWeb3[Any],
        deployment: Deployment,
        consumer: AsyncContract,
        agent: Agent,
        node: Node,
        container: str,
    ) -> None:
        self.w3, self.deployment, self.consumer = w3, deployment, consumer
        self.container = container
        self.agent, self.node = agent, node
        self.recipient = ZERO  # the Fee's recipient, read in subscribe()

    def contract(self, name: str, address: str) -> AsyncContract:
        return self.w3.eth.contract(
            address=to_checksum_address(address), abi=load_artifact(name).abi
        )

    async def node_wallet(self, base: Path, port: int, anvil: Anvil, key_file: Path) -> str:
        """``node-agent wallet create`` (node stopped: it signs with the node key), then the
        node restarted with ``payment_address`` and ``accepted_payments``."""
        registry = self.deployment.registry
        log("paid part: stopping node-agent to create its Wallet (signed with the node key)")
        await self.agent.stop()
        config = chain_config(base, port, anvil, registry, key_file, paid=self.container)
        created = json.loads(
            await node_agent_cli("wallet", "create", "--config", str(config), "--json")
        )
        show("node-agent wallet create --json", created)
        wallet = str(created["payment_address"])
        chain_config(
            base, port, anvil, registry, key_file, paid=self.container, payment_address=wallet
        )
        show(
            "node config: chain.wallet.payment_address and accepted_payments",
            {
                "payment_address": wallet,
                "containers": {self.container: {"accepted_payments": {ZERO: FLOOR}}},
            },
        )
        log(f"restarting node-agent with payments (log: {self.agent.log_path})")
        await self.agent.start()
        await until(lambda: self.node.ready(self.container), "node-agent back with payments", 180)
        return wallet

    async def subscribe(self) -> tuple[int, str, int]:
        """Fee at FEE_BPS (deployer); the consumer's Wallet created, funded, the consumer contract
        approved; the paid subscription: (its id, the consumer's Wallet, the block it started)."""
        registry = self.contract("Registry", self.deployment.registry).functions
        fee = self.contract("Fee", await registry.FEE().call())
        factory = self.contract("WalletFactory", await registry.WALLET_FACTORY().call())
        await transact(self.w3, DEPLOYER_KEY, fee.functions.updateFee(FEE_BPS))
        recipient = await fee.functions.FEE_RECIPIENT().call()
        owner = Account.from_key(CONSUMER_KEY).address
        receipt = await transact(self.w3, CONSUMER_KEY, factory.functions.createWallet(owner))
        (made,) = factory.events.WalletCreated().process_receipt(receipt, errors=DISCARD)
        wallet = made["args"]["wallet"]
        budget = PRICE * PAID_FREQUENCY
        await transact(self.w3, CONSUMER_KEY, None, to=wallet, value=budget)
        approve = self.contract("Wallet", wallet).functions.approve(
            self.consumer.address, ZERO, budget
        )
        await transact(self.w3, CONSUMER_KEY, approve)
        receipt = await transact(
            self.w3,
            CONSUMER_KEY,
            self.consumer.functions.createPaidSubscription(
                self.container, PAID_FREQUENCY, PERIOD, 1, False, ZERO, PRICE, wallet, ZERO
            ),
        )
        coordinator = self.contract("Coordinator", self.deployment.coordinator)
        (created,) = coordinator.events.SubscriptionCreated().process_receipt(
            receipt, errors=DISCARD
        )
        sub_id = int(created["args"]["id"])
        show(
            "paid subscription",
            {
                "fee": {
                    "bps": FEE_BPS,
                    "protocol_cut": f"2 x FEE = {2 * FEE_BPS / 100:g} %",
                    "recipient": recipient,
                },
                "consumer_wallet": {
                    "address": wallet,
                    "owner": owner,
                    "funded": eth(budget),
                    "spender_approved": self.consumer.address,
                },
                "subscription": {
                    "id": sub_id,
                    "container": self.container,
                    "intervals": PAID_FREQUENCY,
                    "period_seconds": PERIOD,
                    "payment_per_delivery": eth(PRICE),
                    "node_floor": eth(FLOOR),
                    "tx": receipt["transactionHash"].to_0x_hex(),
                },
            },
        )
        self.recipient = recipient
        return sub_id, wallet, int(receipt["blockNumber"])

    async def follow(self, sub_id: int, node_wallet: str, consumer_wallet: str, start: int) -> None:
        """One line per paid delivery as it lands: balances at its block and just before."""
        seen: set[int] = set()
        print(f"\n== paid deliveries of subscription {sub_id} (balances at each delivery's block)")
        print(
            f"{'interval':>8}  {'node Wallet':>16}  {'paid to node':>14}  {'fee cut':>14}  "
            f"{'consumer Wallet':>16}  delivery tx",
            flush=True,
        )

        async def balance(who: str, block: int) -> int:
            return int(await self.w3.eth.get_balance(who, block_identifier=block))  # type: ignore[arg-type]

        async def all_paid() -> bool:
            events = await self.consumer.events.OutputReceived.get_logs(from_block=start)
            for event in events:
                interval = int(event["args"]["interval"])
                if event["args"]["subscriptionId"] != sub_id or interval in seen:
                    continue
                seen.add(interval)
                block = int(event["blockNumber"])
                now = {w: await balance(w, block) for w in (node_wallet, self.recipient)}
                was = {w: await balance(w, block - 1) for w in (node_wallet, self.recipient)}
                print(
                    f"{interval:>8}  {eth(now[node_wallet]):>16}  "
                    f"{'+' + eth(now[node_wallet] - was[node_wallet]):>14}  "
                    f"{'+' + eth(now[self.recipient] - was[self.recipient]):>14}  "
                    f"{eth(await balance(consumer_wallet, block)):>16}  "
                    f"{event['transactionHash'].to_0x_hex()[:18]}…",
                    flush=True,
                )
            return len(seen) >= PAID_FREQUENCY

        await until(all_paid, "the paid deliveries", PERIOD * PAID_FREQUENCY + 120)


async def run(base_config: Path, port: int, work: Path, free: str, paid_container: str) -> None:
    log("building the contracts (forge build, cached)")
    await asyncio.to_thread(build_contracts)
    anvil = await asyncio.to_thread(start_anvil, "--block-time", "1")
    agent: Agent | None = None
    w3 = AsyncWeb3(AsyncHTTPProvider(anvil.url, request_kwargs={"timeout": 30}))
    try:
        log(f"anvil devnet on {anvil.url} (chain id {anvil.chain_id}, a block per second)")
        deployment, examples = await deploy_devnet(anvil.url, b"hello from the chain")
        show("deployed", {**deployment.to_dict(), "examples": examples.to_dict()})

        key_file = work / "node.key"  # anvil's public test key #1; a real key: {file: ...} too
        key_file.write_text(NODE_KEYS[0] + "\n")
        key_file.chmod(0o600)
        config = chain_config(base_config, port, anvil, deployment.registry, key_file)
        agent = Agent(config, work / "state", work / "agent.log")
        log(f"starting node-agent with chain.enabled on port {port} (log: {agent.log_path})")
        await agent.start()
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            node = Node(http, url)
            get = node.get
            await until(lambda: node.ready(free), "node-agent, its containers and the chain", 180)
            show("GET /health -> checks.chain", (await get("/health"))["checks"]["chain"])

            consumer = w3.eth.contract(
                address=to_checksum_address(examples.subscription),
                abi=load_artifact("ExampleSubscriptionConsumer").abi,
            )
            delegator = w3.eth.contract(
                address=to_checksum_address(examples.delegator),
                abi=load_artifact("ExampleDelegatorConsumer").abi,
            )
            tx = await send(
                w3,
                DEPLOYER_KEY,
                consumer.functions.createSubscription(free, FREQUENCY, PERIOD, 1, False),
            )
            show(
                "consumer contract: createSubscription",
                {
                    "consumer": examples.subscription,
                    "container": free,
                    "intervals": FREQUENCY,
                    "period_seconds": PERIOD,
                    "tx": tx,
                },
            )

            now = int((await w3.eth.get_block("latest"))["timestamp"])
            wrong = delegated_body(
                examples.delegator,
                deployment.chain_id,
                deployment.coordinator,
                now,
                NODE_KEYS[1],
                nonce=1,
                container=free,
            )
            async with http.post(f"{url}/api/jobs", json=wrong) as response:
                show(
                    f"POST /api/jobs, delegated, signed by the wrong key -> {response.status}",
                    await response.json(),
                )
            good = delegated_body(
                examples.delegator,
                deployment.chain_id,
                deployment.coordinator,
                now,
                DELEGATE_SIGNER_KEY,
                nonce=1,
                container=free,
            )
            async with http.post(f"{url}/api/jobs", json=good) as response:
                show(
                    f"POST /api/jobs, delegated subscription -> {response.status}",
                    await response.json(),
                )

            async def all_delivered() -> bool:
                recurring = await consumer.functions.deliveryCount().call()
                delegated = await delegator.functions.deliveryCount().call()
                return bool(recurring >= FREQUENCY and delegated >= 1)

            log(f"waiting for {FREQUENCY} recurring deliveries and 1 delegated delivery")
            await until(all_delivered, "the deliveries", PERIOD * FREQUENCY + 120)
            show(
                "delivered to the subscription consumer (read back from the chain)",
                await deliveries(consumer),
            )
            show(
                "delivered to the delegator consumer (read back from the chain)",
                await deliveries(delegator),
            )
            chain = (await get("/info"))["chain"]
            show("GET /info -> chain", chain)

            paid = Paid(w3, deployment, consumer, agent, node, paid_container)
            node_wallet = await paid.node_wallet(base_config, port, anvil, key_file)
            sub_id, consumer_wallet, start = await paid.subscribe()
            log(f"waiting for {PAID_FREQUENCY} paid deliveries, one every {PERIOD} s")
            await paid.follow(sub_id, node_wallet, consumer_wallet, start)
            payments = (await get("/info"))["chain"]["payments"]
            show(
                "GET /info -> chain.payments",
                {k: v for k, v in payments.items() if k != "proofs"},
            )
            await agent.stop()  # wallet show reads the journal and signs nothing; a clean end
            shown = await node_agent_cli(
                "wallet", "show", "--config", str(agent.config), "--state-dir", str(agent.state)
            )
            print(f"\n== node-agent wallet show\n{shown}", flush=True)
            withdrawn = await node_agent_cli(
                "wallet", "withdraw", "--amount", "all", "--config", str(agent.config)
            )
            print(f"\n== node-agent wallet withdraw --amount all\n{withdrawn}", flush=True)
    finally:
        if agent is not None:
            await agent.stop()
        await w3.provider.disconnect()
        log("stopping anvil")
        anvil.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description="on-chain part of make demo")
    parser.add_argument("--config", type=Path, required=True, help="the demo's node config")
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", 4000)))
    parser.add_argument("--work", type=Path, default=ROOT / ".demo" / "chain", help="its files")
    parser.add_argument("--free-container", default=CONTAINER, help="served for free")
    parser.add_argument("--paid-container", default=PAID_CONTAINER, help="asks for payment")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    asyncio.run(run(args.config, args.port, args.work, args.free_container, args.paid_container))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
