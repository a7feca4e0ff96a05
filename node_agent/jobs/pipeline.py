"""Runs a chain of service containers: the output of container i is the input of i+1 (§4)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from node_agent.containers.admission import Ticket
from node_agent.containers.service_client import ServiceClient, ServiceEndpoint
from node_agent.errors import ContainerError, ContainerUnreachable
from node_agent.jobs.model import ContainerResult, JobLocation
from node_agent.recorder import NO_RECORDER, Recorder


class EndpointDirectory(Protocol):
    """Where containers answer; implemented by the container manager."""

    def endpoint(self, container_id: str) -> ServiceEndpoint: ...

    def suspect(self, container_id: str) -> None: ...


@dataclass(slots=True)
class PipelineOutcome:
    results: list[ContainerResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r.ok for r in self.results)


def service_request(
    *, source: int, destination: int, data: Any, requires_proof: bool
) -> dict[str, Any]:
    return {
        "source": source,
        "destination": destination,
        "data": data,
        "requires_proof": requires_proof,
    }


class Pipeline:
    """Calls containers in order; stops at the first failure and keeps the results so far."""

    def __init__(
        self,
        directory: EndpointDirectory,
        client: ServiceClient,
        recorder: Recorder = NO_RECORDER,
    ) -> None:
        self._directory = directory
        self._client = client
        self.recorder = recorder

    async def run(
        self,
        containers: Sequence[str],
        data: Any,
        *,
        source: int,
        destination: int,
        requires_proof: bool,
        on_result: Callable[[ContainerResult], None] | None = None,
        ticket: Ticket | None = None,
    ) -> PipelineOutcome:
        outcome = PipelineOutcome()
        last = len(containers) - 1
        for step, container_id in enumerate(containers):
            body = service_request(
                source=source if step == 0 else JobLocation.OFFCHAIN,
                destination=destination if step == last else JobLocation.OFFCHAIN,
                data=data,
                requires_proof=requires_proof,
            )
            result = await self._call(container_id, body, ticket)
            outcome.results.append(result)
            if on_result is not None:
                on_result(result)
            if not result.ok:
                break
            data = result.output
        return outcome

    async def _call(
        self, container_id: str, body: dict[str, Any], ticket: Ticket | None
    ) -> ContainerResult:
        try:
            if ticket is None:
                output = await self._timed(container_id, body)
            else:
                gate = ticket.gate(container_id)
                waiting = time.monotonic()
                async with gate.slots:
                    self.recorder.queue_waited(container_id, time.monotonic() - waiting)
                    gate.running += 1
                    try:
                        output = await self._timed(container_id, body)
                    finally:
                        gate.running -= 1
                        ticket.release_step(container_id)
        except ContainerError as exc:
            if isinstance(exc, ContainerUnreachable):
                self._directory.suspect(container_id)
            return ContainerResult(container=container_id, error=exc.error)
        return ContainerResult(container=container_id, output=output)

    async def _timed(self, container_id: str, body: dict[str, Any]) -> Any:
        """One container call, reported to the recorder whatever its outcome."""
        began, ok = time.monotonic(), False
        try:
            # Looked up only now (a slot may have been awaited): a reload may have replaced it.
            output = await self._client.call(self._directory.endpoint(container_id), body)
            ok = True
            return output
        finally:
            self.recorder.container_called(container_id, ok, time.monotonic() - began)

    async def stream(
        self,
        containers: Sequence[str],
        data: Any,
        *,
        requires_proof: bool,
        timeout: float,
        ticket: Ticket | None = None,
    ) -> AsyncIterator[bytes]:
        """Run all but the last container normally, then relay the last one's stream.

        (The reference streams ``containers[0]`` and silently ignores the rest.)
        """
        head = list(containers[:-1])
        if head:
            outcome = await self.run(
                head,
                data,
                source=JobLocation.OFFCHAIN,
                destination=JobLocation.OFFCHAIN,
                requires_proof=requires_proof,
                ticket=ticket,
            )
            if not outcome.ok:
                failed = outcome.results[-1]
                raise ContainerError(failed.error or "container failed")
            data = outcome.results[-1].output
        last = containers[-1]
        body = service_request(
            source=JobLocation.OFFCHAIN,
            destination=JobLocation.STREAM,
            data=data,
            requires_proof=requires_proof,
        )
        gate = ticket.gate(last) if ticket is not None else None
        acquired = False
        began: float | None = None
        ok = False
        try:
            if gate is not None:
                # May wait long (a reload holds the gate): a cancel here must not release a
                # slot it never got.
                waiting = time.monotonic()
                await gate.slots.acquire()
                acquired = True
                self.recorder.queue_waited(last, time.monotonic() - waiting)
                gate.running += 1
            endpoint = self._directory.endpoint(last)
            began = time.monotonic()
            async for chunk in self._client.stream(endpoint, body, timeout=timeout):
                yield chunk
            ok = True
        finally:
            if began is not None:
                self.recorder.container_called(last, ok, time.monotonic() - began)
            if gate is not None and ticket is not None:
                if acquired:
                    gate.running -= 1
                    gate.slots.release()
                ticket.release_step(last)
