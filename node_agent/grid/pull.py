"""Pull dispatch (docs/grid.md): the orchestrator hands the node draft jobs in heartbeat
answers; the node acknowledges each in the next heartbeat, runs the accepted ones as
workloads, and reports their status changes in the following heartbeats and at once through
``POST /v1/nodes/{node_id}/jobs/{job_id}/status``.

Every connection is opened by the node, so a provider behind NAT needs no inbound port.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from node_agent.errors import NodeAgentError, StoreError
from node_agent.grid.client import GridAuthError, GridError, GridHttpError, OrchestratorClient
from node_agent.workloads.callbacks import RETRYABLE_4XX, DeliveryFailed
from node_agent.workloads.model import Workload, iso
from node_agent.workloads.store import OutboxItem

if TYPE_CHECKING:
    from node_agent.workloads.service import WorkloadService

log = structlog.get_logger(__name__)

# Jobs pulled from the orchestrator belong to this principal (API key ids never take it).
GRID_OWNER = "grid"
AssignmentHook = Callable[[list[dict[str, Any]]], Awaitable[list[dict[str, Any]]]]


@dataclass
class Outgoing:
    """Acks and workload status entries waiting for a heartbeat the orchestrator answered 2xx.

    Each entry gets a sequence number; a heartbeat carries everything up to a mark and only a
    2xx answer removes it, so a failed heartbeat loses nothing. Status entries are bounded: on
    overflow only the latest entry per job is kept (it carries the newest status)."""

    max_workloads: int = 1000
    max_acks: int = 10_000
    _seq: int = 0
    _acks: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    _workloads: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    dropped: int = 0

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def ack(self, ack: Mapping[str, Any]) -> None:
        self._acks.append((self._next(), dict(ack)))
        if len(self._acks) > self.max_acks:
            # Oldest first: the orchestrator sends an unacknowledged job again, and a job
            # already stored is acknowledged again without running twice.
            self.dropped += len(self._acks) - self.max_acks
            del self._acks[: len(self._acks) - self.max_acks]

    def workload(self, entry: Mapping[str, Any]) -> None:
        self._workloads.append((self._next(), dict(entry)))
        if len(self._workloads) > self.max_workloads:
            latest: dict[Any, tuple[int, dict[str, Any]]] = {}
            for seq, item in self._workloads:
                latest[item.get("job_id")] = (seq, item)
            kept = sorted(latest.values(), key=lambda pair: pair[0])
            excess = max(0, len(kept) - self.max_workloads)
            self.dropped += len(self._workloads) - len(kept) + excess
            self._workloads = kept[excess:]

    @property
    def has_acks(self) -> bool:
        return bool(self._acks)

    def attach(self, body: dict[str, Any]) -> int:
        """Add what is pending to a heartbeat body; returns the mark to pass to :meth:`sent`."""
        if self._acks:
            body["assignment_acks"] = [a for _, a in self._acks]
        if self._workloads:
            body["workloads"] = [w for _, w in self._workloads]
        return self._seq

    def sent(self, mark: int) -> None:
        self._acks = [(s, a) for s, a in self._acks if s > mark]
        self._workloads = [(s, w) for s, w in self._workloads if s > mark]


def workload_entry(job: Workload) -> dict[str, Any] | None:
    """The heartbeat's ``workloads`` entry for a pulled job (None for a pushed one)."""
    if job.grid_job_id is None:
        return None
    return {
        "job_id": job.grid_job_id,
        "node_job_id": job.id,
        "status": job.status.value,
        "exit_code": job.exit_code,
        "error": job.error,
        "updated_at": iso(job.updated_at),
    }


def refusal_reason(exc: NodeAgentError) -> str:
    """One line naming the problem, e.g. ``Invalid job: workload_type: must be one of …``."""
    params = exc.params or {}
    details = [
        str(params[key])
        for key in ("field", "problem", "reason", "image")
        if params.get(key) is not None
    ]
    return ": ".join([exc.error, *details])[:500]


class WorkloadAssignments:
    """The reporter's assignment hook: accept (submit as a pulled workload) or refuse each."""

    def __init__(self, service: WorkloadService, *, draining: Callable[[], bool]) -> None:
        self._service = service
        self._draining = draining

    async def __call__(self, assignments: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [await self.one(a) for a in assignments]

    async def one(self, assignment: dict[str, Any]) -> dict[str, Any]:
        job_id = str(assignment["job_id"])
        existing = await self._service.store.by_grid_id(job_id)
        if existing is not None:
            # Sent again (our ack was lost, or the orchestrator retried): never run twice.
            return self._accepted(job_id, existing, duplicate=True)
        if self._draining():
            return _refused(job_id, "node is draining", retryable=True)
        draft = {k: v for k, v in assignment.items() if k != "job_id"}
        try:
            job, ignored = await self._service.submit(
                GRID_OWNER, draft, origin="pull", grid_job_id=job_id
            )
        except StoreError:
            existing = await self._service.store.by_grid_id(job_id)
            if existing is None:
                raise
            return self._accepted(job_id, existing, duplicate=True)
        except NodeAgentError as exc:
            log.info("grid.assignment_refused", job_id=job_id, reason=refusal_reason(exc))
            return _refused(job_id, refusal_reason(exc), retryable=exc.status >= 500)
        log.info("grid.assignment_accepted", job_id=job_id, node_job_id=job.id)
        ack = self._accepted(job_id, job, duplicate=False)
        if ignored:
            ack["ignored_fields"] = ignored
        return ack

    async def cancel(self, job_ids: list[str]) -> None:
        """Cancel pulled jobs by the orchestrator's id; unknown or final ones are ignored (a
        cancel is idempotent, and the status changes tell the orchestrator what happened)."""
        for grid_job_id in job_ids:
            job = await self._service.store.by_grid_id(grid_job_id)
            if job is None or job.origin != "pull":
                log.info("grid.cancel_unknown_job", job_id=grid_job_id)
                continue
            await self._service.cancel(job.owner, job.id)
            log.info("grid.cancel_requested", job_id=grid_job_id, node_job_id=job.id)

    @staticmethod
    def _accepted(job_id: str, job: Workload, *, duplicate: bool) -> dict[str, Any]:
        ack: dict[str, Any] = {
            "job_id": job_id,
            "accepted": True,
            "node_job_id": job.id,
            "status": job.status.value,
        }
        if duplicate:
            ack["duplicate"] = True
        return ack


def _refused(job_id: str, reason: str, *, retryable: bool) -> dict[str, Any]:
    return {"job_id": job_id, "accepted": False, "reason": reason, "retryable": retryable}


class StatusSender:
    """The workloads outbox's ``grid`` sender: one status POST per row, with the provider key.

    Errors become :class:`DeliveryFailed` so the outbox retries with backoff; an answer that
    will not change (400, 404, 422…) is final. Auth failures are retried: the provider may fix
    the key, and the number of attempts is bounded anyway."""

    def __init__(self, client: OrchestratorClient, node_id: Callable[[], str | None]) -> None:
        self._client = client
        self._node_id = node_id

    async def __call__(self, item: OutboxItem) -> None:
        node_id = self._node_id()
        if node_id is None:
            raise DeliveryFailed("node not registered with the orchestrator yet", final=False)
        job_id = item.body.get("job_id")
        if not isinstance(job_id, str):
            raise DeliveryFailed("row has no orchestrator job_id", final=True)
        try:
            await self._client.job_status(node_id, job_id, item.body)
        except GridAuthError as exc:
            raise DeliveryFailed(str(exc)[:200], final=False) from None
        except GridHttpError as exc:
            code = exc.http_status
            final = 400 <= code < 500 and code not in RETRYABLE_4XX
            raise DeliveryFailed(str(exc)[:200], final=final, retry_after=exc.retry_after) from None
        except GridError as exc:
            raise DeliveryFailed(str(exc)[:200], final=False) from None
