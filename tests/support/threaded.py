"""A real agent on its own event loop in a thread, for synchronous drivers (hypothesis and
schemathesis call it over plain HTTP from the test thread)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from node_agent.daemon import Daemon
from tests.conftest import unmanaged_config
from tests.support.agent import running_agent
from tests.support.service import running_service

T = TypeVar("T")


@contextmanager
def agent_in_thread(
    state: Path, customise: Callable[[dict[str, Any]], None] = lambda raw: None, **extra: Any
) -> Iterator[tuple[Daemon, asyncio.AbstractEventLoop]]:
    """The five test services of ``unmanaged_config`` (two real protocol services behind
    them) plus ``extra`` config sections; ``customise`` edits the raw config last."""
    loop = asyncio.new_event_loop()
    ready: asyncio.Future[Daemon] = loop.create_future()
    stop = asyncio.Event()

    async def main() -> None:
        try:
            async with running_service("first") as first, running_service("second") as second:
                raw = unmanaged_config({"first": first, "second": second}, **extra)
                customise(raw)
                async with running_agent(raw, state) as (daemon, _):
                    ready.set_result(daemon)
                    await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    daemon = run_in(loop, _wait(ready))
    try:
        yield daemon, loop
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(60)
        loop.close()


def run_in(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run_coroutine_threadsafe(coro, loop).result(60)


async def _wait(future: asyncio.Future[T]) -> T:
    return await future
