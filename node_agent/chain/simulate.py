"""Simulations of many deliveries in one JSON-RPC call (``eth_simulateV1``), one per call where
the endpoint lacks it.

Every delivery is simulated before anything is computed (does the Coordinator still want it?),
reads its inputs (``getContainerInputs``, a view) and is simulated again with its output, to
size its gas. One call per delivery and step makes a burst of 1,000 deliveries cost thousands
of round trips. ``eth_simulateV1`` (geth ≥ 1.14.9, reth, anvil, most providers) runs a list of
calls from the node's address in one simulated block on top of a pinned block: the delivery
tasks submit their calls to a :class:`~node_agent.chain.coalesce.Coalescer` and each flush is
one ``eth_simulateV1``.

The calls of one flush run one after another in that block, so each sees the effects of the
ones before it: what several deliveries spend from one consumer wallet adds up, as it will on
chain. The block is pinned to the node's head and its time set one second later, the block
the transaction can land in first (geth would otherwise put it 12 s later).

Where the endpoint has no ``eth_simulateV1`` (the first answer says so) the simulator falls
back for good to ``eth_estimateGas`` / ``eth_call`` per call, several at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from node_agent.chain.coalesce import Coalescer
from node_agent.chain.errors import Reverted, decode_error_name
from node_agent.chain.rpc import MethodUnsupported, RequestRejected, Rpc

log = structlog.get_logger(__name__)

ESTIMATE, CALL = "estimate", "call"
MAX_CALLS = 50  # calls per eth_simulateV1: its JSON is built and read in one step of the loop
FALLBACK_CONCURRENCY = 16  # eth_estimateGas / eth_call in flight when eth_simulateV1 is absent
REFUSALS_BEFORE_FALLBACK = 3  # consecutive refused eth_simulateV1 before giving it up


@dataclass(frozen=True)
class SimCall:
    """``to.data`` from the node's address: ``kind`` ESTIMATE (its gas matters) or CALL (its
    return data matters), under a ``gas`` limit."""

    to: str
    data: bytes
    gas: int
    kind: str = ESTIMATE


@dataclass(frozen=True)
class SimResult:
    ok: bool
    gas: int  # gas used (eth_simulateV1) or the estimate (eth_estimateGas); 0 for CALL
    output: bytes  # return data, or revert data when not ok
    message: str = ""
    exact: bool = False  # ``gas`` is a gas limit known to be enough (eth_estimateGas)

    @property
    def error_name(self) -> str | None:
        return decode_error_name(self.output) if not self.ok else None


Head = Callable[[], tuple[int | None, int | None]]  # (block number, timestamp) of the head


class Simulator:
    def __init__(self, rpc: Rpc, sender: str, head: Head, *, window: float = 0.003) -> None:
        self.rpc = rpc
        self.sender = sender
        self._head = head
        self.batched = True  # eth_simulateV1 until the endpoint says it has none
        self._refusals = 0
        self._fallback_slots = asyncio.Semaphore(FALLBACK_CONCURRENCY)
        self._coalescer: Coalescer[SimCall, SimResult] = Coalescer(
            self._flush, name="simulate", max_batch=MAX_CALLS, window=window
        )

    @property
    def batches(self) -> int:
        return self._coalescer.flushes

    async def run(self, call: SimCall) -> SimResult:
        return await self._coalescer.submit(call)

    async def close(self) -> None:
        await self._coalescer.close()

    async def _flush(self, calls: list[SimCall]) -> list[SimResult | Exception]:
        if self.batched:
            try:
                results = await self._simulate(calls)
                self._refusals = 0
                return list(results)
            except MethodUnsupported as exc:
                self._give_up(f"eth_simulateV1 not offered: {exc}")
            except (RequestRejected, _BadAnswer) as exc:
                self._refusals += 1
                log.warning("simulate_batch_refused", calls=len(calls), error=str(exc)[:200])
                if self._refusals >= REFUSALS_BEFORE_FALLBACK:
                    self._give_up(f"eth_simulateV1 refused {self._refusals} times: {exc}")
        return list(await asyncio.gather(*(self.single(call) for call in calls)))

    def _give_up(self, reason: str) -> None:
        self.batched = False
        log.warning("simulate_batch_unavailable", reason=reason[:300])

    async def _simulate(self, calls: list[SimCall]) -> list[SimResult]:
        number, timestamp = self._head()
        block: dict[str, Any] = {
            "calls": [
                {"from": self.sender, "to": c.to, "data": "0x" + c.data.hex(), "gas": hex(c.gas)}
                for c in calls
            ],
            # room for every call at its own limit, whatever the chain's block gas limit
            "blockOverrides": {"gasLimit": hex(sum(c.gas for c in calls))},
        }
        tag: str = "latest"
        if number is not None and timestamp is not None:
            block["blockOverrides"]["time"] = hex(timestamp + 1)
            tag = hex(number)
        answer = await self.rpc.request(
            "eth_simulateV1", [{"blockStateCalls": [block]}, tag], refusals_final=True
        )
        try:
            answers = answer[0]["calls"]
            if len(answers) != len(calls):
                raise ValueError(f"{len(answers)} answers for {len(calls)} calls")
            return [_parse(a) for a in answers]
        except (LookupError, TypeError, ValueError) as exc:
            raise _BadAnswer(f"unexpected eth_simulateV1 answer: {exc}") from None

    async def single(self, call: SimCall) -> SimResult | Exception:
        """One eth_estimateGas or eth_call, not batched: the fallback, and the exact answer
        where a batched simulation leaves a doubt (out of gas, or a revert without data)."""
        tx = {"from": self.sender, "to": call.to, "data": "0x" + call.data.hex()}
        async with self._fallback_slots:
            try:
                if call.kind == CALL:
                    raw = await self.rpc.request("eth_call", [tx, "latest"])
                    return SimResult(True, 0, hex_bytes(raw))
                gas = int(await self.rpc.request("eth_estimateGas", [tx]), 16)
            except Reverted as exc:
                return SimResult(False, 0, exc.data, str(exc))
            except Exception as exc:
                return exc
        if gas > call.gas:
            return SimResult(False, gas, b"", f"gas {gas} above the limit {call.gas}")
        return SimResult(True, gas, b"", exact=True)


class _BadAnswer(Exception):
    """An eth_simulateV1 answer of an unexpected shape."""


def hex_bytes(value: Any) -> bytes:
    """0x-hex from an endpoint as bytes; anything else (junk included) as b''."""
    if not isinstance(value, str):
        return b""
    text = value[2:] if value[:2].lower() == "0x" else value
    try:
        return bytes.fromhex(text)
    except ValueError:
        return b""


def _parse(answer: dict[str, Any]) -> SimResult:
    """One call's outcome: status 1 with its return data, or its revert data and reason."""
    gas = int(answer.get("gasUsed") or "0x0", 16)
    if int(answer.get("status") or "0x0", 16) == 1:
        return SimResult(True, gas, hex_bytes(answer.get("returnData")))
    error = answer.get("error") or {}
    data = hex_bytes(error.get("data")) if isinstance(error, dict) else b""
    if not data:
        data = hex_bytes(answer.get("returnData"))
    message = str(error.get("message", "")) if isinstance(error, dict) else str(error)
    return SimResult(False, gas, data, message or "execution reverted")


def raise_for(result: SimResult) -> None:
    """A failed simulation as the :class:`Reverted` the callers know."""
    if not result.ok:
        raise Reverted(result.output, result.message)
