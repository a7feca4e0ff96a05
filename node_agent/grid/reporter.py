"""GridReporter: registers the node and heartbeats capacity, forever, without ever failing jobs.

It is a single owned task. Every failure is classified: auth failures wait long and show in
:meth:`GridReporter.status`; overload and outages back off with full jitter and honour
``Retry-After``; a forgotten node re-registers under the same identity (same ``node_id``).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import structlog

from node_agent.gpu.model import CapacitySnapshot, GpuState, to_jsonable
from node_agent.grid.backoff import Backoff, jittered
from node_agent.grid.client import (
    GridAuthError,
    GridError,
    GridHttpError,
    GridNodeUnknown,
    OrchestratorClient,
)
from node_agent.grid.config import GridConfig
from node_agent.grid.identity import IdentityStore, NodeIdentity
from node_agent.grid.pull import AssignmentHook, Outgoing
from node_agent.tasks import cancel_and_wait

log = structlog.get_logger(__name__)

State = Literal["disabled", "starting", "registered", "backing_off", "auth_failed", "stopped"]
Sleep = Callable[[float], Awaitable[None]]
# Acks waiting to be sent bring the next heartbeat forward: the orchestrator learns at once
# whether its job was taken instead of an interval later.
ACK_FLUSH_DELAY = 1.0


@dataclass(frozen=True)
class GridStatus:
    enabled: bool
    state: State
    node_id: str | None = None
    last_success_at: float | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    heartbeats_sent: int = 0

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(self)  # type: ignore[no-any-return]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def gpu_telemetry_entry(gpu: GpuState) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "uuid": gpu.inventory.uuid,
        "index": gpu.inventory.index,
        "health": gpu.health,
        "reasons": list(gpu.reasons),
    }
    entry.update(to_jsonable(gpu.telemetry))
    return entry


class GridReporter:
    def __init__(
        self,
        config: GridConfig,
        *,
        client: OrchestratorClient | None,
        identity_store: IdentityStore,
        capacity: Callable[[], CapacitySnapshot],
        job_counts: Callable[[], Mapping[str, int]],
        containers: Sequence[str] = (),
        agent_version: str = "0",
        accepting: Callable[[], bool] | None = None,
        on_assignments: AssignmentHook | None = None,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._client = client
        self._identity_store = identity_store
        self._capacity = capacity
        self._job_counts = job_counts
        self._containers = list(containers)
        self._agent_version = agent_version
        self._accepting = accepting
        self.on_assignments = on_assignments
        # Pulled jobs the orchestrator wants cancelled (their status changes report the result).
        self.on_cancellations: Callable[[list[str]], Awaitable[None]] | None = None
        # Acks and workload status entries for the next heartbeats (pull dispatch).
        self.outgoing = Outgoing()
        self._sleep = sleep
        self._rand = rand
        self._clock = clock
        self._backoff = Backoff(config.backoff_initial, config.backoff_max, rand)
        self._interval = config.heartbeat_interval
        self._identity: NodeIdentity | None = None
        self._seq = 0
        self._acked_inventory_hash: str | None = None
        self._last_full_inventory_at = 0.0
        self._inventory_required = False
        self._task: asyncio.Task[None] | None = None
        self._status = GridStatus(
            enabled=config.enabled and client is not None,
            state="starting" if config.enabled and client is not None else "disabled",
        )

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        if not self._status.enabled or self._task is not None:
            return
        self._task = asyncio.create_task(self._run(), name="grid-reporter")
        self._task.add_done_callback(self._task_done)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
        if self._client is not None:
            await self._client.close()
        if self._status.enabled:
            self._set(state="stopped")

    def status(self) -> GridStatus:
        return self._status

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("grid.reporter_died", error=repr(task.exception()))

    def _set(self, **changes: Any) -> None:
        self._status = GridStatus(**{**self._status.to_dict(), **changes})

    # --- loop ------------------------------------------------------------------------------

    async def _run(self) -> None:
        # Spread a fleet-wide restart so every node does not register in the same second.
        await self._sleep(self._rand() * self._config.startup_delay_max)
        self._identity = await asyncio.to_thread(self._identity_store.load_or_create)
        self._set(node_id=self._identity.node_id)
        while True:
            delay = await self._step()
            await self._sleep(delay)

    async def _step(self) -> float:
        """One register or heartbeat attempt; returns how long to wait before the next."""
        assert self._identity is not None
        try:
            if self._identity.node_id is None:
                await self._register()
            else:
                await self._heartbeat(self._identity.node_id)
        except GridAuthError as exc:
            self._failed(exc, state="auth_failed")
            return self._config.auth_retry_seconds
        except GridNodeUnknown as exc:
            log.warning("grid.node_unknown", node_id=self._identity.node_id)
            self._identity = NodeIdentity(identity=self._identity.identity, node_id=None)
            self._failed(exc, state="backing_off")
            return self._backoff.next_delay()
        except GridError as exc:
            self._failed(exc, state="backing_off")
            retry_after = exc.retry_after if isinstance(exc, GridHttpError) else None
            return max(retry_after or 0.0, self._backoff.next_delay())
        except Exception as exc:  # a bug in body building must not kill reporting
            log.exception("grid.step_failed")
            self._failed(exc, state="backing_off")
            return self._backoff.next_delay()
        self._backoff.reset()
        if self._status.state != "registered":
            log.info("grid.connected", node_id=self._identity.node_id)
        self._set(
            state="registered",
            node_id=self._identity.node_id,
            last_success_at=self._clock(),
            last_error=None,
            consecutive_failures=0,
        )
        delay = jittered(self._interval, self._config.heartbeat_jitter, self._rand)
        return min(delay, ACK_FLUSH_DELAY) if self.outgoing.has_acks else delay

    def _failed(self, exc: Exception, *, state: State) -> None:
        message = str(exc) or type(exc).__name__
        if state != self._status.state or message != self._status.last_error:
            # Log on transitions only: an hour of outage is one line, not 240.
            log.warning("grid.request_failed", state=state, error=message)
        self._set(
            state=state,
            last_error=message,
            consecutive_failures=self._status.consecutive_failures + 1,
        )

    async def _register(self) -> None:
        assert self._identity is not None and self._client is not None
        snapshot = self._capacity()
        result = await self._client.register(
            self.register_body(snapshot), idempotency_key=self._identity.identity
        )
        self._identity = await asyncio.to_thread(self._identity_store.save_node_id, result.node_id)
        if result.heartbeat_interval:
            self._interval = result.heartbeat_interval
        self._acked_inventory_hash = snapshot.inventory_hash()
        self._last_full_inventory_at = self._clock()
        log.info("grid.registered", node_id=result.node_id)

    async def _heartbeat(self, node_id: str) -> None:
        assert self._client is not None
        snapshot = self._capacity()
        inventory_hash = snapshot.inventory_hash()
        include = (
            self._inventory_required
            or inventory_hash != self._acked_inventory_hash
            or self._clock() - self._last_full_inventory_at >= self._config.full_inventory_every
        )
        body = self.heartbeat_body(snapshot, include_inventory=include)
        mark = self.outgoing.attach(body)
        result = await self._client.heartbeat(node_id, body)
        self.outgoing.sent(mark)
        if include:
            self._acked_inventory_hash = inventory_hash
            self._last_full_inventory_at = self._clock()
        self._inventory_required = result.inventory_required
        if result.heartbeat_interval:
            self._interval = result.heartbeat_interval
        self._set(heartbeats_sent=self._status.heartbeats_sent + 1)
        if result.assignments or result.refused:
            await self._assign(list(result.assignments), list(result.refused))
        if result.cancellations and self.on_cancellations is not None:
            try:
                await self.on_cancellations(list(result.cancellations))
            except Exception:
                log.exception("grid.cancellations_failed", count=len(result.cancellations))

    async def _assign(
        self, assignments: list[dict[str, Any]], refused: list[dict[str, Any]]
    ) -> None:
        """Accept or refuse each assignment; the acks go in the next heartbeat. A crash here
        acks nothing: the orchestrator sends the jobs again and stored ones are not rerun."""
        for ack in refused:
            log.warning("grid.assignment_unreadable", job_id=ack["job_id"], reason=ack["reason"])
            self.outgoing.ack(ack)
        if not assignments:
            return
        if self.on_assignments is None:
            for assignment in assignments:
                self.outgoing.ack(
                    {
                        "job_id": assignment["job_id"],
                        "accepted": False,
                        "reason": "workloads are disabled on this node",
                        "retryable": False,
                    }
                )
            return
        try:
            acks = await self.on_assignments(assignments)
        except Exception:
            log.exception("grid.assignments_failed", count=len(assignments))
            return
        for ack in acks:
            self.outgoing.ack(ack)

    def report_workload(self, entry: Mapping[str, Any]) -> None:
        """A pulled job's status change, for the next heartbeat's ``workloads``."""
        self.outgoing.workload(entry)

    # --- bodies ----------------------------------------------------------------------------

    def _counts(self) -> dict[str, int]:
        try:
            return {str(k): int(v) for k, v in self._job_counts().items()}
        except Exception:
            log.exception("grid.job_counts_failed")
            return {}

    def _accepting_now(self) -> bool:
        if self._accepting is None:
            return True
        try:
            return bool(self._accepting())
        except Exception:
            log.exception("grid.accepting_failed")
            return False

    def register_body(self, snapshot: CapacitySnapshot) -> dict[str, Any]:
        assert self._identity is not None
        node = to_jsonable(snapshot.node)
        return {
            "identity": self._identity.identity,
            "machine_id": snapshot.node.machine_id,
            "boot_id": snapshot.node.boot_id,
            "agent_version": self._agent_version,
            "public_url": self._config.public_url,
            "region": self._config.region,
            "labels": dict(self._config.labels),
            "price_per_gpu_hour": dict(self._config.price_per_gpu_hour),
            "containers": list(self._containers),
            "health": snapshot.health,
            "reasons": list(snapshot.reasons),
            "node": node,
            "gpus": snapshot.inventory(),
            "inventory_hash": snapshot.inventory_hash(),
        }

    def heartbeat_body(
        self, snapshot: CapacitySnapshot, *, include_inventory: bool
    ) -> dict[str, Any]:
        self._seq += 1
        counts = self._counts()
        body: dict[str, Any] = {
            "seq": self._seq,
            "sent_at": _iso(self._clock()),
            "boot_id": snapshot.node.boot_id,
            "health": snapshot.health,
            "reasons": list(snapshot.reasons),
            "accepting_jobs": snapshot.health != "unhealthy" and self._accepting_now(),
            "gpus": [gpu_telemetry_entry(g) for g in snapshot.gpus],
            "jobs": counts,
            "queue_depth": counts.get("queued", 0),
            "inventory_hash": snapshot.inventory_hash(),
        }
        if include_inventory:
            body["inventory"] = {"node": to_jsonable(snapshot.node), "gpus": snapshot.inventory()}
        return body
