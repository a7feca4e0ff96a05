"""Pull dispatch without Docker: assignment parsing, the ack/status buffer, the reporter's
hook and acks over real HTTP, and the status sender against the test orchestrator."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from node_agent.errors import BadRequest, Overloaded
from node_agent.grid.client import MAX_ASSIGNMENTS, OrchestratorClient, parse_assignments
from node_agent.grid.config import GridConfig
from node_agent.grid.identity import IdentityStore
from node_agent.grid.pull import Outgoing, StatusSender, refusal_reason, workload_entry
from node_agent.grid.reporter import ACK_FLUSH_DELAY, GridReporter
from node_agent.workloads.callbacks import DeliveryFailed
from node_agent.workloads.model import Workload, WorkloadStatus
from node_agent.workloads.store import OutboxItem
from tests.grid.orchestrator import API_KEY, Orchestrator, Scripted, running
from tests.grid.test_reporter import Harness, until


def test_assignments_are_checked_loosely() -> None:
    good = {"job_id": "jg-1", "image": "python:3.11"}
    accepted, refused = parse_assignments(
        [good, "nope", {"image": "x"}, {"job_id": 7}, {"job_id": ""}, {"job_id": "jg-2"}]
    )
    assert accepted == [good, {"job_id": "jg-2"}]
    assert [(r["job_id"], r["reason"]) for r in refused] == [
        (None, "assignment 1 is not an object"),
        (None, "assignment 2 has no job_id"),
        (None, "assignment 3 job_id must be a string of 1-256"),
        (None, "assignment 4 job_id must be a string of 1-256"),
    ]
    assert all(r["accepted"] is False for r in refused)
    assert parse_assignments(None) == ([], [])
    _, (bad,) = parse_assignments({"job_id": "x"})
    assert bad["reason"] == "assignments must be a list"
    many, over = parse_assignments([{"job_id": f"j{i}"} for i in range(MAX_ASSIGNMENTS + 2)])
    assert len(many) == MAX_ASSIGNMENTS
    assert [o["job_id"] for o in over] == [f"j{MAX_ASSIGNMENTS}", f"j{MAX_ASSIGNMENTS + 1}"]
    assert all(o["retryable"] for o in over)


def test_outgoing_keeps_entries_until_a_heartbeat_carrying_them_succeeds() -> None:
    out = Outgoing()
    out.ack({"job_id": "a", "accepted": True})
    out.workload({"job_id": "a", "status": "queued"})
    body: dict[str, Any] = {}
    mark = out.attach(body)
    assert body["assignment_acks"] == [{"job_id": "a", "accepted": True}]
    assert body["workloads"] == [{"job_id": "a", "status": "queued"}]
    out.workload({"job_id": "a", "status": "running"})  # arrives while the heartbeat is out
    again: dict[str, Any] = {}
    out.attach(again)  # the heartbeat failed: everything is still there
    assert len(again["workloads"]) == 2 and out.has_acks
    out.sent(mark)
    last: dict[str, Any] = {}
    out.attach(last)
    assert "assignment_acks" not in last and not out.has_acks
    assert last["workloads"] == [{"job_id": "a", "status": "running"}]


def test_outgoing_overflow_keeps_the_latest_entry_per_job() -> None:
    out = Outgoing(max_workloads=4, max_acks=2)
    for status in ("queued", "starting", "running"):
        out.workload({"job_id": "a", "status": status})
    out.workload({"job_id": "b", "status": "queued"})
    out.workload({"job_id": "b", "status": "running"})  # 5 > 4: collapse to one per job
    body: dict[str, Any] = {}
    out.attach(body)
    assert body["workloads"] == [
        {"job_id": "a", "status": "running"},
        {"job_id": "b", "status": "running"},
    ]
    for job in "cdef":
        out.workload({"job_id": job, "status": "queued"})
    out.attach(body)
    # Still over with one entry per job: the oldest jobs go.
    assert [w["job_id"] for w in body["workloads"]] == ["c", "d", "e", "f"]
    for job in "xyz":
        out.ack({"job_id": job})
    out.attach(body)
    assert [a["job_id"] for a in body["assignment_acks"]] == ["y", "z"]
    assert out.dropped == 3 + 2 + 1


def test_workload_entry_and_refusal_reason() -> None:
    job = Workload(
        id="wl-1",
        owner="grid",
        draft={},
        status=WorkloadStatus.FAILED,
        created_at=0.0,
        updated_at=1.5,
        origin="pull",
        grid_job_id="jg-9",
        exit_code=3,
        error="command exited with code 3",
    )
    assert workload_entry(job) == {
        "job_id": "jg-9",
        "node_job_id": "wl-1",
        "status": "failed",
        "exit_code": 3,
        "error": "command exited with code 3",
        "updated_at": "1970-01-01T00:00:01.500Z",
    }
    job.grid_job_id = None
    assert workload_entry(job) is None
    invalid = BadRequest("Invalid job", {"field": "workload_type", "problem": "must be one of"})
    assert refusal_reason(invalid) == "Invalid job: workload_type: must be one of"
    assert refusal_reason(Overloaded("Workload queue full", {"max_queued": 1})) == (
        "Workload queue full"
    )


def make_reporter(harness: Harness, **kwargs: Any) -> GridReporter:
    config = GridConfig(enabled=True, url=harness.orchestrator.url, api_key=API_KEY)
    return GridReporter(
        config,
        client=OrchestratorClient(harness.orchestrator.url, SecretStr(API_KEY), timeout=2.0),
        identity_store=IdentityStore(harness.state_dir),
        capacity=harness.capacity,
        job_counts=lambda: harness.counts,
        sleep=harness._sleep,
        rand=lambda: 0.5,
        **kwargs,
    )


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with running(Orchestrator()) as orchestrator:
        yield Harness(orchestrator, tmp_path)


async def test_assignments_reach_the_hook_and_acks_ride_the_next_successful_heartbeat(
    harness: Harness,
) -> None:
    orchestrator = harness.orchestrator
    seen: list[list[dict[str, Any]]] = []

    async def hook(assignments: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen.append(assignments)
        orchestrator.script = [Scripted(503)]  # the heartbeat carrying the acks fails once
        return [
            {"job_id": a["job_id"], "accepted": True, "node_job_id": "wl-1"} for a in assignments
        ]

    reporter = make_reporter(harness, on_assignments=hook, accepting=lambda: False)
    orchestrator.assign({"job_id": "jg-1", "image": "python:3.11"}, {"image": "no id"})
    reporter.start()
    await until(lambda: len(orchestrator.acks) >= 2)
    reporter.report_workload({"job_id": "jg-1", "status": "running"})
    await until(lambda: len(orchestrator.workloads) >= 1)
    beats = len(orchestrator.heartbeats)
    await until(lambda: len(orchestrator.heartbeats) >= beats + 2)
    await reporter.stop()

    assert seen == [[{"job_id": "jg-1", "image": "python:3.11"}]]
    assert ("heartbeat", 503) in orchestrator.seen
    # Recorded once although the first heartbeat carrying them failed.
    assert orchestrator.acks == [
        {
            "job_id": None,
            "accepted": False,
            "reason": "assignment 1 has no job_id",
            "retryable": False,
        },
        {"job_id": "jg-1", "accepted": True, "node_job_id": "wl-1"},
    ]
    assert orchestrator.workloads == [{"job_id": "jg-1", "status": "running"}]
    assert all(h["accepting_jobs"] is False for h in orchestrator.heartbeats)
    # Pending acks bring the next heartbeat forward instead of waiting the interval.
    assert ACK_FLUSH_DELAY in harness.sleeps


async def test_without_workloads_every_assignment_is_refused(harness: Harness) -> None:
    reporter = make_reporter(harness)
    harness.orchestrator.assign({"job_id": "jg-7", "image": "python:3.11"})
    reporter.start()
    await until(lambda: len(harness.orchestrator.acks) >= 1)
    await reporter.stop()
    assert harness.orchestrator.acks == [
        {
            "job_id": "jg-7",
            "accepted": False,
            "reason": "workloads are disabled on this node",
            "retryable": False,
        }
    ]
    assert harness.orchestrator.heartbeats[0]["accepting_jobs"] is True


def item(job_id: str, status: str = "running") -> OutboxItem:
    body = {"job_id": job_id, "node_job_id": "wl-1", "status": status, "exit_code": None}
    return OutboxItem(1, "grid", "wl-1", status, body, 0, None)


async def test_status_sender_posts_with_the_key_and_classifies_answers(
    harness: Harness,
) -> None:
    orchestrator = harness.orchestrator
    orchestrator.nodes["node_x"] = "node-1"
    orchestrator.assigned.add("jg-1")
    node_id: list[str | None] = [None]
    async with OrchestratorClient(orchestrator.url, SecretStr(API_KEY), timeout=2.0) as client:
        sender = StatusSender(client, lambda: node_id[0])
        with pytest.raises(DeliveryFailed, match="not registered") as not_yet:
            await sender(item("jg-1"))
        assert not_yet.value.final is False

        node_id[0] = "node-1"
        await sender(item("jg-1"))
        assert orchestrator.posts_for("jg-1") == [{"_node_id": "node-1", **item("jg-1").body}]

        with pytest.raises(DeliveryFailed) as unknown:
            await sender(item("jg-unknown"))
        assert unknown.value.final is True and "404" in str(unknown.value)

        orchestrator.status_script = [Scripted(503, headers={"Retry-After": "7"})]
        with pytest.raises(DeliveryFailed) as busy:
            await sender(item("jg-1"))
        assert busy.value.final is False and busy.value.retry_after == 7.0

    async with OrchestratorClient(
        orchestrator.url, SecretStr("jg_wrong_key"), timeout=2.0
    ) as wrong:
        with pytest.raises(DeliveryFailed) as denied:
            await StatusSender(wrong, lambda: "node-1")(item("jg-1"))
        assert denied.value.final is False and "jg_wrong_key" not in str(denied.value)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with OrchestratorClient(f"http://127.0.0.1:{port}", SecretStr(API_KEY)) as gone:
        with pytest.raises(DeliveryFailed) as unreachable:
            await StatusSender(gone, lambda: "node-1")(item("jg-1"))
        assert unreachable.value.final is False
    assert orchestrator.seen.count(("status", 200)) == 1
