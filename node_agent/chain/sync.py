"""Discovery: new subscription ids read through the Reader in batches at a pinned block.

The cursor (highest id looked at) is saved with the subscriptions it accepted, in one SQLite
transaction, so a restart resumes where it stopped instead of re-reading from zero.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from node_agent.chain import abi
from node_agent.chain.guardian import Rejection
from node_agent.chain.journal import Journal
from node_agent.chain.rpc import Rpc
from node_agent.chain.subscription import Subscription

log = structlog.get_logger(__name__)

Screen = Callable[[int, Subscription], tuple[tuple[str, ...], Rejection | None]]


class SubscriptionSync:
    def __init__(
        self,
        rpc: Rpc,
        journal: Journal,
        *,
        coordinator: str,
        reader: str,
        screen: Screen,
        trail_head_blocks: int,
        batch_size: int,
        starting_sub_id: int,
    ) -> None:
        self.rpc = rpc
        self.journal = journal
        self.coordinator = coordinator
        self.reader = reader
        self.screen = screen
        self.trail = trail_head_blocks
        self.batch_size = batch_size
        self.starting_sub_id = starting_sub_id
        self.cursor: int | None = None
        self.synced_block: int | None = None

    async def load(self) -> None:
        saved = await self.journal.get_meta("sync_cursor")
        self.cursor = int(saved) if saved is not None else self.starting_sub_id
        block = await self.journal.get_meta("synced_block")
        self.synced_block = int(block) if block is not None else None

    async def step(self) -> list[tuple[int, Subscription, tuple[str, ...]]]:
        """Read every id above the cursor up to the pinned head; returns the accepted ones."""
        assert self.cursor is not None, "load() first"
        pinned = max(await self.rpc.block_number() - self.trail, 0)
        (next_id,) = await self.rpc.eth_call(self.coordinator, abi.COORDINATOR_ID, block=pinned)
        last_id = int(next_id) - 1
        accepted: list[tuple[int, Subscription, tuple[str, ...]]] = []
        while self.cursor < last_id:
            start = self.cursor + 1
            end = min(self.cursor + self.batch_size, last_id)
            (raw_subs,) = await self.rpc.eth_call(
                self.reader, abi.READ_SUBSCRIPTION_BATCH, start, end + 1, block=pinned
            )
            batch: list[tuple[int, Subscription, tuple[str, ...]]] = []
            for offset, raw in enumerate(raw_subs):
                sub_id = start + offset
                sub = Subscription.from_tuple(raw)
                if not sub.exists or sub.cancelled:
                    continue
                chain, rejection = self.screen(sub_id, sub)
                if rejection is not None:
                    log.info(
                        "subscription_ignored",
                        id=sub_id,
                        reason=rejection.error,
                        **rejection.params,
                    )
                    continue
                batch.append((sub_id, sub, chain))
            await self.journal.save_subscriptions(
                [(sid, sub.to_json(), chain) for sid, sub, chain in batch], cursor=end
            )
            self.cursor = end
            accepted.extend(batch)
        self.synced_block = pinned
        await self.journal.set_meta("synced_block", str(pinned))
        if accepted:
            log.info("subscriptions_synced", count=len(accepted), cursor=self.cursor, block=pinned)
        return accepted
