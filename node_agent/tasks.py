"""Owned background tasks: every task has a name, a reference, and a logged failure."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")


class TaskSupervisor:
    """Keeps references to the tasks it starts and logs how each one ended.

    asyncio only keeps weak references to tasks; a fire-and-forget ``create_task`` can be
    garbage-collected mid-flight and its exception is lost (the reference node's bug 20).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error(
                "background_task_failed",
                owner=self.name,
                task=task.get_name(),
                error=repr(exc),
                exc_info=exc,
            )

    def __len__(self) -> int:
        return len(self._tasks)

    async def wait(self, timeout: float | None) -> bool:
        """Wait for every task to end; True when all did within ``timeout``."""
        if not self._tasks:
            return True
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        return not pending

    async def cancel_all(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


async def cancel_and_wait(task: asyncio.Task[Any], *, retry_every: float = 0.5) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling again if a cancellation was
    swallowed (Python 3.11's ``wait_for`` can drop one when its inner future finishes in the
    same loop iteration), so a stop never hangs on a loop that kept running."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=retry_every)
    if not task.cancelled() and task.exception() is not None:
        log.error("task_failed_while_stopping", task=task.get_name(), error=repr(task.exception()))


async def run_forever(
    step: Callable[[], Awaitable[None]],
    *,
    name: str,
    interval: float,
    backoff_max: float = 60.0,
    stop: asyncio.Event,
) -> None:
    """Call ``step`` every ``interval`` seconds until ``stop``; failures back off, never end it."""
    failures = 0
    while not stop.is_set():
        try:
            await step()
            failures = 0
            delay = interval
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures += 1
            delay = min(backoff_max, interval * 2**failures) * random.uniform(0.5, 1.0)
            log.warning("loop_step_failed", loop=name, error=repr(exc), retry_in=round(delay, 2))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)


def run_in_own_thread(fn: Callable[[], T], name: str) -> asyncio.Future[T]:
    """Long blocking calls (a container's whole output) get a thread of their own instead of a
    slot of the shared executor, which would otherwise starve short Docker calls."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def body() -> None:
        try:
            result = fn()
        except BaseException as exc:  # handed to the loop, never lost
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=body, name=name, daemon=True).start()
    return future
