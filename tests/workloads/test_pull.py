"""Pull dispatch end to end: the test orchestrator hands out jobs in heartbeat answers, a real
daemon runs them in real Docker containers and reports back over real HTTP (acks, status
POSTs with the provider key, heartbeat ``workloads`` entries and counters)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from node_agent.daemon import Daemon
from tests.grid.orchestrator import API_KEY, Orchestrator, Scripted, running
from tests.support.agent import running_agent
from tests.workloads.support import draft, eventually, make_key, node_config

pytestmark = pytest.mark.docker
TOKEN = "cb-secret-7d1e0f"


@pytest.fixture
async def orchestrator() -> AsyncIterator[Orchestrator]:
    async with running(Orchestrator(heartbeat_interval=0.2)) as server:
        yield server


@pytest.fixture
async def node(orchestrator: Orchestrator, tmp_path: Path) -> AsyncIterator[Daemon]:
    raw = node_config([make_key()], callbacks={"backoff_initial": 0.2, "backoff_max": 1})
    raw["grid"] = {
        "enabled": True,
        "url": orchestrator.url,
        "api_key": API_KEY,
        "heartbeat_interval": 0.2,
        "heartbeat_jitter": 0,
        "startup_delay_max": 0,
    }
    async with running_agent(raw, tmp_path / "state") as (daemon, _):
        yield daemon


def statuses(entries: list[dict[str, Any]]) -> list[str]:
    return [e["status"] for e in entries]


async def test_pulled_workload_runs_and_is_reported(
    node: Daemon,
    orchestrator: Orchestrator,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The first status POST fails: the outbox retries it, in order, with the provider key.
    orchestrator.status_script = [Scripted(503)]
    good = {"job_id": "jg-ok", **draft("echo pulled; sleep 2")}
    orchestrator.assign(
        good,
        {
            "job_id": "jg-type",
            **draft("true", workload_type="training", callback_auth_token=TOKEN),
        },
        {"job_id": "jg-image", **draft("true", image="Not An Image!")},
        dict(good),  # the same job twice in one answer
    )

    async def acked() -> bool:
        return len(orchestrator.acks) >= 4

    await eventually(acked, what="four acks")
    first, wrong_type, wrong_image, twice = orchestrator.acks[:4]
    assert first["job_id"] == "jg-ok" and first["accepted"] is True
    assert first["status"] == "queued" and first["node_job_id"]
    node_job_id = first["node_job_id"]
    assert wrong_type["job_id"] == "jg-type" and wrong_type["accepted"] is False
    assert wrong_type["reason"].startswith("Invalid job: workload_type: ")
    assert wrong_type["retryable"] is False
    assert wrong_image["accepted"] is False and "image" in wrong_image["reason"]
    # The duplicate is acknowledged with the job's status at that moment: the job may already
    # be on its way (CI saw "starting"), never a second job.
    assert twice == {
        "job_id": "jg-ok",
        "accepted": True,
        "node_job_id": node_job_id,
        "status": twice["status"],
        "duplicate": True,
    }
    assert twice["status"] in {"queued", "pulling", "starting", "running"}

    async def running_counted() -> bool:
        return any(h["jobs"]["running"] >= 1 for h in orchestrator.heartbeats)

    await eventually(running_counted, what="a heartbeat counting the running workload")

    async def finished() -> bool:
        return any(p["status"] == "succeeded" for p in orchestrator.posts_for("jg-ok"))

    await eventually(finished, timeout=60, what="final status POST")
    posts = orchestrator.posts_for("jg-ok")
    assert statuses(posts)[-2:] == ["running", "succeeded"]
    assert len(set(statuses(posts))) == len(posts)  # one POST per status, in order
    final = posts[-1]
    assert final["exit_code"] == 0 and final["error"] is None
    assert final["node_job_id"] == node_job_id and final["_node_id"] == "node-1"
    assert ("status", 503) in orchestrator.seen  # retried after the scripted failure

    async def reported() -> bool:
        entries = [w for w in orchestrator.workloads if w["job_id"] == "jg-ok"]
        return bool(entries) and entries[-1]["status"] == "succeeded"

    await eventually(reported, what="heartbeat workloads entry for the final status")
    entries = [w for w in orchestrator.workloads if w["job_id"] == "jg-ok"]
    assert statuses(entries)[0] == "queued" and statuses(entries)[-2:] == ["running", "succeeded"]
    assert entries[-1] == {
        "job_id": "jg-ok",
        "node_job_id": node_job_id,
        "status": "succeeded",
        "exit_code": 0,
        "error": None,
        "updated_at": entries[-1]["updated_at"],
    }
    assert {w["job_id"] for w in orchestrator.workloads} == {"jg-ok"}

    # Sent again after it ran: acknowledged with its final status, never run twice.
    orchestrator.assign(dict(good))

    async def reacked() -> bool:
        return len(orchestrator.acks_for("jg-ok")) >= 3

    await eventually(reacked, what="ack of the repeated assignment")
    again = orchestrator.acks_for("jg-ok")[2]
    assert again["duplicate"] is True and again["node_job_id"] == node_job_id
    assert again["status"] == "succeeded"
    jobs, _ = await node.workloads.store.page("grid", limit=100, before_seq=None)
    assert [(j.grid_job_id, j.origin) for j in jobs] == [("jg-ok", "pull")]
    assert len(orchestrator.posts_for("jg-ok")) == len(posts)

    async def counted() -> bool:
        return any(h["jobs"]["succeeded"] >= 1 for h in orchestrator.heartbeats[-3:])

    await eventually(counted, what="succeeded counter")
    captured = capsys.readouterr()
    out = captured.out + captured.err + caplog.text
    assert "workload_status" in out or "grid.assignment_accepted" in out
    assert API_KEY not in out and TOKEN not in out  # secrets are never logged
    assert TOKEN not in str(orchestrator.acks)


async def test_draining_node_stops_accepting_and_refuses_assignments(
    node: Daemon, orchestrator: Orchestrator
) -> None:
    async def accepting() -> bool:
        return bool(orchestrator.heartbeats) and orchestrator.heartbeats[-1]["accepting_jobs"]

    await eventually(accepting, what="a heartbeat accepting jobs")
    assert node.ctx is not None
    node.ctx.draining = True
    beats = len(orchestrator.heartbeats)

    async def refusing() -> bool:
        later = orchestrator.heartbeats[beats:]
        return bool(later) and later[-1]["accepting_jobs"] is False

    await eventually(refusing, what="accepting_jobs false while draining")
    orchestrator.assign({"job_id": "jg-late", **draft("true")})

    async def refused() -> bool:
        return bool(orchestrator.acks_for("jg-late"))

    await eventually(refused, what="refusal while draining")
    assert orchestrator.acks_for("jg-late") == [
        {"job_id": "jg-late", "accepted": False, "reason": "node is draining", "retryable": True}
    ]
    assert await node.workloads.store.by_grid_id("jg-late") is None


async def test_orchestrator_cancels_a_pulled_job(node: Daemon, orchestrator: Orchestrator) -> None:
    orchestrator.assign({"job_id": "jg-long", **draft("sleep 60")})

    async def running() -> bool:
        return "running" in statuses(orchestrator.posts_for("jg-long"))

    await eventually(running, timeout=30, what="the pulled job running")
    # Unknown ids and junk are ignored; the known one is cancelled.
    orchestrator.cancellations = ["jg-long", "jg-unknown", 42]

    async def cancelled() -> bool:
        return "cancelled" in statuses(orchestrator.posts_for("jg-long"))

    await eventually(cancelled, timeout=30, what="the cancelled status POST")
    (final,) = [p for p in orchestrator.posts_for("jg-long") if p["status"] == "cancelled"]
    assert final["error"] == "cancelled by the client"
