"""What the chain side needs from the core's pipeline (the lead's ``Pipeline`` satisfies it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

ONCHAIN = 0
OFFCHAIN = 1
STREAM = 2


class ContainerResult(Protocol):
    container: str
    output: Any | None
    error: str | None


class PipelineOutcome(Protocol):
    results: list[ContainerResult]  # one per container run, in order

    @property
    def ok(self) -> bool: ...  # all containers succeeded


class JobRunner(Protocol):
    async def run(
        self,
        containers: Sequence[str],
        data: Any,
        *,
        source: int,
        destination: int,
        requires_proof: bool,
    ) -> PipelineOutcome: ...
