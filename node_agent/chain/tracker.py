"""Following the node's transactions by block, not by transaction.

Polling a receipt per transaction costs a call per pending delivery every period; during a
burst that is thousands of calls for nothing. Instead, once per new block:

1. one ``eth_getLogs`` for the Coordinator's ``SubscriptionFulfilled(id, node)`` with this
   node's address as topic, over the blocks not seen yet: every successful delivery of the
   node in them, with its transaction hash and block (deliveries to any consumer, direct or
   delegated). Blocks not deep enough yet are looked at again, so a reorg that drops a
   delivery takes its confirmation back;
2. only while some journaled transaction is still unaccounted for: the key's mined nonce count
   (``eth_getTransactionCount`` at the block the logs were read to). A transaction whose
   nonce is below it but that delivered nothing was mined and reverted, or was mined before
   the node looked (a restart), or its nonce went to another transaction: the last blocks'
   logs are read once more (an endpoint may answer for a block before its logs are
   indexed), then its receipts say which (rare, one call each);
3. only when the queue may be broken (at start, no progress for a few blocks or the stuck
   interval): the pool's count (``eth_getTransactionCount(pending)``), and the repair
   :func:`node_agent.chain.nonce.plan_queue` decides: send lost transactions again, fill a
   nonce nothing uses, or re-sign the lowest stuck one with higher fees. Never the whole queue
   at once: a burst of hundreds of transactions in flight is normal, not stuck.

Transactions that are not deliveries (the no-op fillers, proof finalizations) have no
``SubscriptionFulfilled``; they are settled through step 2.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import structlog
from eth_utils.crypto import keccak

from node_agent.chain import journal as jr
from node_agent.chain.nonce import QueueState, plan_queue
from node_agent.chain.outbox import Outbox
from node_agent.chain.rpc import Rpc

log = structlog.get_logger(__name__)

FULFILLED_TOPIC = "0x" + keccak(text="SubscriptionFulfilled(uint32,address)").hex()
RESCAN_BLOCKS = 256  # blocks looked back at the first step (deliveries mined while down)
RECHECK_BLOCKS = 8  # blocks read again when a mined transaction's log was not seen
GAP_BLOCKS = 2  # new blocks without the mined count moving before the pool is read
BROADCAST_GRACE = 5.0  # seconds after signing before a transaction can count as missing
NONCE_TAKEN_STEPS = 2  # steps a used nonce must show no receipt of ours before re-signing
# A mined delivery whose log is missing is only looked up by receipt from the next step on
# (a new block or idle_every later, logs read again then), this long after it was noticed
# at the latest: an endpoint polled right after a block may not show its logs yet (anvil),
# and hundreds of receipts one by one are the cost of not waiting.
LOG_GRACE = 1.0

Job = tuple[str, int]
Final = tuple[str, int]  # (journal state, block mined in)


class Tracker:
    def __init__(
        self,
        rpc: Rpc,
        outbox: Outbox,
        *,
        node: str,
        coordinator: str,
        confirmations: int,
        stuck_after: float,
        idle_every: float = 1.0,
    ) -> None:
        self.rpc = rpc
        self.outbox = outbox
        self.node = node
        self.coordinator = coordinator
        self.depth = max(confirmations, 1)
        self.stuck_after = stuck_after
        self.idle_every = idle_every  # seconds between steps while no block comes
        self._topic_node = "0x" + "00" * 12 + node.lower().removeprefix("0x")
        self._scanned: int | None = None
        self._seen: dict[str, int] = {}  # tx hash -> block of its SubscriptionFulfilled
        self._queue = QueueState()
        self._taken: dict[Job, int] = {}  # steps a delivery's nonce was used without a receipt
        # (head, time) a delivery was first found mined without its log (see LOG_GRACE)
        self._unlogged: dict[Job, tuple[int, float]] = {}
        self._gap: tuple[int, float] | None = None  # (nonce, when) of the gap being repaired
        self._last_head: int | None = None
        self._last_step = 0.0
        self._was_empty = True
        self.counts: Counter[str] = Counter()

    def due(self, head: int) -> bool:
        """A step is worth taking: a new block, or ``idle_every`` seconds without one."""
        return head != self._last_head or time.time() - self._last_step >= self.idle_every

    async def step(
        self, pending: Mapping[Job, list[jr.TxRecord]], head: int, base_fee: int
    ) -> dict[Job, Final]:
        """Final states found for ``pending`` (journaled SENT deliveries, their transactions
        oldest first) as of block ``head``; repairs the queue on the way."""
        now = time.time()
        new_block = head != self._last_head
        if not pending:
            # Nothing journaled when the head was already known: nothing to find up to it.
            self._last_head, self._last_step, self._seen, self._taken = head, now, {}, {}
            self._scanned = head
            self._was_empty = True
            return {}
        if not new_block and now - self._last_step < self.idle_every:
            return {}
        self._last_step = now
        # per-job bookkeeping of jobs no longer pending (confirmed through their log) goes
        self._unlogged = {job: at for job, at in self._unlogged.items() if job in pending}
        self._taken = {job: n for job, n in self._taken.items() if job in pending}
        if self._was_empty:  # a new queue after an idle time is not a stuck one
            self._queue.acted(now)
            self._was_empty = False
        if self._scanned is None or self._scanned < head:
            await self._scan(head, pending)
        self._last_head = head

        finals, waiting = self._split(pending, head)
        if not waiting:
            return finals
        # the mined count at the block the logs were read to: a block mined since must not
        # look like transactions mined without their SubscriptionFulfilled
        mined = int(await self.rpc.request("eth_getTransactionCount", [self.node, hex(head)]), 16)
        if any(txs[-1].nonce < mined for txs in waiting.values()):
            # Mined, yet no log seen: read the last blocks' logs again once (an endpoint may
            # answer for a block before it has indexed its logs) before asking receipts.
            await self._scan(head, pending, since=max(head - RECHECK_BLOCKS, 0))
            more, waiting = self._split(waiting, head)
            finals.update(more)
        finals.update(await self._follow(waiting, mined, head, base_fee, now, new_block))
        return finals

    def _split(
        self, pending: Mapping[Job, list[jr.TxRecord]], head: int
    ) -> tuple[dict[Job, Final], dict[Job, list[jr.TxRecord]]]:
        """(confirmed deep enough, not seen delivered yet) by the logs seen so far."""
        finals: dict[Job, Final] = {}
        waiting: dict[Job, list[jr.TxRecord]] = {}
        for job, txs in pending.items():
            blocks = [self._seen[t.tx_hash] for t in txs if t.tx_hash in self._seen]
            if not blocks:
                waiting[job] = txs
            elif head - min(blocks) + 1 >= self.depth:
                finals[job] = (jr.CONFIRMED, min(blocks))
        return finals, waiting

    async def _scan(
        self, head: int, pending: Mapping[Job, list[jr.TxRecord]], since: int | None = None
    ) -> None:
        start = max(head - RESCAN_BLOCKS, 0) if self._scanned is None else self._scanned + 1
        if since is not None:
            start = min(start, since)
        shallow = [b for b in self._seen.values() if head - b + 1 < self.depth]
        start = min([start, *shallow])
        if start > head:
            return
        logs: list[dict[str, Any]] = await self.rpc.request(
            "eth_getLogs",
            [
                {
                    "address": self.coordinator,
                    "fromBlock": hex(start),
                    "toBlock": hex(head),
                    "topics": [FULFILLED_TOPIC, None, self._topic_node],
                }
            ],
        )
        found = {
            str(entry["transactionHash"]).lower(): int(entry["blockNumber"], 16)
            for entry in logs or []
            if not entry.get("removed")
        }
        ours = {t.tx_hash.lower() for txs in pending.values() for t in txs}
        kept = {h: b for h, b in self._seen.items() if h in ours and (b < start or h in found)}
        dropped = len(self._seen) - len(kept)
        if dropped and any(b >= start for b in self._seen.values()):
            log.warning("deliveries_reorged_out", count=dropped, from_block=start)
        kept.update({h: b for h, b in found.items() if h in ours})
        self._seen = kept
        self._scanned = head

    async def _follow(
        self,
        waiting: Mapping[Job, list[jr.TxRecord]],
        mined: int,
        head: int,
        base_fee: int,
        now: float,
        new_block: bool,
    ) -> dict[Job, Final]:
        """The deliveries without a SubscriptionFulfilled: settle the used nonces, repair the
        queue above them."""
        self._queue.observe(mined, now, new_block)
        used = sum(1 for txs in waiting.values() if txs[-1].nonce < mined)
        if used:  # rare: a revert, a restart, or logs the endpoint did not show
            log.info("deliveries_without_log", count=used, mined=mined, head=head)
        finals: dict[Job, Final] = {}
        above: dict[int, jr.TxRecord] = {}
        for job, txs in waiting.items():
            latest = txs[-1]
            if latest.nonce >= mined:
                above[latest.nonce] = latest
                self._taken.pop(job, None)
                continue
            noticed_head, noticed_at = self._unlogged.setdefault(job, (head, now))
            if noticed_head == head and now - noticed_at < LOG_GRACE:
                self.counts["log_waits"] += 1
                continue  # its log may just lag: read again at the next step first
            outcome = await self._receipts(txs, head)
            if outcome is not None:
                if outcome[0]:
                    finals[job] = outcome[0]
                    self._unlogged.pop(job, None)
                self._taken.pop(job, None)
                continue
            self._taken[job] = self._taken.get(job, 0) + 1
            if self._taken[job] >= NONCE_TAKEN_STEPS:
                del self._taken[job]
                await self.outbox.resign(latest)
        if above and self._queue.pool_worth_reading(
            now, gap_blocks=GAP_BLOCKS, stuck_after=self.stuck_after
        ):
            await self._repair(above, mined, base_fee, now)
        return finals

    async def _receipts(self, txs: list[jr.TxRecord], head: int) -> tuple[Final | None] | None:
        """The outcome of a delivery whose nonce is used: ``(final,)``, ``(None,)`` when mined
        but not deep enough yet, None when none of its transactions has a receipt."""
        for record in reversed(txs):
            self.counts["receipt_lookups"] += 1
            receipt = await self.rpc.receipt(record.tx_hash)
            if receipt is None or receipt.get("blockNumber") is None:
                continue
            block = int(receipt["blockNumber"])
            if head - block + 1 < self.depth:
                return (None,)
            state = jr.CONFIRMED if int(receipt["status"]) == 1 else jr.REVERTED
            return ((state, block),)
        return None

    async def _repair(
        self, above: dict[int, jr.TxRecord], mined: int, base_fee: int, now: float
    ) -> None:
        # Only transactions signed a while ago can be missing: a batch just journaled may still
        # be on its way to the pool.
        grace = min(BROADCAST_GRACE, self.stuck_after)
        settled = [n for n, r in above.items() if now - r.sent_at >= grace]
        if not settled:
            return
        pool = await self.rpc.nonce(self.node, "pending")
        self._queue.checked_pool = True
        stuck = now - self._queue.progress_at >= self.stuck_after
        top = max(settled)
        gap_at = max(pool, mined)
        if gap_at > top:
            self._gap = None
        elif self._gap is not None and self._gap[0] == gap_at:
            if now - self._gap[1] < self.stuck_after:
                return  # sent again already: give the pool time
            # Still missing stuck_after after it was sent again: the pool does not keep it (a
            # fee below what it now asks): stuck, not lost.
            pool, stuck = top + 1, True
            self._gap = (gap_at, now)  # the next escalation one stuck interval from now
        plan = plan_queue(
            mined=mined,
            pool=pool,
            top=top,
            unmined={n: r.sent_at for n, r in above.items()},
            max_fees={n: r.max_fee for n, r in above.items()},
            base_fee=base_fee,
            now=now,
            stuck_after=self.stuck_after,
            stuck=stuck,
        )
        if plan.gap_at is not None:
            self._gap = (plan.gap_at, now)
        if plan.idle:
            return
        self._queue.acted(now)
        if plan.gap_at is not None:
            self.counts["gaps"] += 1
            log.warning(
                "nonce_gap",
                at=plan.gap_at,
                mined=mined,
                pool=pool,
                resend=len(plan.resend),
                fill=len(plan.fill),
            )
        if plan.fill:
            await self.outbox.fill(plan.fill, base_fee)
        if plan.resend:
            self.counts["resent"] += len(plan.resend)
            await self.outbox.broadcast([above[n] for n in plan.resend])
        for nonce in plan.replace:
            await self.outbox.replace(above[nonce], base_fee)
