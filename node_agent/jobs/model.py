"""Job data as the node keeps it and as infernet-client reads it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class JobLocation(enum.IntEnum):
    """Infernet's ``source``/``destination`` enum, sent to every service container."""

    ONCHAIN = 0
    OFFCHAIN = 1
    STREAM = 2


class JobStatus(enum.StrEnum):
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ContainerResult:
    """One container's output (or error) in a chain."""

    container: str
    output: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_wire(self) -> dict[str, Any]:
        if self.error is not None:
            return {"container": self.container, "error": self.error}
        return {"container": self.container, "output": self.output}

    @classmethod
    def from_wire(cls, raw: dict[str, Any]) -> ContainerResult:
        return cls(container=raw["container"], output=raw.get("output"), error=raw.get("error"))


@dataclass(slots=True)
class Job:
    """A job as stored: the last result is ``result``, earlier ones are intermediate."""

    id: str
    client: str
    containers: list[str]
    status: JobStatus = JobStatus.RUNNING
    results: list[ContainerResult] = field(default_factory=list)
    created_at: float = 0.0
    updated_at: float = 0.0
    # Kept so a job cut off by a crash can be re-run (jobs.on_restart: rerun).
    data: Any = None
    requires_proof: bool = False
    stream: bool = False

    @property
    def final(self) -> bool:
        return self.status is not JobStatus.RUNNING

    def to_wire(self, *, intermediate: bool) -> dict[str, Any]:
        """The JobResult object of ``GET /api/jobs`` (key order as the reference emits it)."""
        body: dict[str, Any] = {
            "id": self.id,
            "result": self.results[-1].to_wire() if self.results else None,
            "status": self.status.value,
        }
        if intermediate:
            body["intermediate_results"] = [r.to_wire() for r in self.results[:-1]]
        return body
