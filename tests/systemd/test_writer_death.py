"""The job store's writer thread dies: writes fail fast, /health is red, the watchdog stops.

systemd then restarts the node, and recovery at start finalises every job the dead writer
left ``running`` on disk (here: a job whose final state was lost with the writer)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp

from node_agent.jobs.store import INTERRUPTED_ERROR
from node_agent.sdnotify import Notifier, Watchdog
from tests.conftest import unmanaged_config
from tests.support.agent import running_agent
from tests.support.service import ProtocolService
from tests.systemd.notifysocket import NotifySocket


async def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.01)


async def test_writer_death_fails_writes_turns_health_red_and_stops_the_watchdog(
    services: dict[str, tuple[ProtocolService, str]],
    tmp_path: Path,
    http: aiohttp.ClientSession,
    notify_socket: NotifySocket,
) -> None:
    raw = unmanaged_config(services)
    state = tmp_path / "state"
    slow = {"containers": ["first"], "data": {"mode": "sleep", "seconds": 0.3}}
    async with running_agent(raw, state) as (daemon, url):
        watchdog = Watchdog(Notifier(notify_socket.env_value), 0.1, healthy=daemon.core_alive)
        watchdog.start()
        try:
            await wait_until(lambda: len(notify_socket.messages("WATCHDOG")) >= 2)
            async with http.get(f"{url}/health") as resp:
                assert resp.status == 200
                assert (await resp.json())["checks"]["jobs"]["status"] == "ok"
            async with http.post(f"{url}/api/jobs", json=slow) as resp:
                assert resp.status == 200
                job_id = (await resp.json())["id"]

            daemon.store._writer.fault = RuntimeError("injected writer fault")
            # The next write reaches the writer, which dies on it: a JSON 503 at once.
            async with http.post(f"{url}/api/jobs", json=slow) as resp:
                assert resp.status == 503
                body = await resp.json()
            assert body["error"].startswith("Job store unavailable")
            assert "injected writer fault" in body["params"]["reason"]
            # Later writes fail before reaching the store, within the request's own time.
            async with asyncio.timeout(5):
                async with http.post(f"{url}/api/jobs", json=slow) as resp:
                    assert resp.status == 503
                    assert (await resp.json())["error"].startswith("Job store unavailable")
                async with http.post(f"{url}/api/jobs/batch", json=[slow, slow]) as resp:
                    assert resp.status == 200
                    answers = await resp.json()
                assert [a["error"][:21] for a in answers] == ["Job store unavailable"] * 2
                async with http.get(f"{url}/api/jobs") as resp:
                    assert resp.status == 503
            async with http.get(f"{url}/health") as resp:
                assert resp.status == 503
                health = await resp.json()
            assert health["status"] == "unhealthy"
            assert health["checks"]["jobs"]["status"] == "unhealthy"
            assert "writer stopped" in health["checks"]["jobs"]["reason"]

            # The pings stop: wait two periods past the last one, then count again.
            pings = len(notify_socket.messages("WATCHDOG"))
            await asyncio.sleep(0.35)
            assert len(notify_socket.messages("WATCHDOG")) == pings
            # The first job ends in memory; its final state cannot be written.
            await wait_until(lambda: daemon.store.running_count() == 0)
        finally:
            await watchdog.stop()

    # What systemd does next: a fresh start, whose recovery finalises the job left running.
    async with running_agent(raw, state) as (_, url):
        async with http.get(f"{url}/api/jobs?id={job_id}") as resp:
            [job] = await resp.json()
        assert job["status"] == "failed"
        assert job["result"]["error"] == INTERRUPTED_ERROR
        async with http.get(f"{url}/health") as resp:
            assert resp.status == 200
