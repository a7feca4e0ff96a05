"""The chain side on a thread and event loop of its own.

Why: a burst of due subscriptions keeps the chain side's CPU busy for a second or more (ABI
encoding, simulation batches, signing a thousand transactions, confirming them). On the API's
event loop every HTTP request then waited behind those turns, and the job store's writer
thread behind the loop for the interpreter: ``POST /api/jobs`` p99 went from 4 ms idle to
16-26 ms during a 1,000-delivery burst. On a loop of its own the chain side still shares the
interpreter, but only for a switch interval at a time (``daemon.GIL_SWITCH_SECONDS``), and the
API's loop turns stay short.

What crosses between the two loops, and how:

- container runs: the job pipeline and its admission slots belong to the API loop, so a
  delivery's run is started there (``run_coroutine_threadsafe``) and awaited from the chain
  loop; a cancelled delivery cancels its run;
- delegated subscriptions (``POST /api/jobs``): checked and stored on the chain loop while the
  handler awaits the answer, errors included;
- ``/info``, ``/health`` and metrics: a snapshot the chain loop publishes every
  ``STATUS_EVERY`` seconds and after each call it serves (the service's dicts change under
  the chain loop; iterating them from another thread could fail mid-way).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import structlog

from node_agent.chain.runner import JobRunner, PipelineOutcome
from node_agent.chain.service import ChainService
from node_agent.config import Config
from node_agent.looplag import LoopLagMonitor
from node_agent.recorder import NO_RECORDER, Recorder

log = structlog.get_logger(__name__)

T = TypeVar("T")

# How often the chain loop publishes its status for /info, /health and metrics.
STATUS_EVERY = 0.25
# How long stopping waits for the chain thread to end once its loop was told to stop.
JOIN_SECONDS = 10.0


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # the daemon runs on uvloop when it is installed: so does the chain
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class ChainSide(Protocol):
    """What the worker runs: :class:`ChainService` (the tests' stand-ins too)."""

    @property
    def address(self) -> str: ...

    async def start(self) -> None: ...

    async def stop(self, grace: float = 10.0) -> None: ...

    def status(self) -> dict[str, Any]: ...

    def health(self) -> dict[str, Any]: ...

    def pending_count(self) -> int: ...

    async def accept_delegated(self, body: Mapping[str, Any], client_ip: str) -> None: ...


class BridgedRunner:
    """A :class:`JobRunner` whose runs happen on another loop (the API's)."""

    def __init__(self, runner: JobRunner, loop: asyncio.AbstractEventLoop) -> None:
        self._runner = runner
        self._loop = loop

    async def run(
        self,
        containers: Sequence[str],
        data: Any,
        *,
        source: int,
        destination: int,
        requires_proof: bool,
    ) -> PipelineOutcome:
        coro = self._runner.run(
            containers,
            data,
            source=source,
            destination=destination,
            requires_proof=requires_proof,
        )
        # Cancelling the awaiting task cancels the concurrent future, which cancels the run.
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))


class ChainWorker:
    """Runs the chain side on the ``chain`` thread; what the daemon and the API hold."""

    def __init__(
        self,
        build: Callable[[JobRunner], ChainSide],
        runner: JobRunner,
        *,
        status_every: float = STATUS_EVERY,
    ) -> None:
        self._build = build
        self._runner = runner
        self._status_every = status_every
        self._loop = _new_loop()
        self._thread = threading.Thread(target=self._run, name="chain", daemon=True)
        self._service: ChainSide | None = None
        self._publisher: asyncio.Task[None] | None = None
        # The chain loop's own lag (/info chain.event_loop): a stalled chain side shows there.
        self._lag = LoopLagMonitor(NO_RECORDER)
        self._lag_task: asyncio.Task[None] | None = None
        self._address = ""
        self._status: dict[str, Any] = {"enabled": True, "ready": False}
        self._health: dict[str, Any] = {"status": "degraded", "reason": "chain starting"}
        self._pending = 0
        self._stopped = False

    # --- lifecycle (called on the API loop) -----------------------------------------------

    async def start(self) -> None:
        """Start the thread and the service on it; raises what the service's start raises."""
        api_loop = asyncio.get_running_loop()
        self._thread.start()
        try:
            await self._call(self._start_service(api_loop))
        except BaseException:
            await self._end_thread()
            raise

    async def stop(self, grace: float = 10.0) -> None:
        """Stop the service (``grace`` for in-flight deliveries), then the loop and thread."""
        self._stopped = True
        try:
            if self._thread.is_alive():
                await self._call(self._stop_service(grace))
        finally:
            await self._end_thread()

    async def _end_thread(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            await asyncio.to_thread(self._thread.join, JOIN_SECONDS)
            if self._thread.is_alive():
                log.error("chain_thread_not_stopped", waited_s=JOIN_SECONDS)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            # Whatever is left (a stop that timed out) is cancelled, then the loop closes.
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()
            log.info("chain_thread_stopped")

    async def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the chain loop and await its outcome from the caller's loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    # --- on the chain loop ------------------------------------------------------------------

    async def _start_service(self, api_loop: asyncio.AbstractEventLoop) -> None:
        service = self._build(BridgedRunner(self._runner, api_loop))
        await service.start()
        self._service = service
        self._address = service.address
        self._publish()
        self._publisher = asyncio.create_task(self._publish_loop(), name="chain-status")
        self._lag_task = asyncio.create_task(self._lag.run(asyncio.Event()), name="chain-loop-lag")

    async def _stop_service(self, grace: float) -> None:
        for task in (self._publisher, self._lag_task):
            if task is not None:
                task.cancel()
        if self._service is not None:
            await self._service.stop(grace)
            self._publish()

    async def _publish_loop(self) -> None:
        while True:
            await asyncio.sleep(self._status_every)
            try:
                self._publish()
            except Exception as exc:  # a bug in a status field must not end the snapshots
                log.error("chain_status_failed", error=repr(exc)[:300])

    def _publish(self) -> None:
        """Swap in new snapshots (one assignment each: a reader sees the old or the new)."""
        service = self._service
        if service is None:
            return
        self._health = service.health()
        self._status = {**service.status(), "event_loop": self._lag.status()}
        self._pending = service.pending_count()

    # --- what the API loop reads --------------------------------------------------------------

    @property
    def address(self) -> str:
        return self._address

    def pending_count(self) -> int:
        return self._pending

    def status(self) -> dict[str, Any]:
        return dict(self._status)

    def health(self) -> dict[str, Any]:
        if not self._thread.is_alive() and not self._stopped:
            return {**self._status, "status": "unhealthy", "reason": "chain thread stopped"}
        return dict(self._health)

    async def accept_delegated(self, body: Mapping[str, Any], client_ip: str) -> None:
        await self.call(lambda service: service.accept_delegated(body, client_ip))

    async def call(self, action: Callable[[Any], Awaitable[T]]) -> T:
        """``await action(service)`` on the chain loop, from the caller's loop (the API's
        requests, tools, tests); the snapshot is published again right after, so the caller's
        next read of /info shows what it did."""

        async def on_chain_loop() -> T:
            assert self._service is not None
            try:
                return await action(self._service)
            finally:
                self._publish()

        return await self._call(on_chain_loop())


def create_chain_service(
    config: Config, state_dir: Path, runner: JobRunner, recorder: Recorder = NO_RECORDER
) -> ChainWorker:
    """Factory the daemon calls (it imports this module only when the chain is enabled)."""

    def build(bridged: JobRunner) -> ChainService:
        return ChainService(config, state_dir, bridged, recorder)

    return ChainWorker(build, runner)
