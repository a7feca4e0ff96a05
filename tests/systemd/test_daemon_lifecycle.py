"""The agent as systemd runs it: a real process, a notify socket the test owns, real Docker
containers, signals. READY/WATCHDOG/STATUS/STOPPING, the SIGTERM drain and SIGHUP reloads."""

from __future__ import annotations

import itertools
import signal
import statistics
import time
from collections.abc import Callable

import pytest

from tests.systemd.agentproc import Agent, answers, http, service, unique_id, wait_until
from tests.systemd.notifysocket import NotifySocket

pytestmark = pytest.mark.docker

AgentFactory = Callable[[list[dict[str, object]]], Agent]


def test_ready_only_after_containers_then_watchdog_status_stopping(
    agent_factory: AgentFactory, notify_socket: NotifySocket
) -> None:
    slow = service(unique_id("slow"), STARTUP_DELAY="3")
    agent = agent_factory([slow])
    agent.start(watchdog_usec=400_000)

    # The API answers first, while the container is still starting: no READY yet.
    wait_until(lambda: answers(f"{agent.url}/health"), timeout=30)
    notify_socket.drain()
    assert notify_socket.messages("READY") == []
    assert not answers(f"http://127.0.0.1:{slow['port']}/")

    ready = notify_socket.wait_for("READY", "1", timeout=60)
    # At READY the container serves, and the node lists it as running.
    assert answers(f"http://127.0.0.1:{slow['port']}/")
    status, info = http("GET", f"{agent.url}/info")
    assert status == 200
    assert [c["id"] for c in info["containers"]] == [slow["id"]]
    assert "containers 1/1 running" in ready["STATUS"]
    assert any(f.get("STATUS") == "starting" for _, f in notify_socket.received)

    # WATCHDOG=1 at half of WATCHDOG_USEC (0.4 s → every 0.2 s), from the running loop.
    time.sleep(2.0)
    pings = [t for t, _ in notify_socket.messages("WATCHDOG")]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert len(pings) >= 8
    assert 0.15 <= statistics.median(gaps) <= 0.3

    # STATUS= follows the node's state while it serves.
    job_id = agent.submit(slow["id"], sleep=7)
    busy = notify_socket.wait_for("STATUS", timeout=10)
    while "1 jobs in flight" not in busy["STATUS"]:
        busy = notify_socket.wait_for("STATUS", timeout=10)
    assert agent.job(job_id, wait=15)["status"] == "success"

    agent.signal(signal.SIGTERM)
    stopping = notify_socket.wait_for("STOPPING", "1", timeout=10)
    assert "draining" in stopping["STATUS"]
    assert agent.wait_exit(timeout=60) == 0
    notify_socket.drain()
    last = notify_socket.received[-1][1]
    assert last.get("STATUS") == "stopped"


def test_sigterm_drains_in_flight_jobs_and_refuses_new_ones(
    agent_factory: AgentFactory, notify_socket: NotifySocket
) -> None:
    slow = service(unique_id("drain"))
    agent = agent_factory([slow])
    agent.start()
    notify_socket.wait_for("READY", "1", timeout=60)

    jobs = [agent.submit(slow["id"], sleep=3, n=i) for i in range(3)]
    started = time.monotonic()
    agent.signal(signal.SIGTERM)
    notify_socket.wait_for("STOPPING", "1", timeout=10)

    # During the drain: new work gets a JSON 503, reads still work.
    status, body = http("POST", f"{agent.url}/api/jobs", {"containers": [slow["id"]], "data": {}})
    assert status == 503
    assert body["error"] == "Node is shutting down"
    status, _ = http("GET", f"{agent.url}/api/jobs?id={jobs[0]}")
    assert status == 200

    assert agent.wait_exit(timeout=60) == 0
    assert time.monotonic() - started >= 2.5  # it waited for the jobs, not killed them

    # The next start finds every job finished with its output (none cut off by the stop),
    # in the store under $STATE_DIRECTORY.
    assert (agent.state_dir / "jobs.sqlite").exists()
    agent.start()
    notify_socket.wait_for("READY", "1", timeout=60)
    for index, job_id in enumerate(jobs):
        job = agent.job(job_id)
        assert job["status"] == "success", job
        assert job["result"]["output"]["echo"] == {"sleep": 3, "n": index}
    agent.signal(signal.SIGTERM)
    assert agent.wait_exit(timeout=60) == 0


def test_reload_applies_added_removed_and_changed_containers_without_losing_jobs(
    agent_factory: AgentFactory, notify_socket: NotifySocket
) -> None:
    keep = service(unique_id("keep"))
    change = service(unique_id("change"), VERSION="v1")
    remove = service(unique_id("remove"))
    agent = agent_factory([keep, change, remove])
    agent.start()
    notify_socket.wait_for("READY", "1", timeout=90)

    in_flight = {
        name: agent.submit(container["id"], sleep=3)
        for name, container in (("keep", keep), ("change", change), ("remove", remove))
    }
    add = service(unique_id("add"))
    changed = {**change, "env": {"VERSION": "v2"}}
    agent.write_config([keep, changed, add])
    agent.signal(signal.SIGHUP)

    reloading = notify_socket.wait_for("RELOADING", "1", timeout=10)
    assert int(reloading["MONOTONIC_USEC"]) > 0
    # The new config takes over intake once it is parsed and checked (a job sent before that
    # rightly runs on the old container): wait for that point, which the agent logs.
    wait_until(lambda: any(e.get("event") == "reload_applying" for e in agent.log_events()), 30)
    # Sent while the old "change" still finishes its job: held until the new one is up.
    during = {"change": agent.submit(change["id"]), "add": agent.submit(add["id"])}
    done = notify_socket.wait_for("READY", "1", timeout=90)
    assert "refused" not in done["STATUS"]

    # None of the jobs that were running is lost: each ends with the old container's answer.
    for name, job_id in in_flight.items():
        job = agent.job(job_id, wait=30)
        assert job["status"] == "success", (name, job)
        assert job["result"]["output"]["version"] == "v1"

    for name, job_id in during.items():
        job = agent.job(job_id, wait=30)
        assert job["status"] == "success", (name, job)
        expected = "v2" if name == "change" else "v1"
        assert job["result"]["output"]["version"] == expected

    # The new set serves: the added one, the changed one as v2; the removed one is gone.
    assert agent.job(agent.submit(add["id"]), wait=10)["status"] == "success"
    assert agent.job(agent.submit(change["id"]), wait=10)["result"]["output"]["version"] == "v2"
    status, body = http("POST", f"{agent.url}/api/jobs", {"containers": [remove["id"]], "data": {}})
    assert status >= 400 and "error" in body
    wait_until(lambda: not answers(f"http://127.0.0.1:{remove['port']}/"), timeout=10)

    # A broken config is refused; the running one keeps serving.
    agent.config_path.write_text("containers: [{id: 'bad id!', image: x}]\n")
    agent.signal(signal.SIGHUP)
    refused = notify_socket.wait_for("READY", "1", timeout=30)
    assert refused["STATUS"].startswith("reload refused")
    assert agent.job(agent.submit(keep["id"]), wait=10)["status"] == "success"
    assert any(e.get("event") == "reload_refused" for e in agent.log_events())

    agent.signal(signal.SIGTERM)
    assert agent.wait_exit(timeout=60) == 0
