"""Chain side at scale, on a real anvil with the project's contracts and the real ChainService.

Measures (issue 5 targets in brackets):
- initial sync of N subscriptions: wall time and RPC calls [10,000 in <= 10 s, <= 100 calls];
- steady state: RPC calls per block with N idle subscriptions tracked, for a small and a large
  N [must not grow with N];
- one scheduling pass (pure ``scheduler.candidates``) over N tracked subscriptions;
- Reader batch latency: ``readSubscriptionBatch`` and ``readRedundancyCountBatch`` of 500 ids;
- delivery latency with ``anvil --block-time 1``: blocks from an interval's opening block to the
  block holding its delivery [<= 2 blocks];
- burst (issue 14, ``chain_burst.py``): N subscriptions, free and paid, whose interval opens in
  the same block, served by a real ``node-agent run`` process on ``anvil --block-time 1``
  [every delivery within 5 blocks, <= 4 RPC calls per delivery, no nonce gap or replacement,
  the HTTP API's p99 <= 10 ms meanwhile].

For scale and latency the container is an in-process echo runner: they measure the chain side,
not a container. The burst runs the real agent against an echo service in its own process.

    .venv/bin/python bench/chain_bench.py [--subscriptions 10000] [--small 100] [--burst 1000]
    .venv/bin/python bench/chain_bench.py --only burst          # the burst alone (~2 minutes)
    .venv/bin/python bench/chain_bench.py --only burst --consumer lean [--gas-limit N]
    .venv/bin/python bench/chain_bench.py --quick               # small sizes (the test runs this)

Prints the numbers and the targets, and writes bench/results/chain-<UTC time>.json (and
``latest.json``); exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import structlog
from eth_account import Account
from web3 import Web3

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from node_agent.chain import abi, scheduler  # noqa: E402
from node_agent.chain.deploy import load_artifact  # noqa: E402
from node_agent.chain.devnet import (  # noqa: E402
    DEPLOYER_KEY,
    NODE_KEYS,
    Anvil,
    deploy_devnet,
    start_anvil,
)
from node_agent.chain.service import ChainService  # noqa: E402
from node_agent.chain.subscription import Subscription  # noqa: E402
from node_agent.chain.tools import build_contracts  # noqa: E402
from node_agent.config import Config, parse_config  # noqa: E402
from node_agent.jobs.model import ContainerResult  # noqa: E402
from node_agent.jobs.pipeline import PipelineOutcome  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
import chain_burst  # noqa: E402
import loadgen  # noqa: E402

SCENARIOS = ("scale", "latency", "burst")
IDLE_PERIOD = 30 * 24 * 3600  # idle subscriptions open in a month: tracked, never due here
BATCH = 500


class EchoRunner:
    """In-process JobRunner: every container returns its input (no HTTP, no Docker)."""

    async def run(
        self,
        containers: Sequence[str],
        data: Any,
        *,
        source: int,
        destination: int,
        requires_proof: bool,
    ) -> PipelineOutcome:
        return PipelineOutcome([ContainerResult(c, output={"output": data}) for c in containers])


def node_config(anvil: Anvil, registry: str, state: Path, sync_period: float) -> Config:
    return parse_config(
        {
            "manage_containers": False,
            "containers": [{"id": "echo", "url": "http://unused"}],
            "chain": {
                "enabled": True,
                "rpc_url": anvil.url,
                "registry_address": registry,
                "trail_head_blocks": 0,
                "wallet": {"private_key": NODE_KEYS[0]},
                "snapshot_sync": {"sync_period": sync_period, "batch_size": BATCH},
            },
            "agent": {"state_dir": str(state)},
        }
    )


async def json_rpc_batch(url: str, calls: list[tuple[str, list[Any]]]) -> list[Any]:
    body = [
        {"jsonrpc": "2.0", "id": i, "method": method, "params": params}
        for i, (method, params) in enumerate(calls)
    ]
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http,
        http.post(url, json=body) as response,
    ):
        replies = await response.json()
    errors = [r["error"] for r in replies if "error" in r]
    if errors:
        raise RuntimeError(f"RPC errors: {errors[:3]}")
    return [r["result"] for r in sorted(replies, key=lambda r: r["id"])]


async def rpc(url: str, method: str, *params: Any) -> Any:
    (result,) = await json_rpc_batch(url, [(method, list(params))])
    return result


async def create_subscriptions(
    anvil: Anvil, consumer: str, count: int, period: int, frequency: int = 1
) -> float:
    """``count`` createSubscription transactions, pre-signed and sent in JSON-RPC batches."""
    start = time.perf_counter()
    account = Account.from_key(DEPLOYER_KEY)
    artifact = load_artifact("ExampleSubscriptionConsumer")
    contract = Web3().eth.contract(address=consumer, abi=artifact.abi)  # type: ignore[arg-type]
    data = contract.encode_abi("createSubscription", args=["echo", frequency, period, 1, False])
    nonce = int(await rpc(anvil.url, "eth_getTransactionCount", account.address, "pending"), 16)
    raw = []
    for i in range(count):
        tx = {
            "type": 2,
            "chainId": anvil.chain_id,
            "nonce": nonce + i,
            "to": consumer,
            "data": data,
            "value": 0,
            "gas": 400_000,
            "maxFeePerGas": 10**11,
            "maxPriorityFeePerGas": 10**9,
        }
        raw.append("0x" + account.sign_transaction(tx).raw_transaction.hex())
    # Small chunks, each mined before the next: anvil slows down badly with a huge mempool.
    for chunk in range(0, count, 200):
        calls = [("eth_sendRawTransaction", [r]) for r in raw[chunk : chunk + 200]]
        hashes = await json_rpc_batch(anvil.url, calls)
        receipt = None
        while receipt is None:
            await asyncio.sleep(0.02)
            receipt = await rpc(anvil.url, "eth_getTransactionReceipt", hashes[-1])
        assert int(receipt["status"], 16) == 1, receipt
    return time.perf_counter() - start


async def wait_for(check: Callable[[], bool | Awaitable[bool]], timeout: float) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        value = check()
        if value if isinstance(value, bool) else await value:
            return time.perf_counter() - start
        await asyncio.sleep(0.005)
    raise TimeoutError("condition not met")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)]


async def scale_run(count: int, blocks: int) -> dict[str, Any]:
    """Sync ``count`` idle subscriptions, then count RPC calls per block in steady state."""
    anvil = await asyncio.to_thread(start_anvil, "--gas-limit", "300000000")
    try:
        deployment, examples = await deploy_devnet(anvil.url)
        create_s = await create_subscriptions(anvil, examples.subscription, count, IDLE_PERIOD)
        with tempfile.TemporaryDirectory() as state:
            config = node_config(anvil, deployment.registry, Path(state), sync_period=0.5)
            service = ChainService(config, Path(state), EchoRunner())
            start = time.perf_counter()
            await service.start()
            await wait_for(lambda: len(service._subs) >= count, timeout=600)
            sync_s = time.perf_counter() - start
            sync_calls = service.rpc.calls
            # Steady state: a block every 0.5 s (the poll period), nothing due.
            await wait_for(
                lambda: (
                    service.scheduled_block is not None
                    and service.scheduled_block >= (service.head or 0)
                ),
                timeout=60,
            )
            before = service.rpc.calls
            for _ in range(blocks):
                await rpc(anvil.url, "evm_mine")
                await asyncio.sleep(0.5)
            per_block = (service.rpc.calls - before) / blocks

            now = service.head_time or 0
            passes = []
            for _ in range(20):
                t0 = time.perf_counter()
                scheduler.candidates(service._subs, now, done=service._is_done, margin=2)
                passes.append(time.perf_counter() - t0)

            reader = service.sync.reader if service.sync else ""
            ids = list(range(1, min(count, BATCH) + 1))
            sub_batch, count_batch = [], []
            for _ in range(20):
                t0 = time.perf_counter()
                await service.rpc.eth_call(reader, abi.READ_SUBSCRIPTION_BATCH, ids[0], ids[-1] + 1)
                sub_batch.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                await service.rpc.eth_call(
                    reader, abi.READ_REDUNDANCY_COUNT_BATCH, ids, [1] * len(ids)
                )
                count_batch.append(time.perf_counter() - t0)
            await service.stop(1)
    finally:
        anvil.stop()
    pass_ms = statistics.median(passes) * 1000
    return {
        "subscriptions": count,
        "create_seconds": round(create_s, 2),
        "sync_seconds": round(sync_s, 3),
        "sync_rpc_calls": sync_calls,
        "steady_rpc_calls_per_block": round(per_block, 2),
        "schedule_pass_ms_median": round(pass_ms, 3),
        "subscriptions_per_ms_of_schedule_pass": round(count / pass_ms, 1) if pass_ms else None,
        "reader_subscription_batch_ms": {
            "ids": len(ids),
            "median": round(statistics.median(sub_batch) * 1000, 2),
            "p95": round(percentile(sub_batch, 0.95) * 1000, 2),
        },
        "reader_redundancy_batch_ms": {
            "ids": len(ids),
            "median": round(statistics.median(count_batch) * 1000, 2),
            "p95": round(percentile(count_batch, 0.95) * 1000, 2),
        },
    }


async def latency_run(intervals: int, period: int) -> dict[str, Any]:
    """Blocks from each interval's opening block to the block holding its delivery."""
    anvil = await asyncio.to_thread(start_anvil, "--block-time", "1")
    try:
        deployment, examples = await deploy_devnet(anvil.url, b"latency")
        with tempfile.TemporaryDirectory() as state:
            config = node_config(anvil, deployment.registry, Path(state), sync_period=0.1)
            service = ChainService(config, Path(state), EchoRunner())
            await service.start()
            await wait_for(lambda: service.head is not None, timeout=60)
            await create_subscriptions(anvil, examples.subscription, 1, period, intervals)
            (sub_id, active_at) = await subscription_start(anvil, deployment.coordinator)
            last_opening = active_at + (intervals - 1) * period
            await wait_for(
                lambda: (service.head_time or 0) > last_opening + period / 2, timeout=600
            )

            async def all_delivered() -> bool:
                found = await delivery_blocks(anvil, examples.subscription, sub_id)
                return len(found) >= intervals

            with contextlib.suppress(TimeoutError):
                await wait_for(all_delivered, timeout=30)
            await service.stop(1)
        head = int(await rpc(anvil.url, "eth_blockNumber"), 16)
        times = {}
        for number in range(head + 1):
            block = await rpc(anvil.url, "eth_getBlockByNumber", hex(number), False)
            times[number] = int(block["timestamp"], 16)
        delivered = await delivery_blocks(anvil, examples.subscription, sub_id)
    finally:
        anvil.stop()
    lags = []
    for interval in range(1, intervals + 1):
        opening = active_at + (interval - 1) * period
        opened_block = min(n for n, t in times.items() if t >= opening)
        if interval in delivered:
            lags.append(delivered[interval] - opened_block)
    return {
        "block_time_seconds": 1,
        "period_seconds": period,
        "intervals": intervals,
        "delivered": len(lags),
        "blocks_from_opening_to_delivery": lags,
        "max_blocks": max(lags) if lags else None,
    }


async def call_view(anvil: Anvil, to: str, fn: abi.Function, *args: Any) -> tuple[Any, ...]:
    data = "0x" + fn.encode_call(*args).hex()
    raw = await rpc(anvil.url, "eth_call", {"to": to, "data": data}, "latest")
    return fn.decode_result(bytes.fromhex(raw[2:]))


async def subscription_start(anvil: Anvil, coordinator: str) -> tuple[int, int]:
    """(id, activeAt) of the newest subscription."""
    (next_id,) = await call_view(anvil, coordinator, abi.COORDINATOR_ID)
    sub_id = int(next_id) - 1
    (raw,) = await call_view(anvil, coordinator, abi.GET_SUBSCRIPTION, sub_id)
    return sub_id, Subscription.from_tuple(raw).active_at


async def delivery_blocks(anvil: Anvil, consumer: str, sub_id: int) -> dict[int, int]:
    """interval → block number of its OutputReceived event."""
    topic = Web3.keccak(text="OutputReceived(uint32,uint32,address,uint16)").to_0x_hex()
    logs = await rpc(
        anvil.url,
        "eth_getLogs",
        {"address": consumer, "fromBlock": "0x0", "toBlock": "latest", "topics": [topic]},
    )
    found = {}
    for entry in logs:
        if int(entry["topics"][1], 16) == sub_id:
            found[int(entry["topics"][2], 16)] = int(entry["blockNumber"], 16)
    return found


async def main(args: argparse.Namespace, only: list[str]) -> dict[str, Any]:
    await asyncio.to_thread(build_contracts)
    report: dict[str, Any] = {}
    if "scale" in only:
        report["scale"] = [
            await scale_run(n, args.blocks) for n in (args.small, args.subscriptions)
        ]
    if "latency" in only:
        report["latency"] = await latency_run(args.intervals, args.period)
    if "burst" in only:
        report["burst"] = await chain_burst.burst_run(
            args.burst, args.paid_share, args.gas_limit, args.consumer
        )
    return report


def check_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []
    for run in report.get("scale", []):
        if run["subscriptions"] >= 10_000:
            for name, value, limit in (
                ("sync of 10,000 subscriptions (s)", run["sync_seconds"], 10.0),
                ("RPC calls to sync 10,000 subscriptions", run["sync_rpc_calls"], 100),
            ):
                checks.append(
                    {"target": name, "value": value, "limit": limit, "ok": value <= limit}
                )
    if "latency" in report:
        value = report["latency"]["max_blocks"]
        ok = value is not None and value <= 2
        checks.append({"target": "delivery latency (blocks)", "value": value, "limit": 2, "ok": ok})
    if "burst" in report:
        checks += chain_burst.check_targets(report["burst"])
    return checks


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--intervals", type=int, default=5)
    parser.add_argument("--period", type=int, default=4)
    parser.add_argument("--burst", type=int, default=1000, help="subscriptions in the burst")
    parser.add_argument("--paid-share", type=float, default=0.5, help="of the burst, paid")
    parser.add_argument(
        "--gas-limit", type=int, default=None, help="anvil's block gas limit for the burst"
    )
    parser.add_argument(
        "--consumer",
        choices=sorted(chain_burst.CONSUMERS),
        default="recording",
        help="the burst's consumer: recording stores every delivery (~250k gas each, the"
        " default, as in earlier results), lean only emits the output's hash",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    parser.add_argument("--results-dir", default=str(loadgen.RESULTS_DIR))
    arguments = parser.parse_args()
    if arguments.quick:
        arguments.subscriptions, arguments.small, arguments.blocks = 500, 50, 3
        arguments.intervals, arguments.burst = 2, 50
    selected = [name for name in arguments.only.split(",") if name]
    if set(selected) - set(SCENARIOS):
        parser.error(f"unknown scenarios: {sorted(set(selected) - set(SCENARIOS))}")
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    started = datetime.now(UTC)
    results = asyncio.run(main(arguments, selected))
    results["targets"] = check_targets(results)
    results["quick"] = arguments.quick
    results["machine"] = {"cpus": os.cpu_count(), "when": started.isoformat()}
    if "burst" in results:
        chain_burst.print_burst(results["burst"])
    print(json.dumps({k: v for k, v in results.items() if k in ("scale", "latency")}, indent=2))
    print("\n== targets")
    for item in results["targets"]:
        verdict = "ok  " if item["ok"] else "MISS"
        print(f"  {verdict} {item['target']:<44} {item['value']!s:>8}  (limit {item['limit']})")
    path = loadgen.write_results("chain", results, Path(arguments.results_dir))
    print(f"wrote {path}", file=sys.stderr)
    sys.exit(0 if all(item["ok"] for item in results["targets"]) else loadgen.MISSED_TARGET_EXIT)
