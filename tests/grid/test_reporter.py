"""GridReporter against a real aiohttp server speaking the orchestrator protocol."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from node_agent.gpu.model import CapacitySnapshot, GpuInventory, GpuState, GpuTelemetry, NodeFacts
from node_agent.grid.backoff import Backoff, jittered, parse_retry_after
from node_agent.grid.client import OrchestratorClient
from node_agent.grid.config import GridConfig
from node_agent.grid.identity import IdentityStore
from node_agent.grid.reporter import GridReporter
from tests.grid.orchestrator import API_KEY, Orchestrator, Scripted, running


class Capacity:
    def __init__(self) -> None:
        self.power_limit = 700.0
        self.temperature = 30

    def __call__(self) -> CapacitySnapshot:
        gpu = GpuState(
            inventory=GpuInventory(
                index=0,
                uuid="GPU-1",
                name="NVIDIA H100 80GB HBM3",
                family="h100",
                memory_total=85520809984,
                power_limit_w=self.power_limit,
            ),
            telemetry=GpuTelemetry(memory_used=1, temperature_c=self.temperature),
        )
        return CapacitySnapshot(
            collected_at=0.0,
            health="healthy",
            gpus=(gpu,),
            node=NodeFacts(driver_version="570.86.15", boot_id="b-1", machine_id="m-1"),
            nvml_available=True,
        )


class Harness:
    """Builds reporters with recorded sleeps (no real waiting) and a fixed jitter source."""

    def __init__(self, orchestrator: Orchestrator, state_dir: Path) -> None:
        self.orchestrator = orchestrator
        self.state_dir = state_dir
        self.sleeps: list[float] = []
        self.capacity = Capacity()
        self.counts = {"running": 2, "queued": 5, "completed": 10, "failed": 1}

    async def _sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        await asyncio.sleep(0.002)

    def reporter(
        self, *, api_key: str = API_KEY, url: str | None = None, **cfg: Any
    ) -> GridReporter:
        config = GridConfig(
            enabled=True,
            url=url or self.orchestrator.url,
            api_key=api_key,
            public_url="https://node.example:4000",
            region="eu-west",
            labels={"tier": "gold"},
            price_per_gpu_hour={"H100": 2.5},
            **cfg,
        )
        assert config.url and config.api_key
        return GridReporter(
            config,
            client=OrchestratorClient(config.url, config.api_key, timeout=2.0),
            identity_store=IdentityStore(self.state_dir),
            capacity=self.capacity,
            job_counts=lambda: self.counts,
            containers=["echo", "llm"],
            agent_version="0.1.0",
            sleep=self._sleep,
            rand=lambda: 0.5,
        )


async def until(predicate: Callable[[], bool], limit: float = 5.0) -> None:
    """Poll a condition the reporter's task will make true (bounded by ``limit``)."""
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110 - the state lives in the test server
            await asyncio.sleep(0.005)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running(Orchestrator()) as orchestrator:
        yield Harness(orchestrator, tmp_path)


async def test_register_then_heartbeats_with_complete_bodies(harness: Harness) -> None:
    reporter = harness.reporter()
    reporter.start()
    await until(lambda: len(harness.orchestrator.heartbeats) >= 3)
    await reporter.stop()

    (register,) = harness.orchestrator.registers
    assert register["identity"].startswith("node_")
    assert register["machine_id"] == "m-1" and register["boot_id"] == "b-1"
    assert register["public_url"] == "https://node.example:4000"
    assert register["region"] == "eu-west" and register["labels"] == {"tier": "gold"}
    assert register["price_per_gpu_hour"] == {"h100": 2.5}
    assert register["containers"] == ["echo", "llm"]
    assert register["agent_version"] == "0.1.0"
    assert register["gpus"][0]["family"] == "h100"
    assert register["node"]["driver_version"] == "570.86.15"
    assert register["inventory_hash"].startswith("sha256:")

    first, second = harness.orchestrator.heartbeats[:2]
    assert first["_node_id"] == "node-1"
    assert [first["seq"], second["seq"]] == [1, 2]
    assert first["jobs"] == harness.counts and first["queue_depth"] == 5
    assert first["gpus"][0]["uuid"] == "GPU-1" and first["gpus"][0]["temperature_c"] == 30
    assert first["health"] == "healthy" and first["accepting_jobs"] is True
    assert "inventory" not in first  # registration already carried it
    assert reporter.status().state == "stopped"
    # startup delay (0.5 * 10 s), then the heartbeat interval from the server, no jitter at 0.5
    assert harness.sleeps[0] == 5.0 and harness.sleeps[1:4] == [15.0, 15.0, 15.0]


async def test_inventory_resent_only_when_it_changes_or_is_asked_for(harness: Harness) -> None:
    reporter = harness.reporter()
    reporter.start()
    await until(lambda: len(harness.orchestrator.heartbeats) >= 2)
    harness.capacity.temperature = 80  # telemetry: no inventory
    await until(lambda: len(harness.orchestrator.heartbeats) >= 4)
    harness.capacity.power_limit = 600.0  # inventory change
    await until(
        lambda: any(
            h["inventory"]["gpus"][0]["power_limit_w"] == 600.0
            for h in harness.orchestrator.heartbeats
            if "inventory" in h
        )
    )
    harness.orchestrator.inventory_required_once = True
    count = len(harness.orchestrator.heartbeats)
    await until(lambda: len(harness.orchestrator.heartbeats) >= count + 3)
    await reporter.stop()
    with_inventory = [h["seq"] for h in harness.orchestrator.heartbeats if "inventory" in h]
    # one for the inventory change, one after the server asked for it
    assert len(with_inventory) == 2


async def test_backoff_under_503_and_retry_after(harness: Harness) -> None:
    harness.orchestrator.script = [
        Scripted(503),
        Scripted(503),
        Scripted(429, headers={"Retry-After": "42"}),
        Scripted(500),
    ]
    reporter = harness.reporter()
    reporter.start()
    await until(lambda: len(harness.orchestrator.heartbeats) >= 1)
    await reporter.stop()
    # rand = 0.5: full-jitter delays are half the ceiling 1, 2, (Retry-After 42 wins over 2), 8.
    assert harness.sleeps[1:5] == [0.5, 1.0, 42.0, 4.0]
    assert [s for s in harness.orchestrator.seen[:5]] == [
        ("register", 503),
        ("register", 503),
        ("register", 429),
        ("register", 500),
        ("register", 200),
    ]
    assert reporter.status().consecutive_failures == 0


async def test_401_is_shown_in_status_and_not_retried_fast(harness: Harness) -> None:
    reporter = harness.reporter(api_key="jg_wrong_key")
    reporter.start()
    await until(lambda: len(harness.sleeps) >= 3)
    status = reporter.status()
    await reporter.stop()
    assert status.state == "auth_failed" and "401" in (status.last_error or "")
    assert "jg_wrong_key" not in (status.last_error or "")
    assert harness.sleeps[1:3] == [300.0, 300.0]
    assert harness.orchestrator.registers == []


async def test_restart_keeps_the_same_node_id_and_identity(harness: Harness) -> None:
    first = harness.reporter()
    first.start()
    await until(lambda: len(harness.orchestrator.heartbeats) >= 1)
    await first.stop()
    stored = json.loads((harness.state_dir / "grid-identity.json").read_text())
    assert stored["node_id"] == "node-1"
    assert (harness.state_dir / "grid-identity.json").stat().st_mode & 0o777 == 0o600

    # The orchestrator forgets the node (e.g. its database was restored): 404 → re-register.
    harness.orchestrator.nodes.clear()
    harness.orchestrator.nodes[stored["identity"]] = "node-1"  # same identity → same id
    second = harness.reporter()
    second.start()
    await until(lambda: len(harness.orchestrator.heartbeats) >= 3)
    await second.stop()
    assert {h["_node_id"] for h in harness.orchestrator.heartbeats} == {"node-1"}
    assert len(harness.orchestrator.registers) == 1  # the restart reused the persisted node_id


async def test_forgotten_node_re_registers_with_same_identity(harness: Harness) -> None:
    reporter = harness.reporter()
    reporter.start()
    await until(lambda: len(harness.orchestrator.heartbeats) >= 1)
    identity = harness.orchestrator.registers[0]["identity"]
    harness.orchestrator.nodes.clear()  # next heartbeat gets 404
    beats = len(harness.orchestrator.heartbeats)
    await until(lambda: len(harness.orchestrator.registers) >= 2)
    await until(lambda: len(harness.orchestrator.heartbeats) > beats)
    await reporter.stop()
    assert harness.orchestrator.registers[1]["identity"] == identity
    assert harness.orchestrator.heartbeats[-1]["_node_id"] == "node-2"


async def test_unreachable_orchestrator_only_backs_off(harness: Harness) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    reporter = harness.reporter(url=f"http://127.0.0.1:{port}")
    reporter.start()
    await until(lambda: len(harness.sleeps) >= 8)
    status = reporter.status()
    await reporter.stop()
    assert status.state == "backing_off" and "unreachable" in (status.last_error or "")
    assert harness.sleeps[1:8] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]  # capped at 60 * 0.5


def test_disabled_reporter_does_nothing(tmp_path: Path) -> None:
    reporter = GridReporter(
        GridConfig(),
        client=None,
        identity_store=IdentityStore(tmp_path),
        capacity=Capacity(),
        job_counts=dict,
    )
    reporter.start()
    assert reporter.status().state == "disabled"
    assert not (tmp_path / "grid-identity.json").exists()


def test_pure_timing_helpers() -> None:
    backoff = Backoff(1.0, 60.0, rand=lambda: 0.999)
    delays = [backoff.next_delay() for _ in range(10)]
    assert delays[0] < 1.0 and max(delays) < 60.0 and delays[-1] == pytest.approx(59.94)
    backoff.reset()
    assert backoff.next_delay() < 1.0
    assert jittered(15, 0.2, lambda: 0.0) == 12.0 and jittered(15, 0.2, lambda: 1.0) == 18.0
    assert parse_retry_after("7", now=0) == 7.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", now=40.0) == 60.0
    assert parse_retry_after("soon", now=0) is None and parse_retry_after(None, now=0) is None


def test_config_requires_url_and_key_when_enabled() -> None:
    with pytest.raises(ValueError, match=r"grid\.url"):
        GridConfig(enabled=True, api_key="k")
    with pytest.raises(ValueError, match=r"grid\.api_key"):
        GridConfig(enabled=True, url="http://x")
    config = GridConfig.model_validate({"api_key": "jg_secret"})
    assert "jg_secret" not in repr(config)


def test_sections_parse_from_the_main_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from node_agent.config import parse_config

    monkeypatch.setenv("JG_KEY", "jg_from_env")
    config = parse_config(
        {
            "grid": {"enabled": True, "url": "https://grid.example", "api_key": {"env": "JG_KEY"}},
            "gpus": {"poll_interval": 2},
            "api_keys": {"required": True},
        }
    )
    assert config.grid.api_key is not None
    assert config.grid.api_key.get_secret_value() == "jg_from_env"
    assert config.gpus.poll_interval == 2 and config.api_keys.required is True
