"""GET /metrics of a real agent, parsed as Prometheus parses it, after real work.

One daemon does everything a provider node does: an Infernet job over HTTP, an on-chain
subscription delivered on anvil, heartbeats to a test orchestrator, GPUs behind the fake-NVML
boundary (an H100 and an A100 split into two MIG slices), a payment Wallet made by ``node-agent
wallet create``'s code (paid deliveries: tests/chain/test_paid_subscriptions.py). Its scrape must
hold the histograms
with observations, separate job and container-call counters, dcgm-exporter's GPU series with
the MIG slices, and every metric name the bundled Grafana dashboard and alert rules use.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from chain_support import PERIOD, Devnet, agent_config, eventually, get_json
from eth_account import Account
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from node_agent.chain import walletops
from node_agent.chain.devnet import DEPLOYER_KEY, NODE_KEYS
from node_agent.chain.wallet import NodeKey
from node_agent.daemon import Daemon
from tests.gpu.fake_nvml import FakeNvml, board
from tests.grid.orchestrator import API_KEY, Orchestrator, running
from tests.support.agent import make_config
from tests.support.anvil import advance_time, transact
from tests.support.service import running_service

pytestmark = pytest.mark.chain
ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "node-agent.json"
RULES = ROOT / "deploy" / "prometheus" / "node-agent-rules.yml"
H100 = "GPU-5c3a1e2f-8b7d-4c1a-9e21-0a1b2c3d4e5f"
A100 = "GPU-a1000000-0000-4000-8000-000000000001"
METRIC_NAME = re.compile(r"\b(?:node_agent_\w+|DCGM_FI_\w+)")
Families = dict[str, Any]
ETH = "0x" + "00" * 20
WALLET_WEI = 5 * 10**17


async def scrape(http: aiohttp.ClientSession, base: str) -> Families:
    async with http.get(f"{base}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = await response.text()
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(families: Families, sample: str, **labels: str) -> float:
    """The one sample called ``sample`` whose labels include ``labels``."""
    family = families[re.sub(r"(_total|_bucket|_count|_sum)$", "", sample)]
    found = [
        s.value for s in family.samples if s.name == sample and labels.items() <= s.labels.items()
    ]
    assert len(found) == 1, (sample, labels, family.samples)
    return float(found[0])


def exported_names(families: Families) -> set[str]:
    """Every name a query may use: families, their samples, and the sample names a counter or
    histogram declares even before its first observation."""
    names: set[str] = set()
    for family in families.values():
        names.add(family.name)
        names.update(s.name for s in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_count", "_sum"))
    return names


def dashboard_queries() -> list[str]:
    board_json = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in board_json["panels"] for t in p.get("targets", [])]
    queries += [v["definition"] for v in board_json["templating"]["list"] if "definition" in v]
    return queries


def rule_queries() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def node_config(net: Devnet, service_url: str, state: Path, grid_url: str) -> dict[str, Any]:
    raw = agent_config(net, service_url, state)
    raw["gpus"] = {"poll_interval": 0.2, "event_wait_ms": 50}
    raw["grid"] = {
        "enabled": True,
        "url": grid_url,
        "api_key": API_KEY,
        "heartbeat_interval": 0.2,
        "startup_delay_max": 0,
    }
    return raw


async def test_real_agent_metrics_after_a_job_and_a_delivery(
    devnet: Devnet, tmp_path: Path
) -> None:
    net = devnet
    nvml = FakeNvml([board("h100-sxm"), board("a100-mig")])
    consumer = net.contract("ExampleSubscriptionConsumer", net.examples.subscription)
    gas = [Account.from_key(NODE_KEYS[0]).address, hex(10**20)]
    await net.w3.provider.make_request("anvil_setBalance", gas)  # type: ignore[arg-type]
    async with (
        running_service("echo") as (_, service_url),
        running(Orchestrator(heartbeat_interval=0.2)) as orchestrator,
    ):
        raw = node_config(net, service_url, tmp_path / "state", orchestrator.url)
        raw["chain"]["wallet"]["payment_address"] = await payment_wallet(net, raw)
        daemon = Daemon(
            make_config(raw), tmp_path / "state", provider_options={"nvml_library": nvml}
        )
        await daemon.start()
        try:
            await asyncio.wait_for(daemon.containers_ready.wait(), 60)
            base = f"http://127.0.0.1:{daemon.port}"
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                await check_scrape(http, base, net, consumer, nvml)
        finally:
            await daemon.stop()


async def payment_wallet(net: Devnet, raw: dict[str, Any]) -> str:
    """The node's payment Wallet (ETH only: no container asks for payment), holding 0.5 ETH."""
    config = make_config(raw)
    key = NodeKey(Account.from_key(NODE_KEYS[0]))
    created = await walletops.create(config, key, walletops.tokens(config, []), force=False)
    wallet = str(created["payment_address"])
    await net.w3.provider.make_request("anvil_setBalance", [wallet, hex(WALLET_WEI)])  # type: ignore[arg-type]
    return wallet


async def check_scrape(
    http: aiohttp.ClientSession, base: str, net: Devnet, consumer: Any, nvml: FakeNvml
) -> None:
    async def chain_ready() -> bool:
        health = await get_json(http, f"{base}/health")
        return bool(health["checks"]["chain"]["status"] == "ok")

    await eventually(chain_ready, what="chain check ok")

    # One Infernet job, to its final status.
    async with http.post(f"{base}/api/jobs", json={"containers": ["echo"], "data": {"x": 1}}) as r:
        assert r.status == 200
        job_id = (await r.json())["id"]

    async def job_done() -> bool:
        (job,) = await get_json(http, f"{base}/api/jobs?id={job_id}")
        return bool(job["status"] == "success")

    await eventually(job_done, what="job succeeded")

    # One on-chain delivery, confirmed.
    await transact(
        net.w3, DEPLOYER_KEY, consumer.functions.createSubscription("echo", 1, PERIOD, 1, False)
    )
    await advance_time(net.w3, PERIOD + 1)

    async def delivery_confirmed() -> bool:
        families = await scrape(http, base)
        deliveries = families.get("node_agent_chain_deliveries")
        return deliveries is not None and any(
            s.labels.get("state") == "confirmed" and s.value == 1 for s in deliveries.samples
        )

    await eventually(delivery_confirmed, what="delivery confirmed in /metrics")

    # An XID 79 (fell off the bus) on the A100.
    nvml.emit_xid(1, 79)

    async def xid_seen() -> bool:
        return "node_agent_gpu_last_xid_timestamp_seconds" in await scrape(http, base)

    await eventually(xid_seen, what="XID in /metrics")

    async def balances_read() -> bool:  # at connect, then every 30 s
        return "node_agent_chain_wallet_unlocked_balance" in await scrape(http, base)

    await eventually(balances_read, what="payment Wallet in /metrics")
    families = await scrape(http, base)

    # Jobs and container calls are separate series; no "job" container any more.
    assert value(families, "node_agent_jobs_total", status="success") == 1
    calls = families["node_agent_container_calls"].samples
    assert {s.labels["container"] for s in calls if s.name.endswith("_total")} == {"echo"}
    # The job's step and the delivery's step.
    assert value(families, "node_agent_container_calls_total", status="success") == 2
    # Histograms observed by the real job, container calls, RPC requests and the delivery.
    assert value(families, "node_agent_job_duration_seconds_count", status="success") == 1
    assert value(families, "node_agent_job_duration_seconds_sum", status="success") > 0
    assert value(families, "node_agent_queue_wait_seconds_count", container="echo") == 1
    assert value(families, "node_agent_container_call_duration_seconds_count") == 2
    rpc = {
        s.labels["method"]: s.value
        for s in families["node_agent_chain_rpc_duration_seconds"].samples
        if s.name.endswith("_count")
    }
    assert rpc["eth_call"] >= 1 and rpc["eth_chainId"] >= 1  # by JSON-RPC method
    assert all(method == "batch" or method.startswith("eth_") for method in rpc), rpc
    assert value(families, "node_agent_chain_delivery_latency_blocks_count") == 1
    assert value(families, "node_agent_chain_deliveries_total", state="confirmed") == 1
    # Chain, orchestrator and health snapshots.
    assert value(families, "node_agent_chain_ready") == 1
    assert value(families, "node_agent_chain_head_block") == await net.w3.eth.block_number
    assert value(families, "node_agent_chain_lag_blocks") >= 0
    assert value(families, "node_agent_grid_connected") == 1
    assert value(families, "node_agent_grid_heartbeats_total") >= 1
    assert value(families, "node_agent_health_check", check="chain") == 1
    assert value(families, "node_agent_queue_capacity", container="echo") >= 0
    # Payments: the Wallet and the key's gas as read; no proof request, none refused or paid.
    assert value(families, "node_agent_chain_wallet_unlocked_balance", token=ETH) == WALLET_WEI
    assert value(families, "node_agent_chain_wallet_locked_balance", token=ETH) == 0
    assert 0 < value(families, "node_agent_chain_gas_balance_wei") <= 10**20
    assert value(families, "node_agent_chain_proof_requests", state="open") == 0
    assert value(families, "node_agent_chain_proof_outcomes_total", outcome="released") == 0
    assert families["node_agent_chain_payment_refusals"].samples == []

    # GPUs: the node's own series and dcgm-exporter's, the MIG slices with their labels.
    assert value(families, "node_agent_gpus") == 2
    assert value(families, "node_agent_gpu_healthy", uuid=H100) == 1
    gpu0 = {
        "gpu": "0",
        "UUID": H100,
        "modelName": "NVIDIA H100 80GB HBM3",
        "Hostname": socket.gethostname(),
    }
    assert value(families, "DCGM_FI_DEV_GPU_TEMP", **gpu0) == 31
    assert value(families, "DCGM_FI_DEV_FB_USED", **gpu0) == 65
    slices = {
        (s.labels["GPU_I_PROFILE"], s.labels["GPU_I_ID"]): s.value
        for s in families["DCGM_FI_DEV_FB_TOTAL"].samples
        if s.labels["UUID"] == A100 and "GPU_I_ID" in s.labels
    }
    assert slices == {("3g.40gb", "1"): 40960, ("3g.40gb", "2"): 40960}
    assert value(families, "DCGM_FI_DEV_XID_ERRORS", UUID=A100) == 79
    assert value(families, "DCGM_FI_DEV_XID_ERRORS", UUID=H100) == 0
    assert value(families, "node_agent_gpu_last_xid_timestamp_seconds", uuid=A100, xid="79") > 0

    # The dashboard and the alert rules use only what the agent exports.
    names = exported_names(families)
    for where, queries in (("dashboard", dashboard_queries()), ("rules", rule_queries())):
        used = {name for query in queries for name in METRIC_NAME.findall(query)}
        assert used, where
        assert used <= names, (where, sorted(used - names))
    dashboard_names = {n for q in dashboard_queries() for n in METRIC_NAME.findall(q)}
    for histogram in (
        "node_agent_job_duration_seconds",
        "node_agent_queue_wait_seconds",
        "node_agent_container_call_duration_seconds",
        "node_agent_chain_rpc_duration_seconds",
        "node_agent_chain_delivery_latency_blocks",
    ):
        assert histogram + "_bucket" in dashboard_names

    # A scraper asking for OpenMetrics gets it, with the same series.
    headers = {"Accept": "application/openmetrics-text; version=1.0.0; charset=utf-8"}
    async with http.get(f"{base}/metrics", headers=headers) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        text = await response.text()
    open_families = {f.name: f for f in openmetrics_families(text)}
    assert value(open_families, "node_agent_jobs_total", status="success") == 1
