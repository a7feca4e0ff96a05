"""ChainService: owns the chain side's background tasks and the delegated-subscription entry.

Loops (each supervised: a failure is logged and the loop restarts with backoff, never the
daemon): connect (Registry → Coordinator/Reader, chain id), sync (new subscription ids),
schedule (one pass per new block: due work → deliveries), confirm (receipts, re-broadcast,
replacement), retention (prunes the journal and the in-memory handled set). Each step of sync,
schedule and confirm reports to a ``FailureStreak``: a loop that keeps failing turns
``checks.chain`` unhealthy until it recovers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from eth_utils.address import is_address, to_checksum_address

from node_agent.chain import abi, eip712, scheduler
from node_agent.chain import journal as jr
from node_agent.chain.cadence import HeadCadence
from node_agent.chain.delivery import GWEI, FeePolicy, GasTooHigh, Sender
from node_agent.chain.errors import BENIGN, TERMINAL, ChainUnavailable, Reverted
from node_agent.chain.guardian import Rejection, check_subscription
from node_agent.chain.health import FailureStreak, chain_health
from node_agent.chain.outputs import OutputError, encode_output
from node_agent.chain.paygate import PaymentGate
from node_agent.chain.payments import Refusal, accepted_tokens
from node_agent.chain.proofs import FINALIZE_PREFIX, ProofTracker
from node_agent.chain.rpc import Rpc, backoff_delays
from node_agent.chain.runner import OFFCHAIN, ONCHAIN, JobRunner
from node_agent.chain.subscription import ZERO_ADDRESS, Subscription
from node_agent.chain.sync import SubscriptionSync
from node_agent.chain.wallet import NodeKey, load_key
from node_agent.config import Config
from node_agent.errors import AccessDenied, BadRequest, GuardianRejection, Overloaded
from node_agent.recorder import NO_RECORDER, Recorder

log = structlog.get_logger(__name__)

STATE_FILE = "chain.sqlite"
SYNC, SCHEDULE, CONFIRM = "chain-sync", "chain-schedule", "chain-confirm"
PROOFS = "chain-proofs"
PRUNE_EVERY = 600.0  # seconds between retention passes (at most)
PRUNE_BATCH = 5000  # deliveries deleted per journal transaction
START_SLICE = 8  # deliveries started per turn of the event loop (their first steps run then)
OPENED_KEPT = 10_000  # deliveries whose opening block is remembered for the latency histogram
UNTRACKED_PER_LINE = 500  # subscription ids per "subscriptions_untracked" line
# A delivery refused for a transient reason (payments.TRANSIENT) is checked again on the next
# block or after RETRY_FIRST_S, then after delays doubling up to RETRY_MAX_S (jittered).
RETRY_FIRST_S = 2.0
RETRY_MAX_S = 60.0
# Bounds on waiting, since anyone can open paid subscriptions from an empty Wallet for the price
# of the creation's gas: at most MAX_WAITING deliveries wait at once (the rest are skipped at
# once with their reason), and none longer than WAIT_MAX_S (a callback request's interval never
# closes: it would be checked every minute for good).
MAX_WAITING = 1000
WAIT_MAX_S = 24 * 3600.0


@dataclass
class _Delegated:
    owner: str
    nonce: int
    expiry: int
    v: int
    r: int
    s: int
    sub: Subscription
    data: Any
    containers: tuple[str, ...]

    @property
    def key(self) -> str:
        return f"d:{self.owner.lower()}:{self.nonce}"


@dataclass
class _Waiting:
    """A delivery refused for a reason that may pass (``Refusal.transient``): checked again
    while its interval is open, first with the next block, then with backoff. Nothing is
    journaled meanwhile: a restarted agent finds the interval not handled and checks it anew."""

    refusal: Refusal
    block: int | None  # head at the first refusal: the next block brings the first check
    delay: Callable[[], float]
    next_at: float = 0.0  # time.monotonic() from which it is checked again
    since: float = field(default_factory=time.monotonic)  # the first refusal

    def ready(self, head: int | None, now: float) -> bool:
        new_block = self.block is not None and head is not None and head > self.block
        return new_block or now >= self.next_at


class ChainService:
    def __init__(
        self,
        config: Config,
        state_dir: Path,
        runner: JobRunner,
        recorder: Recorder = NO_RECORDER,
    ) -> None:
        self.config = config
        self.chain = config.chain
        self.onchain = config.onchain
        self.state_dir = state_dir
        self.runner = runner
        self.containers = {c.id: c for c in config.containers}
        self.lookup = scheduler.ContainerLookup(
            {c.id: c.external for c in config.containers},
            pipelines=self.onchain.pipelines,
            max_length=self.onchain.max_pipeline_length,
            max_sets=self.onchain.max_container_sets,
        )
        self.rpc = Rpc(self.chain.all_rpc_urls(), timeout=self.chain.rpc_timeout, recorder=recorder)
        self._recorder = recorder
        # (key, interval) -> head block when the node first found it due: where the delivery
        # latency in blocks starts (in memory: a delivery sent before a restart is not timed).
        self._opened: dict[tuple[str, int], int] = {}
        self.journal = jr.Journal(state_dir / STATE_FILE)
        self.key: NodeKey | None = None
        self.sender: Sender | None = None
        self.sync: SubscriptionSync | None = None
        self.coordinator: str | None = None
        self.chain_id: int | None = None
        self.head: int | None = None
        self.head_time: int | None = None
        self._base_fee: int | None = None  # of the head: what the node's transactions pay
        # Highest block whose subscriptions were all known when a scheduling pass finished.
        self.scheduled_block: int | None = None
        self._known_block: int | None = None
        self.last_error: str | None = None
        self._subs: dict[int, Subscription] = {}
        self._chains: dict[int, tuple[str, ...]] = {}
        self._delegated: dict[str, _Delegated] = {}
        self._handled: set[tuple[str, int]] = set()
        # Per subscription, the interval last found full (only current intervals are asked about).
        self._full: dict[int, int] = {}
        self._inflight: dict[tuple[str, int], asyncio.Task[None]] = {}
        # Paid deliveries refused for now (transient): at most one per due (key, interval),
        # each dropped when it passes, turns into a rule refusal, or its interval ends.
        self._waiting: dict[tuple[str, int], _Waiting] = {}
        # When the next block is worth polling for (an interval opens in it), learnt per head.
        self._cadence = HeadCadence(self.chain.snapshot_sync.sync_period)
        self._next_open: int | None = None  # chain time the next tracked interval opens
        self._tasks: list[asyncio.Task[None]] = []
        self._streaks = {name: FailureStreak(name) for name in (SYNC, SCHEDULE, CONFIRM)}
        self._ready = asyncio.Event()
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(self.onchain.max_concurrent_deliveries)
        wallet = self.chain.wallet
        self.node_wallet = (
            to_checksum_address(wallet.payment_address)
            if wallet is not None and wallet.payment_address
            else ZERO_ADDRESS
        )
        # Paid subscriptions: the wallets checked before computing, proof stakes followed after.
        self.payments = PaymentGate(
            wallet.payment_address if wallet is not None else None, recorder
        )
        self.proofs = ProofTracker(
            self.journal,
            active=lambda job: job in self._inflight,
            head=lambda: (self.head, self.head_time),
            period=max(self.chain.snapshot_sync.sync_period, 1.0),
            recorder=recorder,
        )

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Open local state and start the loops; RPC trouble never makes this fail."""
        assert self.chain.wallet is not None
        await self.journal.open()
        try:
            self.key = await load_key(self.chain.wallet)
        except Exception:
            await self.journal.close()
            raise
        self._handled = await self.journal.load_handled(self.onchain.max_attempts)
        await self.proofs.load()
        for sub_id, data, chain in await self.journal.load_subscriptions():
            self._subs[sub_id] = Subscription.from_json(data)
            self._chains[sub_id] = chain
        for record in await self.journal.load_delegated():
            self._delegated[_key(record.owner, record.nonce)] = _parse_delegated(
                record.body, record.containers
            )
        log.info(
            "chain_service_starting",
            address=self.key.address,
            tracked=len(self._subs),
            delegated=len(self._delegated),
        )
        self._spawn("chain-connect", self._connect, restart=False)
        self._spawn("chain-retention", self._retention_loop, restart=True)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop loops; give in-flight deliveries ``grace`` seconds (they are journaled anyway)."""
        self._stopping.set()
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        inflight = list(self._inflight.values())
        if inflight:
            _, pending = await asyncio.wait(inflight, timeout=grace)
            for task in pending:
                task.cancel()
        await asyncio.gather(*self._tasks, *inflight, return_exceptions=True)
        if self.sender is not None:
            await self.sender.close()
        await self.rpc.close()
        await self.journal.close()

    @property
    def address(self) -> str:
        return self.key.address if self.key else ""

    def pending_count(self) -> int:
        """On-chain work in progress: deliveries being computed or sent + delegated waiting."""
        return len(self._inflight) + len(self._delegated)

    def health(self) -> dict[str, Any]:
        """For /health: degraded while not connected, unhealthy while a loop keeps failing."""
        connected = self._ready.is_set() and self.head is not None
        return {**chain_health(connected, self._streaks.values()), **self.status()}

    def status(self) -> dict[str, Any]:
        synced = self.sync.synced_block if self.sync else None
        return {
            "enabled": True,
            "address": self.key.address if self.key else None,
            "ready": self._ready.is_set(),
            "chain_id": self.chain_id,
            "coordinator": self.coordinator,
            "head": self.head,
            "synced_block": synced,
            "lag": None if self.head is None or synced is None else max(self.head - synced, 0),
            "scheduled_block": self.scheduled_block,
            "tracked_subscriptions": len(self._subs),
            "skipped_subscriptions": self.sync.skipped if self.sync else 0,
            "delegated_subscriptions": len(self._delegated),
            "deliveries_in_flight": len(self._inflight),
            "rpc_calls": self.rpc.calls,
            "rpc_calls_by_method": self.rpc.calls_by_method(),
            "sending": self.sender.stats() if self.sender else None,
            "rpc_failures": self.rpc.failures,
            "last_error": self.last_error,
            "loop_failures": {name: streak.count for name, streak in self._streaks.items()},
            "recent_skipped": self.sync.recent() if self.sync else [],
            "payments": {**self.payments.status(), "proofs": self.proofs.status()},
        }

    def _spawn(self, name: str, loop: Callable[[], Awaitable[None]], *, restart: bool) -> None:
        self._tasks.append(asyncio.create_task(self._supervise(name, loop, restart), name=name))

    async def _supervise(
        self, name: str, loop: Callable[[], Awaitable[None]], restart: bool
    ) -> None:
        delay = backoff_delays(0.5, 30.0)
        streak = self._streaks.get(name)
        while not self._stopping.is_set():
            try:
                await loop()
                if not restart:
                    return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"{name}: {type(exc).__name__}: {exc}"[:300]
                log.error("chain_task_failed", task=name, error=self.last_error)
            if streak is not None and streak.count <= 1:
                delay = backoff_delays(0.5, 30.0)  # a first failure after steps that worked
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay())

    @contextlib.contextmanager
    def _step(self, name: str) -> Iterator[None]:
        """Report one loop step's outcome to its streak (the exception still propagates)."""
        streak = self._streaks[name]
        try:
            yield
        except Exception as exc:
            if streak.failed(f"{type(exc).__name__}: {exc}"[:300]):
                log.error("chain_loop_unhealthy", task=name, reason=streak.reason())
            raise
        if streak.succeeded():
            log.info("chain_loop_recovered", task=name)

    async def _connect(self) -> None:
        assert self.chain.registry_address and self.key
        registry = to_checksum_address(self.chain.registry_address)
        self.chain_id = await self.rpc.chain_id()
        (coordinator,) = await self.rpc.eth_call(registry, abi.REGISTRY_COORDINATOR)
        (reader,) = await self.rpc.eth_call(registry, abi.REGISTRY_READER)
        self.coordinator = to_checksum_address(coordinator)
        wallet = self.chain.wallet
        assert wallet is not None
        cap = wallet.max_fee_per_gas_gwei
        policy = FeePolicy(
            max_fee_cap=int(cap * GWEI) if cap is not None else None,
            priority_fee=int(wallet.max_priority_fee_per_gas_gwei * GWEI),
            bump_percent=self.onchain.fee_bump_percent,
            stuck_after=self.onchain.stuck_after_seconds,
            gas_margin_percent=self.onchain.gas_margin_percent,
            max_gas_limit=wallet.max_gas_limit,
            confirmations=self.chain.confirmations,
        )
        self.sender = Sender(
            self.rpc,
            self.key,
            self.journal,
            policy,
            self.chain_id,
            coordinator=self.coordinator,
            head=lambda: (self.head, self.head_time, self._base_fee),
            max_pending=self.onchain.max_pending_transactions,
        )
        snap = self.chain.snapshot_sync
        self.sync = SubscriptionSync(
            self.rpc,
            self.journal,
            coordinator=self.coordinator,
            reader=to_checksum_address(reader),
            screen=lambda sub_id, sub: check_subscription(
                sub,
                self.lookup,
                self.containers,
                sub_id=sub_id,
                payment_address=self.payments.payment_address,
            ),
            trail_head_blocks=self.chain.trail_head_blocks,
            batch_size=snap.batch_size,
            starting_sub_id=snap.starting_sub_id,
        )
        await self.sync.load()
        await self.payments.connect(self.rpc, registry, self.key.address)
        self.payments.reader = self.sender.read
        self.proofs.attach(self.rpc, self.sender, self.coordinator, self.key.address)
        self._ready.set()
        log.info("chain_connected", chain_id=self.chain_id, coordinator=self.coordinator)
        self._spawn(SYNC, self._sync_loop, restart=True)
        self._spawn(SCHEDULE, self._schedule_loop, restart=True)
        self._spawn(CONFIRM, self._confirm_loop, restart=True)
        self._spawn(PROOFS, self.proofs.run, restart=True)
        tokens = accepted_tokens(self.containers.values())
        self._spawn("chain-balances", lambda: self.payments.watch_balances(tokens), restart=True)

    async def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` or until woken; True when woken (new subscriptions, new work)."""
        woken = False
        with contextlib.suppress(TimeoutError):
            woken = await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()
        return woken

    # --- loops ---------------------------------------------------------------------------

    async def _sync_loop(self) -> None:
        assert self.sync is not None
        period = self.chain.snapshot_sync.sync_period
        while not self._stopping.is_set():
            with self._step(SYNC):
                accepted = await self.sync.step()
            for sub_id, sub, chain in accepted:
                self._subs.setdefault(sub_id, sub)
                self._chains.setdefault(sub_id, chain)
            self._known_block = self.sync.synced_block
            self._wake.set()
            await asyncio.sleep(period)

    async def _schedule_loop(self) -> None:
        last_block = -1
        woken = True
        while not self._stopping.is_set():
            with self._step(SCHEDULE):
                number, now, base_fee = await self.rpc.head()
                self.head, self.head_time, self._base_fee = number, now, base_fee
                self._cadence.observe(number, now, time.monotonic())
                if number != last_block or woken or self._wake.is_set() or self._retry_due():
                    last_block = number
                    known = self._known_block
                    self._wake.clear()
                    await self._schedule(now)
                    if known is not None:
                        self.scheduled_block = min(number, known)
            # every period, or fast around the block that opens an interval (chain/cadence.py)
            woken = await self._sleep(self._cadence.delay(time.monotonic(), self._next_open))

    async def _schedule(self, now: int) -> None:
        """One pass: drop finished subscriptions, start the due deliveries."""
        margin = self.onchain.interval_margin_seconds
        for sub_id, sub in list(self._subs.items()):
            if scheduler.is_finished(sub, now):
                await self._untrack(sub_id, "finished")
        await self._end_waits(now)
        waiting_owners = {d.sub.owner for d in self._delegated.values()}
        work = [
            item
            for item in scheduler.candidates(self._subs, now, done=self._is_done, margin=margin)
            if self._full.get(item.subscription_id) != item.interval
            and self._subs[item.subscription_id].owner not in waiting_owners
        ]
        if work:
            counts = await self._redundancy_counts(work)
            open_, full = scheduler.due_after_counts(self._subs, work, counts)
            for item in full:
                self._full[item.subscription_id] = item.interval
                sub = self._subs[item.subscription_id]
                if item.interval >= sub.frequency:
                    await self._untrack(item.subscription_id, "completed")
            for index, item in enumerate(open_):
                if index and index % START_SLICE == 0:
                    await asyncio.sleep(0)  # a burst starts a slice of deliveries per turn
                self._start(
                    f"s:{item.subscription_id}",
                    item.interval,
                    self._deliver_onchain(item.subscription_id, item.interval),
                )
        subs = itertools.chain(self._subs.values(), (d.sub for d in self._delegated.values()))
        self._next_open = scheduler.next_opening(subs, now)
        for key, delegated in list(self._delegated.items()):
            interval = scheduler.current_interval(delegated.sub, now, margin=margin)
            if interval is None or (key, interval) in self._handled or self._waits((key, interval)):
                continue
            self._start(key, interval, self._deliver_delegated(delegated, interval))

    def _is_done(self, sub_id: int, interval: int) -> bool:
        job = (f"s:{sub_id}", interval)
        return job in self._handled or job in self._inflight or self._waits(job)

    def _waits(self, job: tuple[str, int]) -> bool:
        """Refused for now (transient) and not due for another check yet."""
        waiting = self._waiting.get(job)
        return waiting is not None and not waiting.ready(self.head, time.monotonic())

    def _retry_due(self) -> bool:
        """Some refused delivery is due for another check (a new block starts a pass anyway)."""
        now = time.monotonic()
        return any(
            now >= w.next_at for job, w in self._waiting.items() if job not in self._inflight
        )

    async def _end_waits(self, now: int) -> None:
        """A refused delivery whose interval is no longer deliverable (the scheduler's rule: the
        next interval opened, the margin reached, the subscription ended or untracked, the
        interval full) ends skipped with its last reason, as a rule refusal would."""
        margin = self.onchain.interval_margin_seconds
        for job, waiting in list(self._waiting.items()):
            key, interval = job
            if job in self._inflight:  # being checked again: it comes back here if refused
                continue
            sub: Subscription | None = None
            if key.startswith("s:"):
                if self._full.get(int(key[2:])) != interval:
                    sub = self._subs.get(int(key[2:]))
            elif (delegated := self._delegated.get(key)) is not None:
                sub = delegated.sub
            closed = sub is None or scheduler.current_interval(sub, now, margin=margin) != interval
            if closed or time.monotonic() - waiting.since > WAIT_MAX_S:
                await self._payment_refused(key, interval, waiting.refusal, final=True)

    async def _redundancy_counts(self, work: list[scheduler.Due]) -> list[int]:
        assert self.sync is not None
        counts: list[int] = []
        for start in range(0, len(work), 500):
            chunk = work[start : start + 500]
            (values,) = await self.rpc.eth_call(
                self.sync.reader,
                abi.READ_REDUNDANCY_COUNT_BATCH,
                [w.subscription_id for w in chunk],
                [w.interval for w in chunk],
            )
            counts.extend(int(v) for v in values)
        return counts

    async def _untrack(self, sub_id: int, reason: str) -> None:
        await self._untrack_many([sub_id], reason)

    async def _untrack_many(self, sub_ids: list[int], reason: str) -> None:
        dropped = [i for i in sub_ids if self._subs.pop(i, None) is not None]
        for sub_id in dropped:
            self._chains.pop(sub_id, None)
            self._full.pop(sub_id, None)
        await self.journal.drop_subscriptions(dropped)
        if len(dropped) == 1:
            log.info("subscription_untracked", id=dropped[0], reason=reason)
            return
        # A burst's last block ends hundreds at once: a line per chunk, not one per id (each
        # line costs both processes; the delivery_final lines already name every delivery).
        for start in range(0, len(dropped), UNTRACKED_PER_LINE):
            chunk = dropped[start : start + UNTRACKED_PER_LINE]
            log.info("subscriptions_untracked", count=len(chunk), ids=chunk, reason=reason)

    def _delivered_last(self, sub_id: int, interval: int) -> bool:
        """Our delivery of the last interval is final: a node delivers an interval at most once,
        so nothing is left for us (a callback never closes, so it was tracked forever before)."""
        sub = self._subs.get(sub_id)
        return sub is not None and interval >= sub.frequency

    def _start(self, key: str, interval: int, work: Awaitable[None]) -> None:
        job = (key, interval)
        # Re-checked here: a delivery may have finished while this pass awaited the RPC.
        if job in self._inflight or job in self._handled or self._stopping.is_set():
            if asyncio.iscoroutine(work):
                work.close()
            return
        if self.head is not None and job not in self._opened:
            if len(self._opened) >= OPENED_KEPT:  # intervals abandoned unfinished: oldest go
                del self._opened[next(iter(self._opened))]
            self._opened[job] = self.head

        async def guarded() -> None:
            try:
                await work
            except asyncio.CancelledError:
                raise
            except ChainUnavailable as exc:
                self.last_error = f"delivery {key}/{interval}: {exc.params}"
                log.warning("delivery_postponed", sub=key, interval=interval, error=str(exc))
            except Exception as exc:
                self.last_error = f"delivery {key}/{interval}: {type(exc).__name__}: {exc}"[:300]
                log.exception("delivery_crashed", sub=key, interval=interval)
            finally:
                self._inflight.pop(job, None)

        self._inflight[job] = asyncio.create_task(guarded(), name=f"deliver-{key}-{interval}")

    async def _confirm_loop(self) -> None:
        assert self.sender is not None
        period = self.chain.snapshot_sync.sync_period
        while not self._stopping.is_set():
            with self._step(CONFIRM):
                # Once per block (the schedule loop polls the head): no call of its own for it.
                if self.head is not None and self.sender.tracker.due(self.head):
                    pending = await self.journal.unconfirmed()
                    finals = await self.sender.confirm(pending, self.head, self._base_fee or 0)
                    last: list[int] = []  # subscriptions whose last interval this confirmed
                    for (key, interval), txs in pending.items():
                        final = finals.get((key, interval))
                        if final is not None:  # journaled by confirm()
                            await self.sender.budget.turn()  # a block may confirm hundreds
                            state, mined = final
                            if key.startswith(FINALIZE_PREFIX):  # a proof finalization
                                log.info("proof_finalize_final", id=key[2:], state=state)
                                continue
                            self._delivery_ended(key, interval, state, mined)
                            log.info(
                                "delivery_final",
                                sub=key,
                                interval=interval,
                                state=state,
                                tx=txs[-1].tx_hash,
                            )
                            if key.startswith("d:"):
                                await self._resolve_delegated(key, interval, state)
                            elif state == jr.CONFIRMED and self._delivered_last(
                                int(key[2:]), interval
                            ):
                                last.append(int(key[2:]))
                    await self._untrack_many(last, "delivered last interval")
            await asyncio.sleep(period)

    async def _retention_loop(self) -> None:
        keep = self.onchain.journal_retention_seconds
        while not self._stopping.is_set():
            await self.prune(time.time() - keep)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), min(PRUNE_EVERY, keep / 2))

    async def prune(self, cutoff: float) -> int:
        """Forget final deliveries older than ``cutoff`` (journal and handled set) that the
        scheduler can no longer ask about, so months of deliveries cost no memory or time."""
        total = 0
        while True:
            pairs = await self.journal.prune(cutoff, PRUNE_BATCH)
            self._handled.difference_update(pairs)
            total += len(pairs)
            if len(pairs) < PRUNE_BATCH:
                break
        if total:
            log.info("chain_journal_pruned", deliveries=total, handled=len(self._handled))
        return total

    # --- delivery ------------------------------------------------------------------------

    async def _deliver_onchain(self, sub_id: int, interval: int) -> None:
        assert self.key is not None
        sub = self._subs.get(sub_id)
        if sub is None:
            return

        def call(inp: bytes, out: bytes, proof: bytes) -> bytes:
            return abi.DELIVER_COMPUTE.encode_call(
                sub_id, interval, inp, out, proof, self.node_wallet
            )

        async def inputs() -> str:
            assert self.key is not None and self.head_time is not None and self.sender
            try:
                (raw,) = await self.sender.view(
                    sub.owner,
                    abi.GET_CONTAINER_INPUTS,
                    sub_id,
                    interval,
                    self.head_time,
                    self.key.address,
                )
            except Reverted:
                return ""
            return bytes(raw).hex()

        await self._deliver(
            f"s:{sub_id}", interval, sub, self._chains[sub_id], call, inputs, ONCHAIN
        )

    async def _deliver_delegated(self, d: _Delegated, interval: int) -> None:
        def call(inp: bytes, out: bytes, proof: bytes) -> bytes:
            return abi.DELIVER_COMPUTE_DELEGATEE.encode_call(
                d.nonce,
                d.expiry,
                d.sub.to_tuple(),
                d.v,
                d.r.to_bytes(32, "big"),
                d.s.to_bytes(32, "big"),
                interval,
                inp,
                out,
                proof,
                self.node_wallet,
            )

        async def inputs() -> Any:
            return d.data

        await self._deliver(d.key, interval, d.sub, d.containers, call, inputs, OFFCHAIN)

    async def _deliver(
        self,
        key: str,
        interval: int,
        sub: Subscription,
        containers: tuple[str, ...],
        call: Callable[[bytes, bytes, bytes], bytes],
        inputs: Callable[[], Awaitable[Any]],
        source: int,
    ) -> None:
        """Check payment → simulate → compute → encode → simulate again → journal → send."""
        assert self.sender is not None and self.coordinator is not None
        allowed = self.chain.wallet.allowed_sim_errors if self.chain.wallet else ()
        await self.sender.budget.turn()  # a burst starts hundreds at once: share the loop
        refusal = await self._check_payment((key, interval), sub)
        if refusal is not None:
            await self._payment_refused(key, interval, refusal)
            return
        if not sub.requires_proof:
            try:
                await self.sender.precheck(self.coordinator, call(b"", b"\x00" * 32, b""))
            except Reverted as exc:
                if exc.name is not None:
                    await self._known_revert(key, interval, exc.name)
                    return
            except GasTooHigh:
                pass  # decided on the real output below
        data = await inputs()
        async with self._slots:  # only computing is limited: the chain side is batched
            outcome = await self.runner.run(
                containers,
                data,
                source=source,
                destination=ONCHAIN,
                requires_proof=sub.requires_proof,
            )
        if not outcome.ok or not outcome.results:
            errors = [r.error for r in outcome.results if r.error]
            await self._failed(key, interval, f"container error: {errors[-1] if errors else ''}")
            return
        try:
            encoded = encode_output(outcome.results[-1].output)
        except OutputError as exc:
            await self._failed(key, interval, str(exc))
            return
        if sub.requires_proof and not encoded.proof:
            await self._failed(key, interval, "container returned no proof")
            return
        tx_data = call(encoded.input, encoded.output, encoded.proof)
        try:
            gas = await self.sender.estimate(self.coordinator, tx_data, allowed)
        except Reverted as exc:
            if exc.name is not None:
                await self._known_revert(key, interval, exc.name)
            else:
                await self._failed(key, interval, f"simulation reverted: {exc}")
            return
        except GasTooHigh as exc:
            await self._failed(key, interval, str(exc))
            return
        if (key, interval) in self._handled:
            return
        if sub.requires_proof:  # journaled first: the stake it locks is followed until settled
            await self.proofs.record((key, interval), sub, self.head or 0)
        await self.sender.send(key, interval, self.coordinator, tx_data, gas)
        self._handled.add((key, interval))

    async def _known_revert(self, key: str, interval: int, name: str) -> None:
        """A decoded custom error ends the attempt without a transaction."""
        await self.journal.mark(key, interval, jr.SKIPPED, name)
        self._handled.add((key, interval))
        self._delivery_ended(key, interval, jr.SKIPPED)
        log.info("delivery_skipped", sub=key, interval=interval, reason=name)
        if key.startswith("s:") and (name in TERMINAL or name == "SubscriptionNotActive"):
            await self._refresh(int(key[2:]))
        elif key.startswith("d:") and name in TERMINAL:
            await self._drop_delegated(key, f"rejected: {name}")
        if key.startswith("d:") and name in BENIGN:
            await self._resolve_delegated(key, interval, jr.SKIPPED)

    async def _check_payment(self, job: tuple[str, int], sub: Subscription) -> Refusal | None:
        """The wallets can pay (and stake) for this delivery; reserves the stake if so."""
        if not sub.pays:
            return None
        token = sub.payment_token.lower()
        reserved = self.payments.reserved(
            token, lambda other: other != job and other in self._inflight
        )
        refusal = await self.payments.check(sub, reserved + self.proofs.pending_stake(token))
        if refusal is None:
            self.payments.reserve(job, sub)
            if self._waiting.pop(job, None) is not None:
                self.payments.refusal_cleared(job)
        return refusal

    async def _payment_refused(
        self, key: str, interval: int, refusal: Refusal, *, final: bool = False
    ) -> None:
        """No computation, no transaction: the interval is skipped with its reason, unless the
        reason may pass (``transient``, not ``final``): then it is checked again later."""
        job = (key, interval)
        if refusal.transient and not final and self._wait_for_funds(job, refusal):
            return
        self._waiting.pop(job, None)
        await self.journal.mark(key, interval, jr.SKIPPED, f"Invalid payment: {refusal.message}")
        # counted once journaled: what /info shows as refused can be read back as skipped
        self.payments.note_refusal(job, refusal)
        self._handled.add((key, interval))
        self._delivery_ended(key, interval, jr.SKIPPED)
        if key.startswith("d:"):
            await self._drop_delegated(key, f"rejected: Invalid payment ({refusal.code})")

    def _wait_for_funds(self, job: tuple[str, int], refusal: Refusal) -> bool:
        """Check ``job`` again later; False when MAX_WAITING others already wait."""
        waiting = self._waiting.get(job)
        if waiting is None:
            if len(self._waiting) >= MAX_WAITING:
                log.warning("payment_wait_full", sub=job[0], interval=job[1], waiting=MAX_WAITING)
                return False
            waiting = _Waiting(refusal, self.head, backoff_delays(RETRY_FIRST_S, RETRY_MAX_S))
            self._waiting[job] = waiting
        else:
            waiting.refusal, waiting.block = refusal, None
        waiting.next_at = time.monotonic() + waiting.delay()
        self.payments.note_refusal(job, refusal, retrying=True)
        return True

    async def _failed(self, key: str, interval: int, reason: str) -> None:
        attempts = await self.journal.mark(key, interval, jr.FAILED, reason)
        last = attempts >= self.onchain.max_attempts
        if last:
            self._handled.add((key, interval))
        self._delivery_ended(key, interval, jr.FAILED, final=last)
        log.warning("delivery_failed", sub=key, interval=interval, attempts=attempts, reason=reason)

    def _delivery_ended(
        self, key: str, interval: int, state: str, mined: int | None = None, *, final: bool = True
    ) -> None:
        """Report an attempt's end; a confirmed one with its latency in blocks."""
        job = (key, interval)
        opened = self._opened.pop(job, None) if final else self._opened.get(job)
        blocks = None
        if state == jr.CONFIRMED and mined is not None and opened is not None:
            blocks = max(mined - opened, 0)
        self._recorder.delivery_finished(state, blocks)
        if state == jr.CONFIRMED:  # a paid one: the Coordinator took its payment
            d = self._delegated.get(key)
            sub = self._subs.get(int(key[2:])) if key.startswith("s:") else d and d.sub
            if sub and sub.pays:
                self._recorder.payment_delivered(sub.payment_token, sub.payment_amount)

    async def _refresh(self, sub_id: int) -> None:
        assert self.coordinator is not None
        (raw,) = await self.rpc.eth_call(self.coordinator, abi.GET_SUBSCRIPTION, sub_id)
        sub = Subscription.from_tuple(raw)
        if not sub.exists or sub.cancelled:
            await self._untrack(sub_id, "cancelled" if sub.exists else "not found")

    async def _resolve_delegated(self, key: str, interval: int, state: str) -> None:
        """Once a delegated subscription exists on-chain, track it as a normal one."""
        d = self._delegated.get(key)
        if d is None or self.coordinator is None:
            return
        (sub_id,) = await self.rpc.eth_call(
            self.coordinator, abi.DELEGATE_CREATED_IDS, abi.delegate_key(d.owner, d.nonce)
        )
        sub_id = int(sub_id)
        if sub_id == 0:
            return
        if state == jr.CONFIRMED:
            await self.journal.mark(f"s:{sub_id}", interval, jr.CONFIRMED)
            self._handled.add((f"s:{sub_id}", interval))
        (raw,) = await self.rpc.eth_call(self.coordinator, abi.GET_SUBSCRIPTION, sub_id)
        sub = Subscription.from_tuple(raw)
        await self.journal.save_subscriptions([(sub_id, sub.to_json(), d.containers)])
        self._subs[sub_id] = sub
        self._chains[sub_id] = d.containers
        await self.journal.set_delegated_state(d.owner, d.nonce, "created", sub_id)
        self._delegated.pop(key, None)
        log.info("delegated_subscription_created", owner=d.owner, nonce=d.nonce, id=sub_id)

    async def _drop_delegated(self, key: str, state: str) -> None:
        d = self._delegated.pop(key, None)
        if d is not None:
            await self.journal.set_delegated_state(d.owner, d.nonce, state)

    # --- delegated subscriptions (REST) --------------------------------------------------

    async def accept_delegated(self, body: Mapping[str, Any], client_ip: str) -> None:
        """Validate a delegated subscription completely, persist it, schedule it.

        Raises BadRequest (shape), GuardianRejection (expired, unknown containers, bad
        signature, signer mismatch, payments), AccessDenied (owner not allowed),
        ChainUnavailable (RPC down) — all before the caller gets its reply.
        """
        if not self._ready.is_set() or self.coordinator is None or self.chain_id is None:
            raise ChainUnavailable("Chain not ready", {"reason": "still connecting to the RPC"})
        d = _parse_delegated(body, ())
        _, now, _ = await self.rpc.head()
        if d.expiry <= now:
            raise GuardianRejection("Signature expired", {"expiry": d.expiry, "chain_time": now})
        chain, rejection = check_subscription(
            d.sub,
            self.lookup,
            self.containers,
            delegated=True,
            payment_address=self.payments.payment_address,
        )
        if rejection is not None:
            raise _as_error(rejection)
        d.containers = chain
        message = eip712.digest(
            d.sub,
            nonce=d.nonce,
            expiry=d.expiry,
            chain_id=self.chain_id,
            coordinator=self.coordinator,
        )
        try:
            signer = eip712.recover_signer(message, d.v, d.r, d.s)
        except eip712.InvalidSignature as exc:
            raise GuardianRejection("Invalid signature", {"reason": str(exc)}) from None
        try:
            (expected,) = await self.rpc.eth_call(d.sub.owner, abi.GET_SIGNER)
        except Reverted:
            raise GuardianRejection(
                "Signer mismatch", {"signer": signer, "reason": "owner has no getSigner()"}
            ) from None
        if to_checksum_address(expected) != signer:
            raise GuardianRejection(
                "Signer mismatch", {"signer": signer, "expected": to_checksum_address(expected)}
            )
        refusal = await self.payments.check(d.sub)
        if refusal is not None:
            raise GuardianRejection(
                "Invalid payment", {"code": refusal.code, "reason": refusal.message}
            )
        if d.key in self._delegated:
            return
        if len(self._delegated) >= self.onchain.max_delegated:
            raise Overloaded("Too many pending delegated subscriptions")
        stored = dict(body)
        stored["subscription"] = dict(body["subscription"])
        if not await self.journal.add_delegated(d.owner, d.nonce, stored, chain):
            return  # (owner, nonce) seen before: pending, delivered or created on-chain
        self._delegated[d.key] = d
        log.info(
            "delegated_subscription_accepted",
            owner=d.owner,
            nonce=d.nonce,
            containers=",".join(chain),
            client=client_ip,
        )
        self._wake.set()


def _key(owner: str, nonce: int) -> str:
    return f"d:{owner.lower()}:{nonce}"


def _as_error(rejection: Rejection) -> GuardianRejection:
    cls = AccessDenied if rejection.access else GuardianRejection
    return cls(rejection.error, rejection.params)


_SUB_INTS = {
    "active_at": 2**32,
    "period": 2**32,
    "frequency": 2**32,
    "redundancy": 2**16,
    "payment_amount": 2**256,
}
_SIG_INTS = {"nonce": 2**32, "expiry": 2**32, "v": 256, "r": 2**256, "s": 2**256}


def _parse_delegated(body: Mapping[str, Any], containers: tuple[str, ...]) -> _Delegated:
    """Shape check of infernet-client's body; BadRequest names the offending field."""
    if not isinstance(body, Mapping):
        raise BadRequest("Invalid delegated subscription", {"field": ""})
    sub_raw, sig_raw = body.get("subscription"), body.get("signature")
    if not isinstance(sub_raw, Mapping):
        raise BadRequest("Invalid delegated subscription", {"field": "subscription"})
    if not isinstance(sig_raw, Mapping):
        raise BadRequest("Invalid delegated subscription", {"field": "signature"})
    ints: dict[str, int] = {}
    for source, spec, prefix in (
        (sub_raw, _SUB_INTS, "subscription"),
        (sig_raw, _SIG_INTS, "signature"),
    ):
        for name, limit in spec.items():
            value = source.get(name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < limit:
                raise BadRequest("Invalid delegated subscription", {"field": f"{prefix}.{name}"})
            ints[name] = value
    addresses: dict[str, str] = {}
    for name in ("owner", "verifier", "payment_token", "wallet"):
        value = sub_raw.get(name)
        if not isinstance(value, str) or not is_address(value):
            raise BadRequest("Invalid delegated subscription", {"field": f"subscription.{name}"})
        addresses[name] = to_checksum_address(value)
    lazy = sub_raw.get("lazy")
    if not isinstance(lazy, bool):
        raise BadRequest("Invalid delegated subscription", {"field": "subscription.lazy"})
    container_hex = sub_raw.get("containers")
    try:
        assert isinstance(container_hex, str)
        container_id = bytes.fromhex(container_hex.removeprefix("0x").removeprefix("0X"))
        assert len(container_id) == 32
    except (AssertionError, ValueError):
        raise BadRequest(
            "Invalid delegated subscription", {"field": "subscription.containers"}
        ) from None
    sub = Subscription(
        owner=addresses["owner"],
        active_at=ints["active_at"],
        period=ints["period"],
        frequency=ints["frequency"],
        redundancy=ints["redundancy"],
        container_id=container_id,
        lazy=lazy,
        verifier=addresses["verifier"],
        payment_amount=ints["payment_amount"],
        payment_token=addresses["payment_token"],
        wallet=addresses["wallet"],
    )
    return _Delegated(
        owner=sub.owner,
        nonce=ints["nonce"],
        expiry=ints["expiry"],
        v=ints["v"],
        r=ints["r"],
        s=ints["s"],
        sub=sub,
        data=body.get("data"),
        containers=containers,
    )
