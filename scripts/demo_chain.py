"""`make demo`, on-chain part: a local devnet, the contracts, and node-agent fulfilling them.

Starts anvil (a block per second), deploys the Coordinator/Inbox/Reader/Registry and the example
consumers, restarts the demo's node-agent with ``chain.enabled: true`` (same containers), then
acts as a consumer and as a client would:

- the ExampleSubscriptionConsumer contract creates a recurring subscription (3 intervals);
- a client signs a delegated subscription (EIP-712, as infernet-client does) for the
  ExampleDelegatorConsumer and POSTs it to ``/api/jobs``; a wrongly signed one is refused;

waits for the deliveries, reads the outputs back from the chain and prints them with their
transaction hashes, and stops everything (agent, then anvil) — also on errors and Ctrl-C.

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
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.contract import AsyncContract
from web3.contract.async_contract import AsyncContractFunction

from node_agent.chain import eip712
from node_agent.chain.deploy import load_artifact
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
CONTAINER = "demo-echo"
PERIOD, FREQUENCY = 6, 3  # recurring subscription: 3 intervals of 6 s
ZERO = "0x" + "00" * 20


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
    raise SystemExit(f"[demo-chain] timed out waiting for {what}; see .demo/chain/agent.log")


async def send(w3: AsyncWeb3[Any], key: str, call: AsyncContractFunction) -> str:
    """Sign and send a call as a consumer's owner would; returns the tx hash once mined."""
    account = Account.from_key(key)
    tx = await call.build_transaction(
        {
            "from": account.address,
            "nonce": await w3.eth.get_transaction_count(account.address, "pending"),
        }
    )
    signed = account.sign_transaction(tx)  # type: ignore[arg-type]
    tx_hash = await w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
    assert receipt["status"] == 1, receipt
    return tx_hash.to_0x_hex()


def delegated_body(
    owner: str, chain_id: int, coordinator: str, now: int, key: str, nonce: int
) -> dict[str, Any]:
    """The JSON infernet-client 1.4.0 POSTs for a delegated subscription, signed the same way
    (the same EIP-712 typed data; tests/chain checks it against the client's own code)."""
    sub = Subscription(
        owner=owner,
        active_at=now,
        period=0,
        frequency=1,
        redundancy=1,
        container_id=eip712.container_set_hash([CONTAINER]),
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


def chain_config(base: Path, port: int, anvil: Anvil, registry: str, key_file: Path) -> Path:
    """The demo's own node config (same containers), with the chain enabled."""
    raw = yaml.safe_load(base.read_text())
    raw["server"] = {**raw.get("server", {}), "port": port}
    raw["chain"] = {
        "enabled": True,
        "rpc_url": anvil.url,
        "registry_address": registry,
        "trail_head_blocks": 0,
        "wallet": {"private_key": {"file": str(key_file)}, "max_fee_per_gas_gwei": 100},
        "snapshot_sync": {"sync_period": 0.25},
    }
    path = key_file.parent / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


async def run(base_config: Path, port: int) -> None:
    work = ROOT / ".demo" / "chain"
    work.mkdir(parents=True, exist_ok=True)
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

            async def get(path: str) -> Any:
                async with http.get(f"{url}{path}") as response:
                    return await response.json()

            async def chain_ready() -> bool:
                try:
                    health = await get("/health")
                    info = await get("/info")
                except aiohttp.ClientError:
                    return False
                running = {c["id"] for c in info["containers"]}
                return bool(
                    health["checks"].get("chain", {}).get("status") == "ok" and CONTAINER in running
                )

            await until(chain_ready, "node-agent, its containers and the chain", 180)
            show("GET /health -> checks.chain", (await get("/health"))["checks"]["chain"])

            consumer = w3.eth.contract(
                address=examples.subscription,  # type: ignore[arg-type]
                abi=load_artifact("ExampleSubscriptionConsumer").abi,
            )
            delegator = w3.eth.contract(
                address=examples.delegator,  # type: ignore[arg-type]
                abi=load_artifact("ExampleDelegatorConsumer").abi,
            )
            tx = await send(
                w3,
                DEPLOYER_KEY,
                consumer.functions.createSubscription(CONTAINER, FREQUENCY, PERIOD, 1, False),
            )
            show(
                "consumer contract: createSubscription",
                {
                    "consumer": examples.subscription,
                    "container": CONTAINER,
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
    args = parser.parse_args()
    asyncio.run(run(args.config, args.port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
