"""Open proof requests: the node's stake locked for a verifier, followed until it is settled.

A delivery to a subscription with a verifier locks ``paymentAmount`` of the node's Wallet until
the verifier calls ``finalizeProofVerification`` (valid: the consumer's escrow is paid to the node;
invalid: the stake goes to the consumer), or until the request's expiry (a week), after which
anyone may finalize it in the node's favour. The node finalizes its own expired requests itself
(the Infernet node never does, so its stake stayed locked until someone else bothered).

Each proof delivery is journaled (``proof_requests``) before its transaction, so a crash loses
none: ``pending`` (sent) → ``open`` (locked on-chain, with its expiry) → ``released`` /
``slashed``, or ``abandoned`` when the delivery never landed. Outcomes come from the Coordinator's
``ProofVerified`` events, read with one ``eth_getLogs`` per new head for all of the node's
requests (filtered by the indexed node address), and only while some request is not final.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import structlog
from eth_abi.abi import decode
from eth_utils.address import to_checksum_address

from node_agent.chain import abi
from node_agent.chain import journal as jr
from node_agent.chain.delivery import GasTooHigh, Sender
from node_agent.chain.errors import Reverted
from node_agent.chain.rpc import Rpc
from node_agent.chain.subscription import Subscription
from node_agent.recorder import NO_RECORDER, Recorder

log = structlog.get_logger(__name__)

FINALIZE_PREFIX = "f:"  # journal key of the node's own finalizeProofVerification transactions
LOG_CHUNK = 5000  # blocks per eth_getLogs (public RPCs cap the range)
SHOWN = 20  # open and recently settled requests listed in /info
LIVE = (jr.PROOF_PENDING, jr.PROOF_OPEN)

Job = tuple[str, int]


def finalize_key(sub_id: int) -> str:
    return f"{FINALIZE_PREFIX}{sub_id}"


class ProofTracker:
    """Follows the node's proof requests; finalizes its expired ones."""

    def __init__(
        self,
        journal: jr.Journal,
        *,
        active: Callable[[Job], bool],
        head: Callable[[], tuple[int | None, int | None]],
        period: float,
        recorder: Recorder = NO_RECORDER,
    ) -> None:
        self.journal = journal
        self._recorder = recorder
        self._active = active  # a delivery of this job is being computed or sent right now
        self._head = head  # (block, block time) last seen by the scheduler
        self.period = period
        self.rpc: Rpc | None = None
        self.sender: Sender | None = None
        self.coordinator: str | None = None
        self.node: str | None = None
        self._rows: dict[Job, jr.ProofRecord] = {}
        self._counts: dict[str, int] = {}
        self._recent: list[jr.ProofRecord] = []
        self._scanned: int | None = None  # last block whose ProofVerified events were read

    async def load(self) -> None:
        for row in await self.journal.proof_requests(LIVE, limit=1_000_000):
            self._rows[row.job] = row
        self._counts = await self.journal.proof_counts()
        self._recent = await self.journal.proof_requests(
            (jr.PROOF_RELEASED, jr.PROOF_SLASHED), limit=SHOWN
        )
        scanned = await self.journal.get_meta("proof_log_block")
        self._scanned = int(scanned) if scanned is not None else None

    def attach(self, rpc: Rpc, sender: Sender, coordinator: str, node: str) -> None:
        self.rpc, self.sender, self.coordinator, self.node = rpc, sender, coordinator, node

    # --- what the delivery path tells us ----------------------------------------------------

    def pending_stake(self, token: str) -> int:
        """Stake sent in ``token`` but not yet seen locked (the Wallet does not show it yet)."""
        token = token.lower()
        return sum(
            row.stake
            for row in self._rows.values()
            if row.state == jr.PROOF_PENDING and row.token == token
        )

    async def record(self, job: Job, sub: Subscription, head: int) -> None:
        """Journal a proof delivery about to be sent (call before the transaction is)."""
        key, interval = job
        record = jr.ProofRecord(
            sub_key=key,
            interval=interval,
            sub_id=int(key[2:]) if key.startswith("s:") else None,
            verifier=sub.verifier,
            token=sub.payment_token.lower(),
            stake=sub.payment_amount,
            state=jr.PROOF_PENDING,
            expiry=None,
            sent_block=head,
        )
        await self.journal.add_proof_request(record)
        if job not in self._rows:
            self._rows[job] = record
            self._count(jr.PROOF_PENDING, +1)

    # --- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            if self._rows and self.rpc is not None:
                await self.step()
            await asyncio.sleep(self.period)

    async def step(self) -> None:
        """One pass: settle pending rows, read new outcomes, finalize expired requests."""
        head, now = self._head()
        if head is None or now is None:
            return
        for row in [r for r in self._rows.values() if r.state == jr.PROOF_PENDING]:
            await self._settle_pending(row, head)
        await self._scan(head)
        for row in [r for r in self._rows.values() if r.state == jr.PROOF_OPEN]:
            if row.finalize_tx is not None:
                await self._follow_finalize(row, head)
            elif row.expiry is not None and now >= row.expiry:
                await self._finalize(row, head)

    async def _settle_pending(self, row: jr.ProofRecord, head: int) -> None:
        state = await self.journal.delivery_state(row.sub_key, row.interval)
        if state == jr.SENT or self._active(row.job):
            return  # in flight, or its delivery is still being sent
        if state != jr.CONFIRMED:
            await self._update(row, state=jr.PROOF_ABANDONED)
            log.info("proof_request_abandoned", sub=row.sub_key, interval=row.interval, state=state)
            return
        sub_id = row.sub_id or await self._created_id(row.sub_key)
        if not sub_id:
            await self._update(row, state=jr.PROOF_ABANDONED)
            return
        row = await self._update(row, sub_id=sub_id)
        expiry = await self._expiry(row)
        if expiry:
            await self._update(row, state=jr.PROOF_OPEN, expiry=expiry)
            log.info(
                "proof_request_open",
                sub=row.sub_key,
                id=sub_id,
                interval=row.interval,
                stake=row.stake,
                token=row.token,
                expiry=expiry,
            )
        else:  # settled inside the delivery (an atomic verifier)
            await self._find_outcome(row, head)

    async def _created_id(self, key: str) -> int:
        """The on-chain id of a delegated subscription (``d:<owner>:<nonce>``), 0 if none."""
        assert self.rpc is not None and self.coordinator is not None
        _, owner, nonce = key.split(":")
        (sub_id,) = await self.rpc.eth_call(
            self.coordinator, abi.DELEGATE_CREATED_IDS, abi.delegate_key(owner, int(nonce))
        )
        return int(sub_id)

    async def _expiry(self, row: jr.ProofRecord) -> int:
        """The open request's expiry on the Coordinator; 0 when there is none (settled)."""
        assert self.rpc is not None and self.coordinator is not None and self.node is not None
        assert row.sub_id is not None
        expiry, _, _ = await self.rpc.eth_call(
            self.coordinator,
            abi.PROOF_REQUESTS,
            abi.node_key(row.sub_id, row.interval, self.node),
        )
        return int(expiry)

    async def _logs(self, start: int, end: int, *ids: int) -> list[dict[str, Any]]:
        """ProofVerified events about this node (optionally one id and interval)."""
        assert self.rpc is not None and self.coordinator is not None and self.node is not None
        topics: list[Any] = [
            "0x" + abi.PROOF_VERIFIED_TOPIC.hex(),
            *("0x" + n.to_bytes(32, "big").hex() for n in ids),
        ]
        topics += [None] * (3 - len(topics))
        topics.append("0x" + bytes(12).hex() + self.node[2:].lower())
        found: list[dict[str, Any]] = []
        for first in range(start, end + 1, LOG_CHUNK):
            last = min(first + LOG_CHUNK - 1, end)
            query = {
                "address": self.coordinator,
                "topics": topics,
                "fromBlock": first,
                "toBlock": last,
            }
            found += await self.rpc.call(_get_logs(query), what="get_logs")
        return found

    async def _scan(self, head: int) -> None:
        """Outcomes of every request with a known id, from the events since the last scan."""
        live = [r for r in self._rows.values() if r.state in LIVE]
        if not live:
            return
        start = min(r.sent_block for r in live)
        if self._scanned is not None:
            start = max(start, self._scanned + 1)
        if start > head:
            return
        by_id = {(r.sub_id, r.interval): r for r in live if r.sub_id is not None}
        for event in await self._logs(start, head):
            key = (_topic_int(event, 1), _topic_int(event, 2))
            row = by_id.get(key)
            if row is not None:
                await self._settled(row, event)
        self._scanned = head
        await self.journal.set_meta("proof_log_block", str(head))

    async def _find_outcome(self, row: jr.ProofRecord, head: int) -> None:
        assert row.sub_id is not None
        events = await self._logs(row.sent_block, head, row.sub_id, row.interval)
        if events:
            await self._settled(row, events[-1])

    async def _settled(self, row: jr.ProofRecord, event: dict[str, Any]) -> None:
        _active, by, valid = decode(["bool", "address", "bool"], bytes(event["data"]))
        state = jr.PROOF_RELEASED if valid else jr.PROOF_SLASHED
        was = row.state
        row = await self._update(row, state=state, finalized_by=to_checksum_address(by))
        if was in LIVE:
            self._recorder.proof_settled(state)
        log.info(
            "proof_request_settled",
            sub=row.sub_key,
            id=row.sub_id,
            interval=row.interval,
            outcome=state,
            stake=row.stake,
            token=row.token,
            finalized_by=row.finalized_by,
        )

    async def _finalize(self, row: jr.ProofRecord, head: int) -> None:
        """Past its expiry: finalize in the node's favour (anyone may; the node does)."""
        assert self.sender is not None and self.coordinator is not None and self.node is not None
        assert row.sub_id is not None
        data = abi.FINALIZE_PROOF.encode_call(row.sub_id, row.interval, self.node, True)
        try:
            gas = await self.sender.estimate(self.coordinator, data)
        except Reverted as exc:
            if exc.name == "ProofRequestNotFound":  # someone else did; the event says how
                await self._find_outcome(row, head)
            else:
                log.warning("proof_finalize_refused", sub=row.sub_key, error=str(exc))
            return
        except GasTooHigh as exc:
            log.warning("proof_finalize_refused", sub=row.sub_key, error=str(exc))
            return
        tx = await self.sender.send(
            finalize_key(row.sub_id), row.interval, self.coordinator, data, gas
        )
        await self._update(row, finalize_tx=tx)
        log.info("proof_finalize_sent", id=row.sub_id, interval=row.interval, tx=tx)

    async def _follow_finalize(self, row: jr.ProofRecord, head: int) -> None:
        """Our finalize transaction ended without an event for us: settled by someone else
        meanwhile, or it failed and is tried again."""
        assert row.sub_id is not None
        state = await self.journal.delivery_state(finalize_key(row.sub_id), row.interval)
        if state in (jr.REVERTED, jr.SKIPPED, jr.FAILED):
            if await self._expiry(row):
                await self._update(row, finalize_tx=None)
            else:
                await self._find_outcome(row, head)

    async def _update(self, row: jr.ProofRecord, **changes: Any) -> jr.ProofRecord:
        new = replace(row, **changes)
        await self.journal.update_proof_request(new)
        if new.state != row.state:
            self._count(row.state, -1)
            self._count(new.state, +1)
        if new.state in LIVE:
            self._rows[new.job] = new
        else:
            self._rows.pop(new.job, None)
            if new.state != jr.PROOF_ABANDONED:
                self._recent = [new, *self._recent[: SHOWN - 1]]
        return new

    def _count(self, state: str, delta: int) -> None:
        self._counts[state] = max(self._counts.get(state, 0) + delta, 0)

    def status(self) -> dict[str, Any]:
        live = sorted(self._rows.values(), key=lambda r: (r.sent_block, r.sub_key, r.interval))
        return {
            **{state: self._counts.get(state, 0) for state in (*LIVE, *_FINAL)},
            "open_requests": [describe(r) for r in live[:SHOWN]],
            "recent": [describe(r) for r in self._recent],
        }


_FINAL = (jr.PROOF_RELEASED, jr.PROOF_SLASHED, jr.PROOF_ABANDONED)


def describe(row: jr.ProofRecord) -> dict[str, Any]:
    """A proof request as shown in /info and by ``wallet show`` (the stake as a string: uint256)."""
    return {
        "subscription": row.sub_key,
        "id": row.sub_id,
        "interval": row.interval,
        "state": row.state,
        "token": row.token,
        "stake": str(row.stake),
        "verifier": row.verifier,
        "expiry": row.expiry,
        "finalized_by": row.finalized_by,
    }


def _get_logs(query: dict[str, Any]) -> Callable[[Any], Awaitable[list[dict[str, Any]]]]:
    async def op(w3: Any) -> list[dict[str, Any]]:
        return [dict(entry) for entry in await w3.eth.get_logs(query)]

    return op


def _topic_int(event: dict[str, Any], index: int) -> int:
    return int.from_bytes(bytes(event["topics"][index]), "big")
