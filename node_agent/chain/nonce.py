"""One nonce sequence per signing key, shared by every delivery of that key."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class NonceManager:
    """Hands out consecutive nonces; hold :attr:`lock` from ``peek`` until ``advance``.

    The starting point is the larger of the chain's pending count and the journal's highest
    nonce + 1, so a crash between journaling and broadcasting never reuses a nonce.
    """

    def __init__(
        self,
        chain_nonce: Callable[[], Awaitable[int]],
        journal_max: Callable[[], Awaitable[int | None]],
    ) -> None:
        self.lock = asyncio.Lock()
        self._chain_nonce = chain_nonce
        self._journal_max = journal_max
        self._next: int | None = None

    async def peek(self) -> int:
        if self._next is None:
            on_chain = await self._chain_nonce()
            journaled = await self._journal_max()
            self._next = max(on_chain, -1 if journaled is None else journaled + 1)
        return self._next

    def advance(self) -> None:
        assert self._next is not None
        self._next += 1

    def reset(self) -> None:
        """Re-read from the chain next time (after ``nonce too low``)."""
        self._next = None
