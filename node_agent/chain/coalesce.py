"""Many concurrent callers, one request: items submitted within a short window go out together.

A burst of due subscriptions starts hundreds of delivery tasks at once; each wants a
simulation, its inputs, a nonce and a broadcast. Written one request per task, that is
hundreds of round trips per step. A :class:`Coalescer` keeps the per-delivery code as it is
(``await coalescer.submit(item)``) and hands its ``flush`` function a list instead: everything
submitted until ``window`` seconds after the first item, or ``max_batch`` items, whichever
comes first. ``max_flushes`` bounds the flushes in flight; items wait meanwhile, and the next
flush takes them all (up to ``max_batch``), so the batches grow with the load.

Results are handed back ``WAKE_SLICE`` at a time with a turn of the event loop in between:
each caller runs on until its next ``await`` when woken, and two hundred of them woken at once
would hold the loop (and every HTTP request waiting on it) for tens of milliseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# flush: one result per item, in order; an Exception in place of a result fails that item only
WAKE_SLICE = 8

Flush = Callable[[list[T]], Awaitable[Sequence[R | Exception]]]


class Coalescer(Generic[T, R]):
    def __init__(
        self,
        flush: Flush[T, R],
        *,
        name: str,
        max_batch: int = 200,
        window: float = 0.003,
        max_flushes: int = 4,
    ) -> None:
        if max_batch < 1 or max_flushes < 1:
            raise ValueError("max_batch and max_flushes must be >= 1")
        self._flush = flush
        self.name = name
        self.max_batch = max_batch
        self.window = window
        self._slots = asyncio.Semaphore(max_flushes)
        self._items: list[tuple[T, asyncio.Future[R]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting = 0  # drains started that have not taken their items yet
        self.flushes = 0
        self.items = 0

    async def submit(self, item: T) -> R:
        """Queue ``item`` and wait for its result (or its exception)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._items.append((item, future))
        if len(self._items) >= self.max_batch:
            self._start()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.window, self._start)
        return await future

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._waiting * self.max_batch >= len(self._items):
            return  # the drains already waiting will take every queued item
        self._waiting += 1
        task = asyncio.create_task(self._drain(), name=f"coalesce-{self.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self) -> None:
        """Wait for a flush slot, then take what is queued by then (up to ``max_batch``)."""
        async with self._slots:
            self._waiting -= 1
            batch, self._items = self._items[: self.max_batch], self._items[self.max_batch :]
            if self._items:
                self._start()  # the rest goes in the next flush
            batch = [(item, future) for item, future in batch if not future.cancelled()]
            if batch:
                await self._run(batch)

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        self.flushes += 1
        self.items += len(batch)
        try:
            results = await self._flush([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{self.name}: {len(results)} results for {len(batch)} items")
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for index, ((_, future), result) in enumerate(zip(batch, results, strict=True)):
            if index and index % WAKE_SLICE == 0:
                await asyncio.sleep(0)  # the woken callers run a slice at a time (see above)
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    async def close(self) -> None:
        """Cancel flushes in flight; their callers get CancelledError."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for _, future in self._items:
            future.cancel()
        self._items = []
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
