"""Sending deliveries: simulation batched, gas under max_gas_limit, fees under the cap, nonces
assigned locally, journal before broadcast, confirmation by block, gaps and stuck
transactions repaired.

:class:`Sender` is what the service (and the proof tracker) call per delivery; behind it the
calls of many concurrent deliveries are batched: simulations into one ``eth_simulateV1``
(:mod:`.simulate`), sends into one journal write and JSON-RPC batches of broadcasts
(:mod:`.outbox`), confirmations into one ``eth_getLogs`` per block (:mod:`.tracker`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog

from node_agent.chain import journal as jr
from node_agent.chain.abi import Function
from node_agent.chain.errors import Reverted
from node_agent.chain.fees import GWEI, FeePolicy
from node_agent.chain.outbox import FILLER_KEY, Outbox, Outgoing
from node_agent.chain.pacing import LoopBudget
from node_agent.chain.rpc import Rpc
from node_agent.chain.simulate import CALL, SimCall, SimResult, Simulator, raise_for
from node_agent.chain.tracker import Final, Job, Tracker
from node_agent.chain.wallet import NodeKey

__all__ = ["GWEI", "FeePolicy", "GasTooHigh", "Sender"]

log = structlog.get_logger(__name__)

# What /info shows of the sender's counters (0 until it happens): transactions sent, sent
# again (a gap), filled with a no-op, replaced with higher fees, re-signed under a new nonce,
# refused by the pool or not delivered to it, and receipts looked up one by one.
COUNTS = (
    "sent",
    "gaps",
    "resent",
    "filled",
    "replaced",
    "resigned",
    "broadcast_rejected",
    "broadcast_failed",
    "receipt_lookups",
    "log_waits",
)

# (block number, timestamp, base fee) of the head the service polls; None while unknown
Head = Callable[[], tuple[int | None, int | None, int | None]]


def _no_head() -> tuple[int | None, int | None, int | None]:
    return None, None, None


class Sender:
    """Signs and sends transactions for one key, recording each in the journal first."""

    def __init__(
        self,
        rpc: Rpc,
        key: NodeKey,
        journal: jr.Journal,
        policy: FeePolicy,
        chain_id: int,
        *,
        coordinator: str,
        head: Head = _no_head,
        max_pending: int = 1000,
        window: float = 0.003,
    ) -> None:
        self.rpc = rpc
        self.journal = journal
        self.policy = policy
        self._head = head
        # The chain side's CPU work per turn of the event loop (see pacing): every delivery
        # step passes through here, before and after its batched call.
        self.budget = LoopBudget()
        self.simulator = Simulator(rpc, key.address, lambda: head()[:2], window=window)
        self.outbox = Outbox(
            rpc,
            key,
            journal,
            policy,
            chain_id,
            self._base_fee,
            budget=self.budget,
            max_pending=max_pending,
            window=window,
        )
        self.tracker = Tracker(
            rpc,
            self.outbox,
            node=key.address,
            coordinator=coordinator,
            confirmations=policy.confirmations,
            stuck_after=policy.stuck_after,
        )

    async def close(self) -> None:
        await self.simulator.close()
        await self.outbox.close()

    async def _base_fee(self) -> int:
        base_fee = self._head()[2]
        if base_fee is None:
            _, _, base_fee = await self.rpc.head()
        return base_fee

    # --- simulation ------------------------------------------------------------------------

    async def precheck(self, to: str, data: bytes) -> None:
        """Would this call revert now? Raises Reverted (known errors decoded by name); the gas
        it would need does not matter yet (the real output is not computed)."""
        result = await self._simulate(SimCall(to, data, self.policy.max_gas_limit))
        raise_for(result)

    async def _simulate(self, call: SimCall) -> SimResult:
        """One batched simulation; the step that led here ran within the loop's budget."""
        await self.budget.turn()
        return await self.simulator.run(call)

    async def estimate(self, to: str, data: bytes, allowed_errors: tuple[str, ...] = ()) -> int:
        """Simulate and size the gas; raises Reverted (known errors decoded by name) or
        GasTooHigh."""
        limit = self.policy.max_gas_limit
        call = SimCall(to, data, limit)
        result = await self._simulate(call)
        if not result.ok and not result.output and self.simulator.batched:
            # Out of gas, or a revert without data: eth_estimateGas tells them apart.
            result = await self._exact(call)
        if not result.ok:
            return self._refused(result, allowed_errors)
        gas = self.policy.gas_limit(result.gas)
        if not result.exact:
            # Gas used can be less than the limit a transaction needs (refunds, the 63/64 rule
            # of calls): simulate again under the limit it would be sent with.
            check = await self._simulate(SimCall(to, data, gas))
            if not check.ok:
                result = await self._exact(call)
                if not result.ok:
                    return self._refused(result, allowed_errors)
                gas = self.policy.gas_limit(result.gas)
        return gas

    async def _exact(self, call: SimCall) -> SimResult:
        result = await self.simulator.single(call)
        if isinstance(result, Exception):
            raise result
        return result

    def _refused(self, result: SimResult, allowed_errors: tuple[str, ...]) -> int:
        limit = self.policy.max_gas_limit
        if not result.output and result.gas > limit:
            raise GasTooHigh(result.gas, limit)
        exc = Reverted(result.output, result.message)
        text = f"{exc.name or ''} {exc}".lower()
        if exc.name is None and any(e.lower() in text for e in allowed_errors if e):
            return limit
        raise exc

    async def view(self, to: str, fn: Function, *args: Any) -> tuple[Any, ...]:
        """A view call (batched with the other deliveries'); raises Reverted."""
        result = await self._simulate(
            SimCall(to, fn.encode_call(*args), self.policy.max_gas_limit, CALL)
        )
        raise_for(result)
        return fn.decode_result(result.output) if fn.outputs else ()

    async def read(
        self, calls: Sequence[tuple[str, Function, tuple[Any, ...]]]
    ) -> list[tuple[Any, ...] | None]:
        """Views batched with the deliveries' simulations (the payment gate's wallet reads);
        None where one reverted or answered something that does not decode."""

        async def one(to: str, fn: Function, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
            result = await self._simulate(
                SimCall(to, fn.encode_call(*args), self.policy.max_gas_limit, CALL)
            )
            if not result.ok:
                return None
            try:
                return fn.decode_result(result.output)
            except Exception:  # a hostile or absent contract's answer
                return None

        return list(await asyncio.gather(*(one(*call) for call in calls)))

    # --- sending and confirming ------------------------------------------------------------

    async def send(self, sub_key: str, interval: int, to: str, data: bytes, gas: int) -> str:
        """Journal, then broadcast; returns the tx hash. A failed broadcast is retried later."""
        await self.budget.turn()
        return await self.outbox.send(Outgoing(sub_key, interval, to, data, gas))

    async def confirm(
        self, pending: Mapping[Job, list[jr.TxRecord]], head: int, base_fee: int
    ) -> dict[Job, Final]:
        """Final states of journaled deliveries, already marked in the journal (in one
        transaction); the no-op fillers are settled here and not returned."""
        finals = await self.tracker.step(pending, head, base_fee)
        open_ = [txs[-1].gas for job, txs in pending.items() if job not in finals]
        self.outbox.settled(len(open_), sum(open_))
        await self.journal.mark_final([(k, i, state) for (k, i), (state, _) in finals.items()])
        return {job: final for job, final in finals.items() if job[0] != FILLER_KEY}

    def stats(self) -> dict[str, Any]:
        """Counts for /info: batches, gaps, re-broadcasts, replacements."""
        counts = self.outbox.counts + self.tracker.counts
        return {
            "next_nonce": self.outbox.allocator.next,
            "unconfirmed": self.outbox.unconfirmed,
            "simulation_batched": self.simulator.batched,
            "simulation_batches": self.simulator.batches,
            "loop_yields": self.budget.yields,
            "send_batches": self.outbox.batches,
            **{name: counts[name] for name in COUNTS},
        }


class GasTooHigh(Exception):
    def __init__(self, estimate: int, cap: int) -> None:
        super().__init__(f"gas estimate {estimate} above chain.wallet.max_gas_limit {cap}")
