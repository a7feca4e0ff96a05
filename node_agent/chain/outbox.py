"""Sending the node's transactions in batches: nonces assigned locally, one journal write for a
batch, broadcasts pipelined.

Deliveries that are ready within a few milliseconds of each other (a burst) are sent together:
under one lock the batch takes consecutive nonces from the :class:`NonceAllocator`, is signed,
and is journaled in one SQLite transaction *before* anything is broadcast (the rule that makes
``kill -9`` safe: after a crash the journal has the exact bytes to broadcast again, and no
(subscription, interval) is computed twice). Then the batch is broadcast as JSON-RPC batches of
``eth_sendRawTransaction`` in nonce order, while the next batch is being signed. Nothing waits
for a receipt: the chain has many of the node's transactions in flight, and the confirm step
follows them by block (:mod:`node_agent.chain.tracker`).

The fee of a batch comes from the head the service already polls (no RPC per transaction).
Signing (~0.3 ms per transaction) runs within the chain side's budget per turn of the event
loop (:mod:`.pacing`), so the node's HTTP API keeps answering during a burst.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes

from node_agent.chain import journal as jr
from node_agent.chain.coalesce import Coalescer
from node_agent.chain.fees import FeePolicy
from node_agent.chain.nonce import NonceAllocator
from node_agent.chain.pacing import LoopBudget
from node_agent.chain.rpc import Rpc
from node_agent.chain.wallet import NodeKey

log = structlog.get_logger(__name__)

FILLER_KEY = "n:"  # journal key of the no-op transactions that fill nonce gaps (interval = nonce)
FILLER_GAS = 21_000
BROADCAST_CHUNK = 50  # eth_sendRawTransaction per JSON-RPC batch (providers cap batch sizes)
# Answers to eth_sendRawTransaction that mean "the pool has it already".
_KNOWN = ("already known", "known transaction", "already imported", "already in")


@dataclass(frozen=True)
class Outgoing:
    """One transaction to send for ``sub_key``/``interval`` (a delivery, a proof finalization)."""

    sub_key: str
    interval: int
    to: str
    data: bytes
    gas: int


class Outbox:
    def __init__(
        self,
        rpc: Rpc,
        key: NodeKey,
        journal: jr.Journal,
        policy: FeePolicy,
        chain_id: int,
        base_fee: Callable[[], Awaitable[int]],
        *,
        budget: LoopBudget | None = None,
        max_pending: int = 1000,
        window: float = 0.003,
        max_batch: int = 256,
    ) -> None:
        self.rpc = rpc
        self.key = key
        self.journal = journal
        self.policy = policy
        self.chain_id = chain_id
        self._base_fee = base_fee
        self.budget = budget or LoopBudget()
        self.allocator = NonceAllocator()
        self.max_pending = max_pending
        self.unconfirmed = 0  # journaled, not final (set by each confirm step, + each send)
        self.queued_gas = 0  # their gas limits: how many blocks of the node's own queue wait
        self._room = asyncio.Event()
        self._room.set()
        self._lock = asyncio.Lock()
        self._coalescer: Coalescer[Outgoing, str] = Coalescer(
            self._commit_and_send, name="send", max_batch=max_batch, window=window, max_flushes=2
        )
        self.counts: Counter[str] = Counter()

    async def close(self) -> None:
        await self._coalescer.close()

    @property
    def batches(self) -> int:
        return self._coalescer.flushes

    def settled(self, unconfirmed: int, gas: int) -> None:
        """The confirm step's count of journaled transactions not final yet, and their gas."""
        self.unconfirmed = unconfirmed
        self.queued_gas = gas
        if unconfirmed < self.max_pending:
            self._room.set()

    async def send(self, item: Outgoing) -> str:
        """Journal, then broadcast (with whatever else is ready); the transaction's hash.

        A failed broadcast is not an error here: the transaction is journaled, and the
        confirm step sends it again when the pool does not have it.
        """
        return await self._coalescer.submit(item)

    async def _commit_and_send(self, items: list[Outgoing]) -> list[str | Exception]:
        records = await self._commit(items)
        await self.broadcast(records)
        self.counts["sent"] += len(records)
        return [record.tx_hash for record in records]

    async def _commit(self, items: list[Outgoing]) -> list[jr.TxRecord]:
        """Nonces, signatures and one journal transaction, under the lock (in nonce order)."""
        while self.unconfirmed >= self.max_pending:  # bounded: wait for confirmations
            self._room.clear()
            await self._room.wait()
        async with self._lock:
            await self._sync()
            base_fee = await self._base_fee()
            nonces = self.allocator.take(len(items))
            planned = []
            for item, nonce in zip(items, nonces, strict=True):
                self.queued_gas += item.gas
                ahead = self.queued_gas // max(self.rpc.block_gas_limit, 1)
                planned.append((item, nonce, *self.policy.fees(base_fee, ahead)))
            try:
                records = await self._sign_all(planned)
                await asyncio.shield(self.journal.record_txs(records))
            except asyncio.CancelledError:
                # The write may still land on its thread: never hand these nonces out again.
                self.allocator.invalidate()
                raise
            except BaseException:
                self.allocator.give_back(nonces)
                self.queued_gas -= sum(item.gas for item in items)
                raise
            self.unconfirmed += len(records)
        log.info(
            "delivery_txs_signed",
            count=len(records),
            first_nonce=nonces.start,
            last_nonce=nonces.stop - 1,
            max_fee=records[-1].max_fee,
        )
        return records

    async def _sync(self) -> None:
        if not self.allocator.synced:
            chain = await self.rpc.nonce(self.key.address, "pending")
            start = self.allocator.sync(chain, await self.journal.max_nonce())
            log.info("nonce_synced", next=start, chain_pending=chain)

    async def _sign_all(
        self, planned: Sequence[tuple[Outgoing, int, int, int]]
    ) -> list[jr.TxRecord]:
        """Sign (item, nonce, max fee, tip) in order, within the loop's budget."""
        records = []
        for item, nonce, max_fee, priority in planned:
            await self.budget.turn()  # the HTTP API answers between slices
            records.append(
                self._sign(
                    item.sub_key,
                    item.interval,
                    item.to,
                    item.data,
                    item.gas,
                    nonce,
                    max_fee,
                    priority,
                )
            )
        return records

    def _sign(
        self,
        sub_key: str,
        interval: int,
        to: str,
        data: bytes,
        gas: int,
        nonce: int,
        max_fee: int,
        priority: int,
    ) -> jr.TxRecord:
        tx: dict[str, Any] = {
            "type": 2,
            "chainId": self.chain_id,
            "nonce": nonce,
            "to": to,
            "data": data,
            "value": 0,
            "gas": gas,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": priority,
        }
        raw, tx_hash = self.key.sign(tx)
        return jr.TxRecord(
            tx_hash, sub_key, interval, nonce, raw, gas, max_fee, priority, time.time()
        )

    async def broadcast(self, records: Sequence[jr.TxRecord]) -> int:
        """Send signed transactions in nonce order; returns how many the pool took (or had).

        Refusals are logged; ``nonce too low`` makes the allocator sync again. Transport
        trouble is logged too: the records are journaled and the confirm step resends.
        """
        accepted = 0
        ordered = sorted(records, key=lambda r: (r.nonce, r.sent_at))
        for start in range(0, len(ordered), BROADCAST_CHUNK):
            chunk = ordered[start : start + BROADCAST_CHUNK]
            calls = [("eth_sendRawTransaction", ["0x" + r.raw.hex()]) for r in chunk]
            try:
                answers = await self.rpc.batch(calls)
            except Exception as exc:  # journaled: the confirm step sends them again
                self.counts["broadcast_failed"] += len(chunk)
                log.warning("delivery_broadcast_failed", txs=len(chunk), error=str(exc)[:200])
                continue
            for record, answer in zip(chunk, answers, strict=False):
                error = answer.get("error")
                message = str(error.get("message", error)) if isinstance(error, dict) else None
                if message is None or any(text in message.lower() for text in _KNOWN):
                    accepted += 1
                    continue
                self.counts["broadcast_rejected"] += 1
                if "nonce too low" in message.lower():
                    self.allocator.invalidate()
                log.warning(
                    "delivery_broadcast_rejected",
                    tx=record.tx_hash,
                    nonce=record.nonce,
                    error=message[:200],
                )
        return accepted

    async def replace(self, latest: jr.TxRecord, base_fee: int) -> jr.TxRecord | None:
        """Re-sign a stuck transaction at its nonce with higher fees (None: capped)."""
        fees = self.policy.bumped(latest.max_fee, latest.priority_fee, base_fee)
        if fees is None:
            log.warning("delivery_stuck_at_fee_cap", tx=latest.tx_hash, max_fee=latest.max_fee)
            return None
        to, data = decode_tx_target(latest.raw)
        record = self._sign(
            latest.sub_key, latest.interval, to, data, latest.gas, latest.nonce, *fees
        )
        await self.journal.record_tx(record)
        self.counts["replaced"] += 1
        log.info(
            "delivery_tx_replaced",
            old=latest.tx_hash,
            new=record.tx_hash,
            nonce=latest.nonce,
            max_fee=fees[0],
        )
        await self.broadcast([record])
        return record

    async def resign(self, latest: jr.TxRecord) -> jr.TxRecord:
        """The chain used ``latest``'s nonce for another transaction (the key is shared, or a
        journal was lost): the same call again under a fresh nonce."""
        to, data = decode_tx_target(latest.raw)
        async with self._lock:
            self.allocator.invalidate()
            await self._sync()
            (nonce,) = self.allocator.take(1)
            max_fee, priority = self.policy.fees(await self._base_fee())
            record = self._sign(
                latest.sub_key, latest.interval, to, data, latest.gas, nonce, max_fee, priority
            )
            await self.journal.record_tx(record)
        self.counts["resigned"] += 1
        log.warning("delivery_nonce_taken", old=latest.tx_hash, new=record.tx_hash, nonce=nonce)
        await self.broadcast([record])
        return record

    async def fill(self, nonces: Sequence[int], base_fee: int) -> None:
        """No-op transactions (0 ETH to the node itself) at nonces nothing else will use, so
        the transactions above them can be mined."""
        max_fee, priority = self.policy.fees(base_fee)
        async with self._lock:
            taken = await self.journal.tx_nonces(min(nonces), max(nonces))
            records = [
                self._sign(FILLER_KEY, n, self.key.address, b"", FILLER_GAS, n, max_fee, priority)
                for n in nonces
                if n not in taken
            ]
            await self.journal.record_txs(records)
        if records:
            self.counts["filled"] += len(records)
            log.warning("nonce_gap_filled", nonces=[r.nonce for r in records])
            await self.broadcast(records)


def decode_tx_target(raw: bytes) -> tuple[str, bytes]:
    """(to, data) of a signed EIP-1559 transaction, to re-sign it with new fees or nonce."""
    tx = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
    to = tx["to"]
    to_hex = to if isinstance(to, str) else "0x" + bytes(to).hex()
    return to_checksum_address(to_hex), bytes(tx["data"])
