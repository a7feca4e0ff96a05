"""Per-container admission control: a concurrency limit and a bounded queue.

Why: the reference node starts a task per request with no limit, so a burst piles up without
bound and every job gets slower. Here a job is admitted only while the container has room
(running + queued ≤ max_concurrency + queue_size); otherwise the client is told to come back
(503 + ``Retry-After``) before anything is stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from node_agent.errors import Overloaded


@dataclass
class ContainerGate:
    """Counts a container's admitted jobs; ``slots`` limits how many call it at once."""

    container_id: str
    max_concurrency: int
    queue_size: int
    admitted: int = 0
    running: int = 0

    def __post_init__(self) -> None:
        self.slots = asyncio.Semaphore(self.max_concurrency)

    @property
    def capacity(self) -> int:
        return self.max_concurrency + self.queue_size

    @property
    def queued(self) -> int:
        return max(0, self.admitted - self.running)


class Admission:
    """Reserves a place on every container of a chain, all or nothing."""

    def __init__(self, gates: Mapping[str, ContainerGate]) -> None:
        self.gates = dict(gates)

    def reserve(self, containers: Sequence[str]) -> Ticket:
        needed: dict[str, int] = {}
        for cid in containers:
            needed[cid] = needed.get(cid, 0) + 1
        for cid, count in needed.items():
            gate = self.gates[cid]
            if gate.admitted + count > gate.capacity:
                raise Overloaded(
                    "Container busy, retry later",
                    {"container": cid, "queued": gate.queued, "capacity": gate.capacity},
                    retry_after=1,
                )
        for cid, count in needed.items():
            self.gates[cid].admitted += count
        return Ticket(self, list(containers))

    def queue_depth(self) -> dict[str, int]:
        return {cid: gate.queued for cid, gate in self.gates.items()}


class Ticket:
    """A job's reservations; each is released when its step ends, the rest when the job does."""

    __slots__ = ("_admission", "_remaining")

    def __init__(self, admission: Admission, containers: list[str]) -> None:
        self._admission = admission
        self._remaining = containers

    def gate(self, container_id: str) -> ContainerGate:
        return self._admission.gates[container_id]

    def release_step(self, container_id: str) -> None:
        if container_id in self._remaining:
            self._remaining.remove(container_id)
            self._release(container_id)

    def release_all(self) -> None:
        for cid in self._remaining:
            self._release(cid)
        self._remaining = []

    def _release(self, container_id: str) -> None:
        # A workload served as a container may have ended (and its gate gone) meanwhile.
        gate = self._admission.gates.get(container_id)
        if gate is not None:
            gate.admitted -= 1


def gates_for(containers: Iterable[tuple[str, int, int]]) -> dict[str, ContainerGate]:
    return {cid: ContainerGate(cid, conc, queue) for cid, conc, queue in containers}
