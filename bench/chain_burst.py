"""Burst delivery (issue 14): N subscriptions whose interval opens in the same block, served by a
real ``node-agent run`` process on ``anvil --block-time 1``.

Setup (none of it measured): the project's contracts and example consumers are deployed, and
the consumer the subscriptions belong to is chosen (``--consumer``): ``recording``, the
ExampleSubscriptionConsumer that stores every delivery's input, output and proof (~250,000 gas
a delivery: at anvil's default 30M block gas limit the chain, not the node, bounds the burst), or
``lean``, ExampleLeanConsumer, which only emits the output's hash (what a consumer acting on
results off-chain would do), so the burst measures the node and the Coordinator. For
the paid share, a consumer Wallet from the WalletFactory is funded with ETH and lets the
example consumer spend it, and the node gets a Wallet of its own (``payment_address``). The
subscriptions are created in a few blocks whose timestamps the script sets, each with the
period that makes its first interval open at the same time T, an hour ahead; the agent starts,
syncs them all, and then the chain's clock jumps to two seconds before T. From the opening
block on (the first with timestamp >= T), everything the agent does is counted:

- blocks from the opening block to the block holding each delivery (its
  ``SubscriptionFulfilled``); the target is every delivery within 5 blocks;
- JSON-RPC calls the agent sent, by method (its own transport counts each call, one inside a
  JSON-RPC batch included), from just before the opening block until it has nothing in flight
  and nothing unconfirmed, divided by the deliveries; the target is <= 4 on average;
- the node's transactions: mined count against deliveries, nonce gaps found, transactions sent
  again, fillers, replacements (the target: none);
- ``GET /health`` and ``POST /api/jobs`` (an echo job) latency from another process, polled
  every 5 ms while the burst lasts; the target is p99 <= 10 ms.

``BURST_KEEP_LOG=PATH`` copies the agent's log there when the run found a nonce gap or
replaced a transaction (its path then in the results as ``agent_log``).

The container behind both container ids (``echo`` free, ``echo-paid`` with
``accepted_payments``) is a small HTTP service in its own process that returns its input.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
from eth_account import Account
from prometheus_client.parser import text_string_to_metric_families
from web3 import Web3

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from node_agent.chain.delivery import COUNTS  # noqa: E402
from node_agent.chain.deploy import Deployer, load_artifact  # noqa: E402
from node_agent.chain.devnet import (  # noqa: E402
    DEPLOYER_KEY,
    NODE_KEYS,
    Anvil,
    deploy_devnet,
    free_port,
    start_anvil,
)
from node_agent.chain.transport import web3_client  # noqa: E402

ETH = "0x" + "00" * 20
LEAD_SECONDS = 3600  # T is this far ahead while the agent starts and syncs; then time jumps
PAYMENT = 10**12  # wei per paid delivery
FULFILLED = Web3.keccak(text="SubscriptionFulfilled(uint32,address)").to_0x_hex()
WALLET_CREATED = Web3.keccak(text="WalletCreated(address,address,address)").to_0x_hex()
PROBE_EVERY = 0.005
STEAL_MARGIN_SECONDS = 0.05
IDLE_PROBE_SECONDS = 3.0

TARGET_BLOCKS = 5
TARGET_CALLS_PER_DELIVERY = 4.0
TARGET_API_P99_MS = 10.0
REFERENCE_CALLS_PER_DELIVERY = "18-19"  # the Infernet node, one delivery at a time (issue 14)
# --consumer: the contract the burst's subscriptions belong to (same creation API)
CONSUMERS = {"recording": "ExampleSubscriptionConsumer", "lean": "ExampleLeanConsumer"}
INPUTS = b"burst"

DEPLOYER = Account.from_key(DEPLOYER_KEY)
NODE = Account.from_key(NODE_KEYS[0])


# --- JSON-RPC from the bench (setup and observation; not counted) ---------------------------


class Chain:
    def __init__(self, anvil: Anvil, http: aiohttp.ClientSession) -> None:
        self.url = anvil.url
        self.chain_id = anvil.chain_id
        self.http = http

    async def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        body = [
            {"jsonrpc": "2.0", "id": i, "method": method, "params": params}
            for i, (method, params) in enumerate(calls)
        ]
        async with self.http.post(self.url, json=body) as response:
            replies = await response.json()
        errors = [r["error"] for r in replies if "error" in r]
        if errors:
            raise RuntimeError(f"RPC errors: {errors[:3]}")
        return [r["result"] for r in sorted(replies, key=lambda r: r["id"])]

    async def rpc(self, method: str, *params: Any) -> Any:
        (result,) = await self.batch([(method, list(params))])
        return result

    async def block(self, tag: int | str = "latest") -> dict[str, Any]:
        number = hex(tag) if isinstance(tag, int) else tag
        block: dict[str, Any] = await self.rpc("eth_getBlockByNumber", number, False)
        return block

    async def nonce(self, address: str, tag: str = "latest") -> int:
        return int(await self.rpc("eth_getTransactionCount", address, tag), 16)

    def sign(self, account: Any, nonce: int, to: str, data: str, gas: int, value: int = 0) -> str:
        tx = {
            "type": 2,
            "chainId": self.chain_id,
            "nonce": nonce,
            "to": to,
            "data": data,
            "value": value,
            "gas": gas,
            "maxFeePerGas": 10**11,
            "maxPriorityFeePerGas": 10**9,
        }
        return "0x" + account.sign_transaction(tx).raw_transaction.hex()

    async def transact(self, account: Any, to: str, data: str, value: int = 0) -> dict[str, Any]:
        """One transaction, mined by ``evm_mine``, its receipt (must succeed)."""
        nonce = await self.nonce(account.address, "pending")
        tx = {"from": account.address, "to": to, "data": data, "value": hex(value)}
        gas = int(await self.rpc("eth_estimateGas", tx), 16) * 2
        tx_hash = await self.rpc(
            "eth_sendRawTransaction", self.sign(account, nonce, to, data, gas, value)
        )
        await self.rpc("evm_mine")
        receipt: dict[str, Any] = await self.rpc("eth_getTransactionReceipt", tx_hash)
        if receipt is None or int(receipt["status"], 16) != 1:
            raise RuntimeError(f"setup transaction failed: {receipt}")
        return receipt


def contract(name: str, address: str) -> Any:
    return Web3().eth.contract(
        address=Web3.to_checksum_address(address), abi=load_artifact(name).abi
    )


# --- setup: wallets and subscriptions -----------------------------------------------------------


@dataclass
class Market:
    consumer: str  # address of the CONSUMERS[kind] contract
    coordinator: str
    registry: str
    kind: str = "recording"
    consumer_wallet: str | None = None
    node_wallet: str | None = None
    first_paid_id: int | None = None  # subscriptions from this id on are paid


async def lean_consumer(url: str, registry: str) -> str:
    """An ExampleLeanConsumer (deploy_devnet deploys only the recording example)."""
    w3 = web3_client(url)
    try:
        address, _ = await Deployer(w3, DEPLOYER_KEY).deploy(CONSUMERS["lean"], registry, INPUTS)
    finally:
        await w3.provider.disconnect()
    return address


async def create_wallet(chain: Chain, factory: Any, owner: str) -> str:
    receipt = await chain.transact(
        DEPLOYER, factory.address, factory.encode_abi("createWallet", args=[owner])
    )
    for entry in receipt["logs"]:
        if entry["topics"][0] == WALLET_CREATED:
            return Web3.to_checksum_address("0x" + entry["data"][-40:])
    raise RuntimeError("no WalletCreated event")


async def setup_payments(chain: Chain, market: Market, paid: int) -> None:
    """A funded consumer Wallet the example consumer may spend, and the node's Wallet."""
    registry = contract("Registry", market.registry)
    answer = await chain.rpc(
        "eth_call", {"to": market.registry, "data": registry.encode_abi("WALLET_FACTORY")}, "latest"
    )
    factory_address = Web3.to_checksum_address("0x" + answer[-40:])
    factory = contract("WalletFactory", factory_address)
    market.consumer_wallet = await create_wallet(chain, factory, DEPLOYER.address)
    market.node_wallet = await create_wallet(chain, factory, NODE.address)
    total = PAYMENT * max(paid, 1)
    await chain.transact(DEPLOYER, market.consumer_wallet, "0x", value=total)
    wallet = contract("Wallet", market.consumer_wallet)
    approve = wallet.encode_abi("approve", args=[market.consumer, ETH, total])
    await chain.transact(DEPLOYER, market.consumer_wallet, approve)


async def create_subscriptions(chain: Chain, market: Market, count: int, paid: int) -> int:
    """``count`` subscriptions (the last ``paid`` of them paid) whose first interval opens at
    the same time T; returns T. Each chunk is mined in one block of a chosen timestamp, and
    its subscriptions' period is T minus that timestamp (activeAt = creation time + period)."""
    consumer = contract(CONSUMERS[market.kind], market.consumer)
    coordinator = contract("Coordinator", market.coordinator)
    next_id = await chain.rpc(
        "eth_call", {"to": market.coordinator, "data": coordinator.encode_abi("id")}, "latest"
    )
    market.first_paid_id = int(next_id, 16) + count - paid
    await chain.rpc("evm_setIntervalMining", 0)  # blocks only when this script mines them
    latest = int((await chain.block())["timestamp"], 16)
    opening = latest + LEAD_SECONDS
    block_gas = int((await chain.block())["gasLimit"], 16)

    def call(index: int, period: int) -> str:
        if index >= count - paid:
            assert market.consumer_wallet is not None
            args = ["echo-paid", 1, period, 1, False, ETH, PAYMENT, market.consumer_wallet, ETH]
            return str(consumer.encode_abi("createPaidSubscription", args=args))
        return str(consumer.encode_abi("createSubscription", args=["echo", 1, period, 1, False]))

    probe = {"from": DEPLOYER.address, "to": market.consumer, "data": call(count - 1, LEAD_SECONDS)}
    gas = int(await chain.rpc("eth_estimateGas", probe), 16) * 5 // 4
    chunk = max(1, min(200, block_gas * 8 // 10 // gas))
    nonce = await chain.nonce(DEPLOYER.address, "pending")
    created = 0
    while created < count:
        stamp = int((await chain.block())["timestamp"], 16) + 1
        size = min(chunk, count - created)
        raw = [
            chain.sign(
                DEPLOYER, nonce + i, market.consumer, call(created + i, opening - stamp), gas
            )
            for i in range(size)
        ]
        hashes = await chain.batch([("eth_sendRawTransaction", [r]) for r in raw])
        await chain.rpc("evm_setNextBlockTimestamp", stamp)
        await chain.rpc("evm_mine")
        receipts = await chain.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
        bad = [r for r in receipts if r is None or int(r["status"], 16) != 1]
        if bad:
            raise RuntimeError(f"subscription creation failed: {bad[:1]}")
        if len({r["blockNumber"] for r in receipts}) != 1:
            raise RuntimeError("a chunk of subscriptions did not fit in one block")
        nonce += size
        created += size
    await chain.rpc("evm_setIntervalMining", 1)
    return opening


# --- the agent and its container ----------------------------------------------------------------


def echo_service(port: int) -> None:
    """Process body: the Infernet container protocol, answering with its input."""
    from aiohttp import web

    async def output(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"output": body.get("data")})

    app = web.Application()
    app.router.add_post("/service_output", output)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def agent_config(anvil: Anvil, market: Market, port: int, echo_url: str) -> dict[str, Any]:
    wallet: dict[str, Any] = {"private_key": {"env": "NODE_AGENT_BENCH_KEY"}}
    if market.node_wallet is not None:
        wallet["payment_address"] = market.node_wallet
    return {
        "server": {"port": port, "rate_limit_enabled": False},
        "manage_containers": False,
        "containers": [
            {"id": "echo", "url": echo_url},
            {"id": "echo-paid", "url": echo_url, "accepted_payments": {ETH: PAYMENT}},
        ],
        "chain": {
            "enabled": True,
            "rpc_url": anvil.url,
            "registry_address": market.registry,
            "wallet": wallet,
        },
    }


@asynccontextmanager
async def running_agent(workdir: Path, config: dict[str, Any]) -> AsyncIterator[tuple[Path, int]]:
    """``node-agent run`` as its own process; yields its log file and pid."""
    (workdir / "config.json").write_text(json.dumps(config))
    log_path = workdir / "agent.log"
    env = {**os.environ, "NODE_AGENT_BENCH_KEY": NODE_KEYS[0]}
    with log_path.open("ab") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "node_agent.cli", "run"),
            *("--config", str(workdir / "config.json"), "--state-dir", str(workdir / "state")),
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
    try:
        yield log_path, process.pid
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


async def chain_info(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    try:
        async with http.get(f"{base}/info") as response:
            info: dict[str, Any] = await response.json()
    except (aiohttp.ClientError, ValueError):
        return {}
    return dict(info.get("chain") or {})


async def wait_until(check: Any, timeout: float, what: str, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(every)
    raise TimeoutError(f"{what} not within {timeout:.0f} s")


# --- the probe: the off-chain API while the burst runs (another process) ----------------------


class Sample(NamedTuple):
    """One probe answer; ``steal`` is the host's steal counter (seconds) read right after it."""

    at: float
    route: str
    ms: float
    status: int
    steal: float


def probe(base: str, stop: Any, out: Any) -> None:
    """Process body: GET /health and POST /api/jobs in turn every PROBE_EVERY seconds until
    ``stop``; puts the ``Sample`` list on ``out``."""

    async def main() -> None:
        samples: list[Sample] = []
        connector = aiohttp.TCPConnector(limit=1)
        job = {"containers": ["echo"], "data": {"probe": True}}
        async with aiohttp.ClientSession(connector=connector) as session:
            turn = 0
            while not stop.is_set():
                route = "health" if turn % 2 == 0 else "jobs"
                turn += 1
                began = time.perf_counter()
                at = time.time()
                if route == "health":
                    request = session.get(f"{base}/health")
                else:
                    request = session.post(f"{base}/api/jobs", json=job)
                async with request as reply:
                    await reply.read()
                ms = (time.perf_counter() - began) * 1000
                samples.append(Sample(at, route, ms, reply.status, steal_seconds()))
                await asyncio.sleep(PROBE_EVERY)
        out.put(samples)

    asyncio.run(main())


def latency(samples: list[Sample]) -> dict[str, Any]:
    values = sorted(s.ms for s in samples)
    if not values:
        return {"n": 0}

    def pct(q: float) -> float:
        return round(values[min(len(values) - 1, int(q * len(values)))], 2)

    return {
        "n": len(values),
        "p50_ms": round(statistics.median(values), 2),
        "p99_ms": pct(0.99),
        "max_ms": round(values[-1], 2),
        "errors": sum(1 for s in samples if s.status >= 400),
    }


def steal_around(samples: list[Sample], index: int, margin: float = STEAL_MARGIN_SECONDS) -> float:
    """Host steal (ms, both CPUs) from ``margin`` before sample ``index`` was sent to ``margin``
    after its answer. /proc/stat counts steal in 10 ms ticks, so a short theft may read 0 and
    the margin catches the tick it was booked in: slow answers that coincide with the host
    taking the CPU away are told apart from ones the node caused."""
    sample = samples[index]
    start = sample.at - margin
    end = sample.at + sample.ms / 1000 + margin
    before = next((s.steal for s in reversed(samples[:index]) if s.at + s.ms / 1000 <= start), None)
    after = next((s.steal for s in samples[index:] if s.at + s.ms / 1000 >= end), None)
    if before is None or after is None:
        return 0.0
    return round((after - before) * 1000, 1)


# --- observation --------------------------------------------------------------------------------


async def deliveries_from(chain: Chain, coordinator: str, start: int) -> dict[str, tuple[int, int]]:
    """tx hash -> (block, subscription id) of every SubscriptionFulfilled by the node from block
    ``start``."""
    logs = await chain.rpc(
        "eth_getLogs",
        {
            "address": coordinator,
            "fromBlock": hex(start),
            "toBlock": "latest",
            "topics": [FULFILLED, None, "0x" + "00" * 12 + NODE.address.lower()[2:]],
        },
    )
    return {
        entry["transactionHash"]: (int(entry["blockNumber"], 16), int(entry["topics"][1], 16))
        for entry in logs
    }


async def delivery_gas(
    chain: Chain, found: dict[str, tuple[int, int]], first_paid_id: int
) -> dict[str, Any]:
    """Gas used by the deliveries (every receipt, read after the burst), free and paid apart,
    and one delivery's gas limit as the agent set it."""
    hashes = list(found)
    receipts: list[dict[str, Any]] = []
    for chunk in range(0, len(hashes), 200):
        calls = [("eth_getTransactionReceipt", [h]) for h in hashes[chunk : chunk + 200]]
        receipts += await chain.batch(calls)
    used: dict[str, list[int]] = {"free": [], "paid": []}
    for tx_hash, receipt in zip(hashes, receipts, strict=True):
        kind = "paid" if found[tx_hash][1] >= first_paid_id else "free"
        used[kind].append(int(receipt["gasUsed"], 16))
    gas: dict[str, Any] = {}
    everything = used["free"] + used["paid"]
    if everything:
        gas["used"] = round(statistics.mean(everything))
        tx = await chain.rpc("eth_getTransactionByHash", hashes[0])
        gas["limit"] = int(tx["gas"], 16)
    for kind, values in used.items():
        if values:
            gas[kind] = {
                "n": len(values),
                "mean": round(statistics.mean(values)),
                "min": min(values),
                "max": max(values),
            }
    return gas


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux), 0 when it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def steal_seconds() -> float:
    """CPU time the VM's host took from this machine so far (all CPUs; /proc/stat), 0 when it
    cannot be read: the bench's slow phases on a shared host show up here."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def chain_process_of(agent_pid: int) -> int:
    """The agent's chain process (its child running ``node_agent.chain.process``), 0 if none."""
    try:
        children = Path(f"/proc/{agent_pid}/task/{agent_pid}/children").read_text().split()
    except OSError:
        return 0
    for child in children:
        with suppress(OSError):
            if b"node_agent.chain.process" in Path(f"/proc/{child}/cmdline").read_bytes():
                return int(child)
    return 0


def by_method_delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    delta = {m: after.get(m, 0) - before.get(m, 0) for m in after}
    return dict(sorted(((m, n) for m, n in delta.items() if n), key=lambda kv: -kv[1]))


async def burst_run(
    count: int, paid_share: float, gas_limit: int | None, consumer: str = "recording"
) -> dict[str, Any]:
    paid = round(count * paid_share)
    extra = ["--gas-limit", str(gas_limit)] if gas_limit else []
    anvil = await asyncio.to_thread(start_anvil, "--block-time", "1", *extra)
    ctx = multiprocessing.get_context("spawn")
    echo_port, agent_port = free_port(), free_port()
    echo = ctx.Process(target=echo_service, args=(echo_port,), daemon=True)
    echo.start()
    report: dict[str, Any] = {
        "subscriptions": count,
        "free": count - paid,
        "paid": paid,
        "consumer": {"kind": consumer, "contract": CONSUMERS[consumer]},
    }
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:
            chain = Chain(anvil, http)
            deployment, examples = await deploy_devnet(anvil.url, INPUTS)
            address = examples.subscription
            if consumer == "lean":
                address = await lean_consumer(anvil.url, deployment.registry)
            market = Market(address, deployment.coordinator, deployment.registry, consumer)
            if paid:
                await setup_payments(chain, market, paid)
            opening_time = await create_subscriptions(chain, market, count, paid)
            report["block_gas_limit"] = int((await chain.block())["gasLimit"], 16)
            base = f"http://127.0.0.1:{agent_port}"
            with tempfile.TemporaryDirectory(prefix="node-agent-burst-") as tmp:
                config = agent_config(anvil, market, agent_port, f"http://127.0.0.1:{echo_port}")
                async with running_agent(Path(tmp), config) as (log_path, pid):
                    pids = {"agent": pid, "anvil": anvil.process.pid, "echo": echo.pid or 0}
                    try:
                        report.update(
                            await measure(chain, http, base, market, opening_time, count, pids)
                        )
                    except Exception:
                        print(log_path.read_text()[-6000:], file=sys.stderr)
                        raise
                kept = os.environ.get("BURST_KEEP_LOG")  # where to keep the agent's log
                if kept and report["transactions"]["gaps"] + report["transactions"]["replaced"]:
                    shutil.copy(log_path, kept)
                    report["agent_log"] = kept
    finally:
        echo.terminate()
        echo.join(timeout=10)
        anvil.stop()
    return report


async def loop_lag_buckets(http: aiohttp.ClientSession, base: str) -> dict[float, float]:
    """The agent's event-loop lag histogram from /metrics: upper bound -> cumulative count."""
    async with http.get(f"{base}/metrics") as response:
        text = await response.text()
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == "node_agent_event_loop_lag_seconds":
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    buckets[float(sample.labels["le"])] = sample.value
    return buckets


def loop_lag_report(before: dict[float, float], after: dict[float, float]) -> dict[str, Any]:
    """Lag samples taken during the burst (every 20 ms) and how many ran late by more than
    each bound: the agent's own stalls, apart from the OS scheduling every process shares."""
    delta = {le: after.get(le, 0.0) - before.get(le, 0.0) for le in after}
    total = delta.get(float("inf"), 0.0)
    return {
        "samples": int(total),
        **{
            f"over_{int(le * 1000)}ms": int(total - delta[le])
            for le in (0.005, 0.01, 0.025, 0.05, 0.1)
            if le in delta
        },
    }


async def measure(
    chain: Chain,
    http: aiohttp.ClientSession,
    base: str,
    market: Market,
    opening_time: int,
    count: int,
    pids: dict[str, int],
) -> dict[str, Any]:
    async def synced() -> dict[str, Any] | None:
        info = await chain_info(http, base)
        seen = info.get("tracked_subscriptions", 0) + info.get("skipped_subscriptions", 0)
        return info if info.get("ready") and seen >= count else None

    info = await wait_until(synced, 300, "agent synced every subscription")
    pids = {**pids, "chain": chain_process_of(pids["agent"])}
    tracked = int(info["tracked_subscriptions"])
    skipped = int(info["skipped_subscriptions"])
    nonce_before = await chain.nonce(NODE.address)

    ctx = multiprocessing.get_context("spawn")
    stop, out = ctx.Event(), ctx.Queue()
    prober = ctx.Process(target=probe, args=(base, stop, out), daemon=True)
    prober.start()
    try:
        await asyncio.sleep(IDLE_PROBE_SECONDS)  # the same probe before the burst: a baseline
        idle_until = time.time()
        await chain.rpc("evm_setNextBlockTimestamp", opening_time - 2)
        before = (await chain_info(http, base)).get("rpc_calls_by_method", {})
        lag_before = await loop_lag_buckets(http, base)

        async def opened() -> int | None:
            block = await chain.block()
            return int(block["number"], 16) if int(block["timestamp"], 16) >= opening_time else None

        await wait_until(opened, 60, "opening block", every=0.02)
        began = time.time()
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        steal_before = steal_seconds()
        # the opening block: the first whose timestamp reaches T
        number = await opened()
        assert number is not None
        while number > 0 and int((await chain.block(number - 1))["timestamp"], 16) >= opening_time:
            number -= 1
        opening = number

        async def all_sent() -> bool:
            # cheap (one nonce): the bench must not load the machine it measures; the logs
            # are read once at the end
            return await chain.nonce(NODE.address) - nonce_before >= tracked

        with suppress(TimeoutError):
            await wait_until(all_sent, 180, "every tracked subscription delivered", every=0.2)
        delivered_at = time.time()
        lag = loop_lag_report(lag_before, await loop_lag_buckets(http, base))
        async with http.get(f"{base}/info") as response:
            lag["worst_ms"] = (
                (await response.json()).get("event_loop", {}).get("worst_last_minute_ms")
            )
        cpu = {name: round(cpu_seconds(pid) - cpu_before[name], 2) for name, pid in pids.items()}
        steal = round(steal_seconds() - steal_before, 2)

        async def settled() -> dict[str, Any] | None:
            info = await chain_info(http, base)
            sending = info.get("sending") or {}
            idle = info.get("deliveries_in_flight") == 0 and sending.get("unconfirmed") == 0
            return info if idle else None

        info = await wait_until(settled, 120, "agent settled")
        rss = {name: rss_mb(pid) for name, pid in pids.items() if name in ("agent", "chain")}
    finally:
        stop.set()
        samples = out.get(timeout=60)
        prober.join(timeout=30)
    after = info.get("rpc_calls_by_method", {})
    found = await deliveries_from(chain, market.coordinator, opening)
    blocks = sorted(block for block, _ in found.values())
    per_block = Counter(b - opening for b in blocks)
    calls = by_method_delta(after, before)
    total_calls = sum(calls.values())
    delivered = len(found)
    window = [s for s in samples if began <= s.at <= delivered_at]
    idle = [s for s in samples if s.at <= idle_until]
    sending = info.get("sending") or {}
    nonce_after = await chain.nonce(NODE.address)
    assert market.first_paid_id is not None
    gas = await delivery_gas(chain, found, market.first_paid_id)
    block_rows = []
    for number in range(opening, (blocks[-1] if blocks else opening) + 1):
        block = await chain.block(number)
        block_rows.append(
            {
                "block": number - opening,
                "deliveries": per_block.get(number - opening, 0),
                "gas_used": int(block["gasUsed"], 16),
            }
        )
    payments = info.get("payments") or {}
    block_gas = int((await chain.block())["gasLimit"], 16)
    gas_used = sum(row["gas_used"] for row in block_rows)
    return {
        "tracked": tracked,
        "skipped_by_agent": skipped,
        "payment_refusals": payments.get("refused", 0),
        "opening_block": opening,
        "delivered": delivered,
        "all_delivered": delivered >= tracked,
        "blocks_to_all_delivered": (blocks[-1] - opening) if blocks else None,
        # what the chain could not do faster: the burst's gas in full blocks after the opening
        "blocks_needed_for_the_gas": -(-gas_used // block_gas),
        "seconds_to_all_delivered": round(delivered_at - began, 2),
        # CPU seconds each process used from the opening block to the last delivery (2 cores);
        # "chain" is the agent's chain process
        "cpu_seconds": cpu,
        # CPU seconds the VM's host took away meanwhile (steal, both CPUs): the slow phases
        "steal_seconds": steal,
        # resident memory after the burst (MB): the agent and its chain process
        "rss_mb": rss,
        "blocks": block_rows,
        "gas_per_delivery": gas,
        "rpc_calls": {
            "total": total_calls,
            "per_delivery": round(total_calls / delivered, 3) if delivered else None,
            "by_method": calls,
            "per_delivery_by_method": {
                m: round(n / delivered, 3) for m, n in calls.items() if delivered
            },
            "reference_per_delivery": REFERENCE_CALLS_PER_DELIVERY,
        },
        "transactions": {
            "mined": nonce_after - nonce_before,
            "extra": nonce_after - nonce_before - delivered,
            "simulation_batched": sending.get("simulation_batched"),
            "simulation_batches": sending.get("simulation_batches"),
            "send_batches": sending.get("send_batches"),
            **{name: int(sending.get(name, 0)) for name in COUNTS if name != "sent"},
        },
        # the agent's own event loop during the burst (its timer sampled every 20 ms)
        "event_loop_lag": lag,
        "api": {
            # when the slow answers came, in seconds from the opening block (what held them)
            "over_10ms_at_s": [
                [round(s.at - began, 2), s.route, round(s.ms, 1)] for s in window if s.ms > 10
            ],
            # host steal (ms) around each of those answers (see steal_around): > 0 means the VM
            # lost its CPU meanwhile, which no code of the node can answer faster than
            "over_10ms_host_steal_ms": [
                steal_around(samples, i)
                for i, s in enumerate(samples)
                if began <= s.at <= delivered_at and s.ms > 10
            ],
            "idle_before": latency(idle),
            "all": latency(window),
            "health": latency([s for s in window if s[1] == "health"]),
            "jobs": latency([s for s in window if s[1] == "jobs"]),
        },
    }


def check_targets(burst: dict[str, Any]) -> list[dict[str, Any]]:
    tx = burst["transactions"]
    rows = [
        ("burst: blocks to every delivery", burst["blocks_to_all_delivered"], TARGET_BLOCKS),
        (
            "burst: RPC calls per delivery",
            burst["rpc_calls"]["per_delivery"],
            TARGET_CALLS_PER_DELIVERY,
        ),
        ("burst: nonce gaps + replacements", tx["gaps"] + tx["replaced"], 0),
        (
            "burst: API p99 during the burst (ms)",
            burst["api"]["all"].get("p99_ms"),
            TARGET_API_P99_MS,
        ),
    ]
    checks = []
    for name, value, limit in rows:
        ok = value is not None and value <= limit and burst["all_delivered"]
        checks.append({"target": name, "value": value, "limit": limit, "ok": ok})
    return checks


def print_burst(burst: dict[str, Any]) -> None:
    calls = burst["rpc_calls"]
    tx = burst["transactions"]
    consumer = burst["consumer"]
    gas = burst["gas_per_delivery"]
    print(
        f"\n== burst: {burst['subscriptions']} subscriptions ({burst['free']} free, {burst['paid']}"
        f" paid) of the {consumer['kind']} consumer ({consumer['contract']}) opening in block"
        f" {burst['opening_block']}; the agent tracked {burst['tracked']}, skipped"
        f" {burst['skipped_by_agent']}, refused {burst['payment_refusals']} payments"
    )
    print(
        f"delivered {burst['delivered']} within {burst['blocks_to_all_delivered']} blocks (the"
        f" burst's gas needs {burst['blocks_needed_for_the_gas']} at this gas limit)"
        f" ({burst['seconds_to_all_delivered']} s); block gas limit {burst['block_gas_limit']:,};"
        f" CPU seconds meanwhile {burst['cpu_seconds']} (host steal {burst.get('steal_seconds')});"
        f" RSS after (MB) {burst.get('rss_mb')}"
    )
    per_kind = [
        f"{kind} {g['mean']:,} ({g['min']:,}-{g['max']:,}, n={g['n']})"
        for kind, g in gas.items()
        if kind in ("free", "paid")
    ]
    print(
        f"gas per delivery: {'; '.join(per_kind) or 'none'}; the agent's gas limit"
        f" {gas.get('limit', 0):,}"
    )
    for row in burst["blocks"]:
        print(
            f"  opening+{row['block']}: {row['deliveries']:5d} deliveries, gas {row['gas_used']:,}"
        )
    print(
        f"RPC calls: {calls['total']} = {calls['per_delivery']} per delivery"
        f" (the reference: {calls['reference_per_delivery']})"
    )
    for method, per in calls["per_delivery_by_method"].items():
        print(f"  {method:<28} {calls['by_method'][method]:6d}  {per:.3f} per delivery")
    print(
        f"transactions: {tx['mined']} mined ({tx['extra']} beyond the deliveries), gaps"
        f" {tx['gaps']}, resent {tx['resent']}, filled {tx['filled']}, replaced {tx['replaced']},"
        f" re-signed {tx['resigned']}, refused by the pool {tx['broadcast_rejected']}, receipts"
        f" looked up one by one {tx['receipt_lookups']} (logs waited for {tx['log_waits']});"
        f" simulations batched: {tx['simulation_batched']} ({tx['simulation_batches']} batches),"
        f" send batches {tx['send_batches']}"
    )
    for route, s in burst["api"].items():
        if isinstance(s, dict) and s.get("n"):
            print(
                f"  API {route:<7} n={s['n']:5d} p50 {s['p50_ms']:6.2f} ms  p99 {s['p99_ms']:6.2f}"
                f" ms  max {s['max_ms']:7.2f} ms  errors {s['errors']}"
            )
    slow = burst["api"].get("over_10ms_at_s") or []
    if slow:
        stolen = burst["api"].get("over_10ms_host_steal_ms") or []
        print(
            f"  API answers over 10 ms: {len(slow)}, {sum(1 for ms in stolen if ms > 0)} of them"
            f" while the host stole CPU (s from the opening, route, ms, steal ms around it):"
            f" {[[*row, ms] for row, ms in zip(slow, stolen, strict=False)]}"
        )
    lag = burst.get("event_loop_lag") or {}
    if lag:
        over = ", ".join(
            f"{k.removeprefix('over_')} {v}" for k, v in lag.items() if k[:5] == "over_"
        )
        print(
            f"  agent event loop: {lag.get('samples')} lag samples during the burst, late by more"
            f" than: {over}; worst {lag.get('worst_ms')} ms"
        )
