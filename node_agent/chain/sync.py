"""Discovery: new subscription ids read through the Reader in batches at a pinned block.

The cursor (highest id looked at) is saved with the subscriptions it accepted, in one SQLite
transaction, so a restart resumes where it stopped instead of re-reading from zero.

Anyone can create a subscription on a shared Coordinator, so nothing about one subscription may
stop the cursor: a subscription the guardian refuses, or one whose decoding or screening raises,
is recorded in the journal (``skipped_subscriptions``) and passed over. Only a failure of the
batch itself (RPC, the journal's disk) fails the step, and the step is retried from the cursor.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from typing import Any

import structlog

from node_agent.chain import abi
from node_agent.chain.guardian import Rejection
from node_agent.chain.journal import Journal, SkippedSubscription
from node_agent.chain.rpc import Rpc
from node_agent.chain.subscription import Subscription

log = structlog.get_logger(__name__)

Screen = Callable[[int, Subscription], tuple[tuple[str, ...], Rejection | None]]
Accepted = tuple[int, Subscription, tuple[str, ...]]
RECENT_KEPT = 20  # skipped subscriptions shown in /info (the journal keeps more)


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
        self.skipped = 0  # subscriptions passed over since start (journal keeps the latest)
        self._recent: deque[SkippedSubscription] = deque(maxlen=RECENT_KEPT)

    async def load(self) -> None:
        saved = await self.journal.get_meta("sync_cursor")
        self.cursor = int(saved) if saved is not None else self.starting_sub_id
        block = await self.journal.get_meta("synced_block")
        self.synced_block = int(block) if block is not None else None

    async def step(self) -> list[Accepted]:
        """Read every id above the cursor up to the pinned head; returns the accepted ones."""
        assert self.cursor is not None, "load() first"
        pinned = max(await self.rpc.block_number() - self.trail, 0)
        (next_id,) = await self.rpc.eth_call(self.coordinator, abi.COORDINATOR_ID, block=pinned)
        last_id = int(next_id) - 1
        accepted: list[Accepted] = []
        while self.cursor < last_id:
            start = self.cursor + 1
            end = min(self.cursor + self.batch_size, last_id)
            (raw_subs,) = await self.rpc.eth_call(
                self.reader, abi.READ_SUBSCRIPTION_BATCH, start, end + 1, block=pinned
            )
            batch: list[Accepted] = []
            skipped: list[SkippedSubscription] = []
            for offset, raw in enumerate(raw_subs):
                outcome = self._examine(start + offset, raw)
                if isinstance(outcome, SkippedSubscription):
                    skipped.append(outcome)
                elif outcome is not None:
                    batch.append(outcome)
            await self.journal.save_subscriptions(
                [(sid, sub.to_json(), chain) for sid, sub, chain in batch],
                cursor=end,
                skipped=skipped,
            )
            self.cursor = end
            self.skipped += len(skipped)
            self._recent.extend(skipped)
            accepted.extend(batch)
        self.synced_block = pinned
        await self.journal.set_meta("synced_block", str(pinned))
        if accepted:
            log.info("subscriptions_synced", count=len(accepted), cursor=self.cursor, block=pinned)
        return accepted

    def recent(self) -> list[dict[str, object]]:
        """The latest subscriptions passed over, newest first, with why (for /info)."""
        return [
            {"id": skip.sub_id, "kind": skip.kind, "reason": skip.reason}
            for skip in reversed(self._recent)
        ]

    def _examine(self, sub_id: int, raw: Any) -> Accepted | SkippedSubscription | None:
        """One subscription's verdict: accepted, skipped (with why) or None (gone/cancelled).

        Never raises: whatever a hostile or malformed subscription makes decoding or the
        guardian do ends here as a skip, so it cannot hold back the ids after it.
        """
        try:
            sub = Subscription.from_tuple(raw)
            if not sub.exists or sub.cancelled:
                return None
            chain, rejection = self.screen(sub_id, sub)
            if rejection is not None:
                # params nested, never spread: they may hold any key ("reason", "id", ...)
                log.info(
                    "subscription_ignored",
                    id=sub_id,
                    error=rejection.error,
                    params=rejection.params,
                )
                return SkippedSubscription(sub_id, "rejected", _describe(rejection))
            json.dumps(sub.to_json())  # what the journal will store: fail here, not in the batch
            return sub_id, sub, chain
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("subscription_skipped", id=sub_id, error=error)
            return SkippedSubscription(sub_id, "failed", error)


def _describe(rejection: Rejection) -> str:
    """A rejection as one stored line (params JSON-encoded; anything odd as its repr)."""
    params = json.dumps(rejection.params, sort_keys=True, default=repr)
    return f"{rejection.error} {params}"[:300]
