"""A time budget per turn of the event loop for the chain side's CPU work.

A burst makes hundreds of delivery tasks ready at once (a batch of simulations answered, a
batch signed, a block of confirmations), and the event loop runs every ready task before it
looks at its sockets again: each step is short, but a few hundred of them in one turn keep an
HTTP request to the node waiting for tens of milliseconds. Slicing each producer by a count
does not bound the sum of several producers ready in the same turn; a shared clock does.

Chain code calls ``await budget.turn()`` before a unit of work. While less than ``slice``
seconds of such work ran in this turn it returns at once; past that the caller waits in line,
and each following turn lets ``per_turn`` of the waiting callers go on, in order, after the
loop has polled its sockets (the HTTP API answers in between). When the loop has nothing else
to do the turns follow each other at once: a burst is not slowed, only interleaved.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque


class LoopBudget:
    def __init__(self, slice_seconds: float = 0.002, per_turn: int = 16) -> None:
        self.slice = slice_seconds
        self.per_turn = per_turn
        self._started: float | None = None  # when this turn's budgeted work began
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._turn_scheduled = False
        self.yields = 0

    async def turn(self) -> None:
        """Return at once within this turn's budget, else when a later turn lets us go on."""
        now = time.perf_counter()
        if self._started is None:
            self._started = now
            self._schedule_turn()
        if not self._waiting and now - self._started < self.slice:
            return
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        self.yields += 1
        await future

    def _schedule_turn(self) -> None:
        # call_soon runs in the loop's next turn: the budget starts over there
        if not self._turn_scheduled:
            self._turn_scheduled = True
            asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self._turn_scheduled = False
        self._started = None
        released = 0
        while self._waiting and released < self.per_turn:
            future = self._waiting.popleft()
            if not future.done():  # a cancelled caller gives up its place
                future.set_result(None)
                released += 1
        if self._waiting:
            self._schedule_turn()
