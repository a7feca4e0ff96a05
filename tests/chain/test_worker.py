"""The chain worker: the chain side runs on its own thread and loop, container runs cross back
to the API loop (cancellation included), delegated requests cross over with their errors, and
the API reads published snapshots. A stand-in chain side records where each call ran; the
real ChainService through the real daemon is exercised by test_daemon_chain.py and the burst."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from node_agent.chain.runner import JobRunner
from node_agent.chain.worker import ChainWorker
from node_agent.errors import GuardianRejection


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


@dataclass
class Outcome:
    results: list[Any]

    @property
    def ok(self) -> bool:
        return True


@dataclass
class RecordingRunner:
    """The API loop's pipeline: records the thread each run ran on; can hang until cancelled."""

    hang: bool = False
    threads: list[int] = field(default_factory=list)
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(
        self,
        containers: Sequence[str],
        data: Any,
        *,
        source: int,
        destination: int,
        requires_proof: bool,
    ) -> Outcome:
        self.threads.append(threading.get_ident())
        if self.hang:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
        return Outcome(results=[{"containers": list(containers), "data": data}])


class StandInChain:
    """Counts its deliveries on whatever thread it runs on; the worker must keep it on one."""

    def __init__(self, runner: JobRunner, *, fail_start: bool = False) -> None:
        self.runner = runner
        self.fail_start = fail_start
        self.threads: set[int] = set()
        self.delivered = 0
        self.stopped_with: float | None = None
        self.delegated: list[Mapping[str, Any]] = []
        self.task: asyncio.Task[Any] | None = None

    @property
    def address(self) -> str:
        return "0xnode"

    async def start(self) -> None:
        self.threads.add(threading.get_ident())
        if self.fail_start:
            raise RuntimeError("no key")

    async def stop(self, grace: float = 10.0) -> None:
        self.threads.add(threading.get_ident())
        self.stopped_with = grace

    async def deliver(self, data: Any) -> Any:
        self.threads.add(threading.get_ident())
        outcome = await self.runner.run(
            ["echo"], data, source=0, destination=0, requires_proof=False
        )
        self.threads.add(threading.get_ident())
        self.delivered += 1
        return outcome

    def status(self) -> dict[str, Any]:
        self.threads.add(threading.get_ident())
        return {"enabled": True, "delivered": self.delivered, "delegated": len(self.delegated)}

    def health(self) -> dict[str, Any]:
        return {"status": "ok", **self.status()}

    def pending_count(self) -> int:
        return len(self.delegated)

    async def accept_delegated(self, body: Mapping[str, Any], client_ip: str) -> None:
        self.threads.add(threading.get_ident())
        if body.get("bad"):
            raise GuardianRejection("Invalid signature", {"reason": "test"})
        self.delegated.append(body)


async def started(runner: RecordingRunner, **kwargs: Any) -> tuple[ChainWorker, list[StandInChain]]:
    built: list[StandInChain] = []

    def build(bridged: JobRunner) -> StandInChain:
        built.append(StandInChain(bridged, **kwargs))
        return built[-1]

    worker = ChainWorker(build, runner, status_every=0.02)
    await worker.start()
    return worker, built


async def on_chain_loop(worker: ChainWorker, coro: Any) -> Any:
    return await worker._call(coro)  # the loop the service runs on


async def test_the_chain_side_runs_on_its_own_thread_and_containers_on_the_api_loop() -> None:
    runner = RecordingRunner()
    worker, (chain,) = await started(runner)
    try:
        outcome = await on_chain_loop(worker, chain.deliver({"x": 1}))
        assert outcome.results == [{"containers": ["echo"], "data": {"x": 1}}]
        api_thread = threading.get_ident()
        assert runner.threads == [api_thread]  # the pipeline ran on the API loop
        assert len(chain.threads) == 1 and api_thread not in chain.threads
        (chain_thread,) = chain.threads
        assert [t.name for t in threading.enumerate() if t.ident == chain_thread] == ["chain"]
        # the API reads a snapshot the chain loop publishes
        await eventually(lambda: worker.status().get("delivered") == 1)
        # and its own loop's lag, sampled on the chain loop
        await eventually(lambda: worker.status()["event_loop"]["samples"] > 0)
        assert worker.health()["status"] == "ok"
        assert worker.address == "0xnode"
    finally:
        await worker.stop(3.0)
    assert chain.stopped_with == 3.0
    assert not any(t.name == "chain" for t in threading.enumerate())
    assert worker.health()["status"] == "ok"  # stopped on purpose: not a dead thread


async def test_a_cancelled_delivery_cancels_its_container_run_on_the_api_loop() -> None:
    runner = RecordingRunner(hang=True)
    worker, (chain,) = await started(runner)
    try:
        delivery = asyncio.run_coroutine_threadsafe(chain.deliver({}), worker._loop)
        await eventually(lambda: len(runner.threads) == 1)
        delivery.cancel()  # as ChainService.stop cancels an in-flight delivery
        await asyncio.wait_for(runner.cancelled.wait(), 5)
        assert chain.delivered == 0
    finally:
        await worker.stop()


async def test_delegated_requests_cross_over_with_their_errors_and_show_at_once() -> None:
    worker, (chain,) = await started(RecordingRunner())
    worker._status_every = 3600.0  # only the publish after the call can show it
    try:
        with pytest.raises(GuardianRejection) as rejected:
            await worker.accept_delegated({"bad": True}, "10.0.0.1")
        assert rejected.value.error == "Invalid signature"
        await worker.accept_delegated({"nonce": 1}, "10.0.0.1")
        assert worker.status()["delegated"] == 1
        assert worker.pending_count() == 1
        assert threading.get_ident() not in chain.threads
    finally:
        await worker.stop()


async def test_a_chain_side_that_cannot_start_raises_and_leaves_no_thread() -> None:
    with pytest.raises(RuntimeError, match="no key"):
        await started(RecordingRunner(), fail_start=True)
    assert not any(t.name == "chain" for t in threading.enumerate())


async def test_a_chain_thread_that_died_is_unhealthy() -> None:
    worker, _ = await started(RecordingRunner())
    worker._loop.call_soon_threadsafe(worker._loop.stop)  # as if the loop had ended on its own
    await asyncio.to_thread(worker._thread.join, 5)
    health = worker.health()
    assert health["status"] == "unhealthy"
    assert health["reason"] == "chain thread stopped"
    await worker.stop()  # nothing left to stop: returns
