"""Sending deliveries: fees under the cap, gas under max_gas_limit, journal before broadcast,
confirmation to depth, re-broadcast after a crash, fee-bumped replacement of stuck txs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import structlog
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_utils.address import to_checksum_address
from hexbytes import HexBytes

from node_agent.chain import journal as jr
from node_agent.chain.errors import Reverted
from node_agent.chain.nonce import NonceManager
from node_agent.chain.rpc import RequestRejected, Rpc
from node_agent.chain.wallet import NodeKey

log = structlog.get_logger(__name__)

GWEI = 10**9


@dataclass(frozen=True)
class FeePolicy:
    max_fee_cap: int | None  # wei; None = uncapped
    priority_fee: int  # wei
    bump_percent: int
    stuck_after: float  # seconds without a receipt before a replacement
    gas_margin_percent: int
    max_gas_limit: int
    confirmations: int

    def fees(self, base_fee: int) -> tuple[int, int]:
        """(maxFeePerGas, maxPriorityFeePerGas) for the current base fee, under the cap."""
        priority = self.priority_fee
        max_fee = 2 * base_fee + priority
        if self.max_fee_cap is not None:
            max_fee = min(max_fee, self.max_fee_cap)
            priority = min(priority, max_fee)
        return max_fee, priority

    def bumped(self, old_max: int, old_priority: int, base_fee: int) -> tuple[int, int] | None:
        """Replacement fees (at least bump_percent more), or None when the cap forbids it."""
        factor = 100 + self.bump_percent
        priority = max(old_priority * factor // 100 + 1, self.priority_fee)
        max_fee = max(old_max * factor // 100 + 1, 2 * base_fee + priority)
        if self.max_fee_cap is not None and max_fee > self.max_fee_cap:
            return None
        return max_fee, priority


class Sender:
    """Signs and sends transactions for one key, recording each in the journal first."""

    def __init__(
        self,
        rpc: Rpc,
        key: NodeKey,
        journal: jr.Journal,
        policy: FeePolicy,
        chain_id: int,
    ) -> None:
        self.rpc = rpc
        self.key = key
        self.journal = journal
        self.policy = policy
        self.chain_id = chain_id
        self.nonces = NonceManager(lambda: rpc.nonce(key.address), journal.max_nonce)
        self._last_broadcast: dict[str, float] = {}

    async def estimate(self, to: str, data: bytes, allowed_errors: tuple[str, ...] = ()) -> int:
        """Simulate and size the gas; raises Reverted (known errors decoded by name)."""
        tx = {"from": self.key.address, "to": to, "data": data}
        try:
            estimate = await self.rpc.estimate_gas(tx)
        except Reverted as exc:
            text = f"{exc.name or ''} {exc}".lower()
            if exc.name is None and any(e.lower() in text for e in allowed_errors if e):
                return self.policy.max_gas_limit
            raise
        gas = estimate * (100 + self.policy.gas_margin_percent) // 100
        if estimate > self.policy.max_gas_limit:
            raise GasTooHigh(estimate, self.policy.max_gas_limit)
        return min(gas, self.policy.max_gas_limit)

    async def send(self, sub_key: str, interval: int, to: str, data: bytes, gas: int) -> str:
        """Journal, then broadcast; returns the tx hash. A failed broadcast is retried later."""
        _, _, base_fee = await self.rpc.head()
        max_fee, priority = self.policy.fees(base_fee)
        async with self.nonces.lock:
            nonce = await self.nonces.peek()
            record = self._sign(sub_key, interval, to, data, gas, nonce, max_fee, priority)
            await self.journal.record_tx(record)
            self.nonces.advance()
        log.info(
            "delivery_tx_signed",
            sub=sub_key,
            interval=interval,
            nonce=nonce,
            tx=record.tx_hash,
            gas=gas,
            max_fee=max_fee,
        )
        await self._broadcast(record)
        return record.tx_hash

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

    async def _broadcast(self, record: jr.TxRecord) -> None:
        self._last_broadcast[record.tx_hash] = time.monotonic()
        try:
            await self.rpc.send_raw(record.raw)
        except RequestRejected as exc:
            message = str(exc).lower()
            if "nonce too low" in message:
                self.nonces.reset()
            log.warning("delivery_broadcast_rejected", tx=record.tx_hash, error=str(exc)[:200])
        except Exception as exc:  # journaled: the confirm loop re-broadcasts it
            log.warning("delivery_broadcast_failed", tx=record.tx_hash, error=str(exc)[:200])

    async def check(
        self, txs: list[jr.TxRecord], head: int, base_fee: int
    ) -> tuple[str, int] | None:
        """Follow one SENT delivery: CONFIRMED/REVERTED once deep enough, else keep it alive.

        Returns the final state and the block the transaction was mined in, or None while
        still pending.
        """
        for record in txs:
            receipt = await self.rpc.receipt(record.tx_hash)
            if receipt is None or receipt.get("blockNumber") is None:
                continue
            mined = int(receipt["blockNumber"])
            if head - mined + 1 < max(self.policy.confirmations, 1):
                return None
            return (jr.CONFIRMED if int(receipt["status"]) == 1 else jr.REVERTED), mined
        latest = txs[-1]
        if not await self.rpc.known(latest.tx_hash):
            # Lost (crash before broadcast, dropped from the mempool, reorged out): send again.
            if await self.rpc.nonce(self.key.address, "latest") > latest.nonce:
                return None  # nonce used; a receipt for one of our hashes will show up
            last = self._last_broadcast.get(latest.tx_hash)
            if last is not None and time.monotonic() - last < min(self.policy.stuck_after, 5.0):
                return None
            log.info("delivery_rebroadcast", tx=latest.tx_hash, nonce=latest.nonce)
            await self._broadcast(latest)
            return None
        if time.time() - latest.sent_at >= self.policy.stuck_after:
            await self._replace(latest, base_fee)
        return None

    async def _replace(self, latest: jr.TxRecord, base_fee: int) -> None:
        fees = self.policy.bumped(latest.max_fee, latest.priority_fee, base_fee)
        if fees is None:
            log.warning("delivery_stuck_at_fee_cap", tx=latest.tx_hash, max_fee=latest.max_fee)
            return
        to, data = _decode_tx_target(latest.raw)
        record = self._sign(
            latest.sub_key, latest.interval, to, data, latest.gas, latest.nonce, *fees
        )
        await self.journal.record_tx(record)
        log.info(
            "delivery_tx_replaced",
            old=latest.tx_hash,
            new=record.tx_hash,
            nonce=latest.nonce,
            max_fee=fees[0],
        )
        await self._broadcast(record)


class GasTooHigh(Exception):
    def __init__(self, estimate: int, cap: int) -> None:
        super().__init__(f"gas estimate {estimate} above chain.wallet.max_gas_limit {cap}")


def _decode_tx_target(raw: bytes) -> tuple[str, bytes]:
    """(to, data) of a signed EIP-1559 transaction, to re-sign it with new fees."""
    tx = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
    to = tx["to"]
    to_hex = to if isinstance(to, str) else "0x" + bytes(to).hex()
    return to_checksum_address(to_hex), bytes(tx["data"])
