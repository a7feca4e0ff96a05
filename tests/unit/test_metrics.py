"""The metrics object on its own: event series, snapshot series, bounds and formats.

Everything is read back through prometheus_client's own parsers, as a scraper would.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

import node_agent.metrics as metrics_module
from node_agent.containers.admission import gates_for
from node_agent.grid.reporter import GridStatus
from node_agent.metrics import AgentMetrics, NodeReading


def scrape(metrics: AgentMetrics) -> dict[str, Any]:
    body, content_type = metrics.render()
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    return {family.name: family for family in text_string_to_metric_families(body.decode())}


def values(family: Any, suffix: str = "", *labels: str) -> dict[tuple[str, ...], float]:
    """Sample values of ``family`` (only samples named family+suffix) keyed by ``labels``."""
    return {
        tuple(s.labels[n] for n in labels): s.value
        for s in family.samples
        if s.name == family.name + suffix
    }


def test_jobs_and_container_calls_are_separate_series() -> None:
    reading = NodeReading(
        jobs_finished={"success": 3, "failed": 1},
        jobs_running=2,
        queues=gates_for([("echo", 2, 4)]),
        containers=[{"id": "echo", "state": "running", "restarts": 2}],
    )
    metrics = AgentMetrics(lambda: reading)
    metrics.container_called("echo", True, 0.02)
    metrics.container_called("echo", False, 0.5)
    metrics.queue_waited("echo", 0.001)
    metrics.job_finished("success", 0.03)
    metrics.job_refused("echo")
    families = scrape(metrics)

    jobs = families["node_agent_jobs"]
    assert jobs.type == "counter"
    assert {tuple(s.labels) for s in jobs.samples} == {("status",)}  # no container label
    assert values(jobs, "_total", "status") == {("success",): 3, ("failed",): 1}
    calls = families["node_agent_container_calls"]
    assert values(calls, "_total", "container", "status") == {
        ("echo", "success"): 1,
        ("echo", "failed"): 1,
    }
    duration = families["node_agent_container_call_duration_seconds"]
    assert values(duration, "_count", "container") == {("echo",): 2}
    assert values(duration, "_sum", "container")[("echo",)] == pytest.approx(0.52)
    assert values(families["node_agent_queue_wait_seconds"], "_count", "container") == {
        ("echo",): 1
    }
    assert values(families["node_agent_job_duration_seconds"], "_count", "status") == {
        ("success",): 1
    }
    assert values(families["node_agent_jobs_refused"], "_total", "container") == {("echo",): 1}
    assert values(families["node_agent_queue_capacity"], "", "container") == {("echo",): 4}
    assert values(families["node_agent_queue_depth"], "", "container") == {("echo",): 0}
    assert values(families["node_agent_container_up"], "", "container") == {("echo",): 1}
    assert values(families["node_agent_container_restarts"], "_total", "container") == {
        ("echo",): 2
    }
    assert values(families["node_agent_jobs_running"]) == {(): 2}


def test_each_daemon_has_its_own_registry() -> None:
    first, second = AgentMetrics(), AgentMetrics()  # no "Duplicated timeseries" error
    first.rpc_called("eth_call", 0.01)
    assert values(scrape(first)["node_agent_chain_rpc_duration_seconds"], "_count", "method") == {
        ("eth_call",): 1
    }
    assert not values(scrape(second)["node_agent_chain_rpc_duration_seconds"], "_count", "method")


def test_series_of_containers_that_are_gone_are_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    readings = [NodeReading(queues=gates_for([("a", 1, 1), ("b", 1, 1)]))]
    metrics = AgentMetrics(lambda: readings[-1])
    for container in ("a", "b"):
        metrics.container_called(container, True, 0.1)
        metrics.queue_waited(container, 0.1)
    assert values(scrape(metrics)["node_agent_container_calls"], "_total", "container") == {
        ("a",): 1,
        ("b",): 1,
    }
    readings.append(NodeReading(queues=gates_for([("a", 1, 1)])))  # b ended (a workload)
    families = scrape(metrics)
    assert values(families["node_agent_container_calls"], "_total", "container") == {("a",): 1}
    assert set(values(families["node_agent_queue_wait_seconds"], "_count", "container")) == {("a",)}

    # Without scrapes, the label values stay bounded too.
    monkeypatch.setattr(metrics_module, "MAX_CONTAINER_SERIES", 2)
    readings.append(NodeReading(queues=gates_for([("d", 1, 1)])))
    for container in ("c", "d"):
        metrics.container_called(container, True, 0.1)
    assert metrics._containers == {"d"}


def test_chain_grid_health_and_delivery_series() -> None:
    reading = NodeReading(
        chain={
            "ready": True,
            "head": 120,
            "synced_block": 118,
            "lag": 2,
            "deliveries_in_flight": 1,
            "tracked_subscriptions": 3,
            "delegated_subscriptions": 1,
            "skipped_subscriptions": 0,
            "rpc_calls": 50,
            "rpc_failures": 2,
            "loop_failures": {"chain-sync": 0, "chain-confirm": 5},
        },
        grid=GridStatus(
            enabled=True,
            state="registered",
            heartbeats_sent=7,
            last_success_at=1_700_000_000.0,
        ),
        health={"jobs": "ok", "chain": "degraded", "gpus": "unhealthy"},
        draining=True,
    )
    metrics = AgentMetrics(lambda: reading)
    metrics.delivery_finished("confirmed", 3)
    metrics.delivery_finished("failed", None)
    families = scrape(metrics)
    assert values(families["node_agent_chain_lag_blocks"]) == {(): 2}
    assert values(families["node_agent_chain_head_block"]) == {(): 120}
    assert values(families["node_agent_chain_ready"]) == {(): 1}
    assert values(families["node_agent_chain_subscriptions"], "", "state") == {
        ("tracked",): 3,
        ("delegated",): 1,
        ("skipped",): 0,
    }
    assert values(families["node_agent_chain_loop_failures"], "", "loop") == {
        ("chain-sync",): 0,
        ("chain-confirm",): 5,
    }
    assert values(families["node_agent_chain_rpc_failures"], "_total") == {(): 2}
    assert values(families["node_agent_chain_deliveries"], "_total", "state") == {
        ("confirmed",): 1,
        ("failed",): 1,
    }
    blocks = families["node_agent_chain_delivery_latency_blocks"]
    assert values(blocks, "_count") == {(): 1} and values(blocks, "_sum") == {(): 3}
    assert values(families["node_agent_grid_connected"]) == {(): 1}
    assert values(families["node_agent_grid_heartbeats"], "_total") == {(): 7}
    assert values(families["node_agent_health_check"], "", "check") == {
        ("jobs",): 1,
        ("chain",): 0.5,
        ("gpus",): 0,
    }
    assert values(families["node_agent_draining"]) == {(): 1}
    # Head and lag are left out while unknown (not connected yet), never reported as 0.
    reading = NodeReading(chain={"ready": False, "head": None, "lag": None, "loop_failures": {}})
    families = scrape(metrics)
    assert "node_agent_chain_lag_blocks" not in families
    assert values(families["node_agent_chain_ready"]) == {(): 0}


ETH = "0x" + "00" * 20
TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def payments(wallet: dict[str, Any], balances: bool = True) -> dict[str, Any]:
    """/info's chain.payments as the service builds it (the fields metrics read)."""
    return {
        "refused": 1,
        "waiting": 3,
        "balances": {"read_at": 1_700_000_000.5, "gas_wei": str(3 * 10**18), "wallet": wallet}
        if balances
        else None,
        "proofs": {"pending": 1, "open": 2, "released": 7, "slashed": 1, "abandoned": 0},
    }


def test_payment_series_events_and_wallet_snapshot(monkeypatch: pytest.MonkeyPatch) -> None:
    wallet = {
        ETH: {"unlocked_wei": str(10**18 + 1), "locked_wei": "0"},
        TOKEN: {"unlocked_wei": "4000", "locked_wei": None},  # that read failed
    }
    reading = NodeReading(chain={"ready": True, "payments": payments(wallet)})
    metrics = AgentMetrics(lambda: reading)
    families = scrape(metrics)
    # Declared before the first event; the proof outcomes start at 0 so increase() sees the first.
    for name in ("paid_deliveries", "paid_amount", "payment_refusals"):
        assert families[f"node_agent_chain_{name}"].samples == []
    outcomes = families["node_agent_chain_proof_outcomes"]
    assert values(outcomes, "_total", "outcome") == {("released",): 0, ("slashed",): 0}

    metrics.payment_delivered(ETH, 10**16)
    metrics.payment_delivered(ETH, 10**16)
    metrics.payment_delivered(TOKEN, 5_000)
    metrics.payment_refused("consumer_underfunded")
    metrics.proof_settled("slashed")
    families = scrape(metrics)
    assert values(families["node_agent_chain_paid_deliveries"], "_total", "token") == {
        (ETH,): 2,
        (TOKEN,): 1,
    }
    assert values(families["node_agent_chain_paid_amount"], "_total", "token") == {
        (ETH,): 2 * 10**16,
        (TOKEN,): 5_000,
    }
    refusals = families["node_agent_chain_payment_refusals"]
    assert values(refusals, "_total", "code") == {("consumer_underfunded",): 1}
    assert values(families["node_agent_chain_proof_outcomes"], "_total", "outcome") == {
        ("released",): 0,
        ("slashed",): 1,
    }
    assert values(families["node_agent_chain_proof_requests"], "", "state") == {
        ("pending",): 1,
        ("open",): 2,
    }
    assert values(families["node_agent_chain_gas_balance_wei"]) == {(): 3e18}
    assert values(families["node_agent_chain_payments_waiting"]) == {(): 3}
    assert values(families["node_agent_chain_balances_read_timestamp_seconds"]) == {
        (): 1_700_000_000.5
    }
    assert values(families["node_agent_chain_wallet_unlocked_balance"], "", "token") == {
        (ETH,): float(10**18 + 1),
        (TOKEN,): 4000,
    }
    # A failed read is left out, not reported as 0.
    assert values(families["node_agent_chain_wallet_locked_balance"], "", "token") == {(ETH,): 0}

    # A token no longer read (the config changed) vanishes; no balances read yet: none shown.
    reading = NodeReading(chain={"ready": True, "payments": payments({ETH: wallet[ETH]})})
    families = scrape(metrics)
    assert set(values(families["node_agent_chain_wallet_unlocked_balance"], "", "token")) == {
        (ETH,)
    }
    reading = NodeReading(chain={"ready": True, "payments": payments({}, balances=False)})
    families = scrape(metrics)
    assert "node_agent_chain_gas_balance_wei" not in families
    assert "node_agent_chain_wallet_unlocked_balance" not in families
    assert values(families["node_agent_chain_proof_requests"], "", "state")[("open",)] == 2

    # Tokens beyond the cap are counted under "other" (any token pays a free container).
    monkeypatch.setattr(metrics_module, "MAX_TOKEN_SERIES", 3)
    for n in range(5):
        metrics.payment_delivered(f"0x{n:040x}", 1)
    paid = values(scrape(metrics)["node_agent_chain_paid_deliveries"], "_total", "token")
    assert paid == {(ETH,): 3, (TOKEN,): 1, ("0x" + "0" * 39 + "1",): 1, ("other",): 3}


def test_openmetrics_when_the_scraper_asks_for_it() -> None:
    metrics = AgentMetrics(lambda: NodeReading(jobs_finished={"success": 1}))
    metrics.job_finished("success", 0.2)
    body, content_type = metrics.render(
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
    )
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith(b"# EOF\n")
    families = {f.name: f for f in openmetrics_families(body.decode())}
    assert values(families["node_agent_jobs"], "_total", "status") == {("success",): 1}
    assert values(families["node_agent_job_duration_seconds"], "_count", "status") == {
        ("success",): 1
    }


async def test_scrape_reads_state_on_the_loop_and_writes_text_off_it() -> None:
    readers: list[int] = []

    def reading() -> NodeReading:
        readers.append(threading.get_ident())
        return NodeReading(jobs_finished={"success": 1})

    metrics = AgentMetrics(reading)
    answers = await asyncio.gather(
        metrics.scrape(), metrics.scrape(), metrics.scrape("application/openmetrics-text")
    )
    assert set(readers) == {threading.get_ident()}  # the loop's thread, the state's owner
    (plain, _), (again, _), (open_body, open_type) = answers
    assert plain == again == metrics.render()[0]
    assert open_type.startswith("application/openmetrics-text")
    assert values(
        {f.name: f for f in openmetrics_families(open_body.decode())}["node_agent_jobs"],
        "_total",
        "status",
    ) == {("success",): 1}
