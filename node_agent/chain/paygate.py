"""The payment gate: reads what a paid delivery depends on and applies the node's rules
(:mod:`node_agent.chain.payments`) before anything is computed or sent.

The reads of one check go out as one JSON-RPC batch (one round trip, one call in the RPC count):
the consumer's Wallet (unlocked funds, the owner's allowance), the node's Wallet (the same for
the node key, with a verifier), the verifier's token and fee and the protocol FEE. They are read
at every check, never cached: owners withdraw, FEE and verifier fees change at any time. What
cannot change is cached: a Wallet the factory made stays valid. A refused delivery is logged
and kept in a bounded list that ``/info`` shows; no transaction is sent for it. A transient
refusal is checked again later by the service: its entry follows it, logged once per change.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog
from eth_utils.address import to_checksum_address

from node_agent.chain import abi
from node_agent.chain.abi import Function
from node_agent.chain.payments import Refusal, Settlement, WalletView, funds_refusal
from node_agent.chain.rpc import Rpc
from node_agent.chain.simulate import hex_bytes
from node_agent.chain.subscription import Subscription
from node_agent.recorder import NO_RECORDER, Recorder

log = structlog.get_logger(__name__)

RECENT_KEPT = 50  # refusals shown in /info
# The node Wallet's balances and the key's gas, for /info and the status page. Deliveries never
# use these (they read fresh values): this is a provider's view, so every 30 s is plenty.
BALANCES_EVERY_S = 30.0
VALID_CACHE = 10_000  # factory wallets remembered as valid

Job = tuple[str, int]
Call = tuple[str, Function, tuple[Any, ...]]
# Reads the calls as read_batch does (None where one reverted or does not decode).
Reader = Callable[[Sequence[Call]], Awaitable[list[tuple[Any, ...] | None]]]


async def read_batch(rpc: Rpc, calls: Sequence[Call]) -> list[tuple[Any, ...] | None]:
    """``eth_call`` each of ``calls`` at the latest block in one batch; None where one reverted
    or answered something that does not decode (a hostile or absent contract).

    Raw JSON-RPC (each answer stands alone, a revert included): web3's batch formatting cost
    ~3 ms of event loop per check, which a burst of paid deliveries pays hundreds of times.
    """
    if not calls:
        return []
    answers = await rpc.batch(
        [
            ("eth_call", [{"to": to, "data": "0x" + fn.encode_call(*args).hex()}, "latest"])
            for to, fn, args in calls
        ]
    )
    out: list[tuple[Any, ...] | None] = []
    for (_, fn, _), answer in zip(calls, answers, strict=True):
        raw = hex_bytes(answer.get("result"))  # a hostile endpoint's junk reads as empty
        out.append(None if "error" in answer else _decode(fn, raw))
    return out


def _decode(fn: Function, raw: Any) -> tuple[Any, ...] | None:
    if not isinstance(raw, bytes | bytearray):
        return None
    try:
        return fn.decode_result(bytes(raw))
    except Exception:
        return None


class PaymentGate:
    """Admission of paid deliveries for one node key and one payment Wallet."""

    def __init__(self, payment_address: str | None, recorder: Recorder = NO_RECORDER) -> None:
        self._recorder = recorder  # counts refusals as ``refused`` does
        self.payment_address = to_checksum_address(payment_address) if payment_address else None
        self.rpc: Rpc | None = None
        self.node: str | None = None
        self.fee_contract: str | None = None
        self.wallet_factory: str | None = None
        self.node_wallet_valid: bool | None = None
        self._valid: set[str] = set()
        self._asking: dict[str, asyncio.Future[bool]] = {}
        # The service's batched reader (the sender's: one eth_simulateV1 for many deliveries'
        # reads); read_batch over the RPC until it is set.
        self.reader: Reader | None = None
        self._reservations: dict[Job, tuple[str, int]] = {}
        self._recent: deque[dict[str, Any]] = deque(maxlen=RECENT_KEPT)
        # The /info entry of each job waiting on a transient refusal, updated in place by its
        # later checks (as many as the service keeps waiting: it ends each wait here).
        self._waiting: dict[Job, dict[str, Any]] = {}
        self.refused = 0
        self.balances: dict[str, Any] | None = None

    async def connect(self, rpc: Rpc, registry: str, node: str) -> None:
        """Find Fee and WalletFactory through the Registry; check the node's own Wallet."""
        self.rpc, self.node = rpc, node
        (fee,) = await rpc.eth_call(registry, abi.REGISTRY_FEE)
        (factory,) = await rpc.eth_call(registry, abi.REGISTRY_WALLET_FACTORY)
        self.fee_contract = to_checksum_address(fee)
        self.wallet_factory = to_checksum_address(factory)
        if self.payment_address is not None:
            self.node_wallet_valid = await self.is_valid_wallet(self.payment_address)
            if not self.node_wallet_valid:
                log.error(
                    "payment_address_invalid",
                    payment_address=self.payment_address,
                    wallet_factory=self.wallet_factory,
                    reason="not a Wallet from this Coordinator's WalletFactory: paid "
                    "subscriptions are refused (node-agent wallet create makes one)",
                )

    async def watch_balances(self, tokens: Sequence[str]) -> None:
        """Re-read the balances every BALANCES_EVERY_S; a failed read keeps the last one (its
        ``read_at`` says how old it is) and is logged, the loop goes on."""
        while True:
            try:
                await self.refresh_balances(tokens)
            except Exception as exc:
                log.warning("wallet_balances_unread", error=f"{type(exc).__name__}: {exc}"[:300])
            await asyncio.sleep(BALANCES_EVERY_S)

    async def refresh_balances(self, tokens: Sequence[str]) -> None:
        """The key's ETH for gas, and the payment Wallet's unlocked and locked funds per token
        (ETH and every accepted token). Wei as strings: a browser's numbers lose them."""
        assert self.rpc is not None and self.node is not None
        wallet = self.payment_address if self.node_wallet_valid else None
        calls: list[Call] = []
        if wallet is not None:
            for token in tokens:
                calls += [
                    (wallet, abi.UNLOCKED_BALANCE, (token,)),
                    (wallet, abi.LOCKED_BALANCE, (token,)),
                ]
        answers = await read_batch(self.rpc, calls)
        gas = int(await self.rpc.request("eth_getBalance", [self.node, "latest"]), 16)
        held: dict[str, dict[str, str | None]] = {}
        for index, token in enumerate(tokens if wallet is not None else ()):
            unlocked, locked = answers[2 * index], answers[2 * index + 1]
            held[token] = {
                "unlocked_wei": str(unlocked[0]) if unlocked else None,
                "locked_wei": str(locked[0]) if locked else None,
            }
        self.balances = {"read_at": round(time.time(), 3), "gas_wei": str(gas), "wallet": held}

    async def is_valid_wallet(self, wallet: str) -> bool:
        if wallet in self._valid:
            return True
        asking = self._asking.get(wallet)
        if asking is None:  # one question per wallet, however many deliveries wait on it
            asking = asyncio.ensure_future(self._ask_valid(wallet))
            self._asking[wallet] = asking
            asking.add_done_callback(lambda t: self._asked(wallet, t))
        return await asyncio.shield(asking)

    def _asked(self, wallet: str, task: asyncio.Future[bool]) -> None:
        self._asking.pop(wallet, None)
        if not task.cancelled():
            task.exception()  # retrieved here: every waiter may have gone (cancelled) already

    async def _ask_valid(self, wallet: str) -> bool:
        assert self.rpc is not None and self.wallet_factory is not None
        (valid,) = await self.rpc.eth_call(self.wallet_factory, abi.IS_VALID_WALLET, wallet)
        if valid:
            if len(self._valid) >= VALID_CACHE:
                self._valid.clear()
            self._valid.add(wallet)
        return bool(valid)

    def reserved(self, token: str, active: Callable[[Job], bool], pending: int = 0) -> int:
        """Stake promised in ``token`` to proof deliveries still in flight (``active``), plus
        ``pending`` (sent, not yet seen locked on-chain); finished reservations are dropped."""
        total = pending
        for job, (reserved_token, amount) in list(self._reservations.items()):
            if not active(job):
                del self._reservations[job]
            elif reserved_token == token:
                total += amount
        return total

    async def check(self, sub: Subscription, reserved: int = 0) -> Refusal | None:
        """The wallets' state against one delivery of ``sub`` (free subscriptions pass)."""
        if not sub.pays:
            return None
        assert self.rpc is not None and self.fee_contract is not None and self.node is not None
        if not await self.is_valid_wallet(sub.wallet):
            return funds_refusal(sub, _settlement(consumer_valid=False))
        token = sub.payment_token
        calls: list[Call] = [
            (sub.wallet, abi.UNLOCKED_BALANCE, (token,)),
            (sub.wallet, abi.WALLET_ALLOWANCE, (sub.owner, token)),
        ]
        node_wallet = self.payment_address
        if sub.requires_proof and node_wallet is not None and self.node_wallet_valid:
            calls += [
                (node_wallet, abi.UNLOCKED_BALANCE, (token,)),
                (node_wallet, abi.WALLET_ALLOWANCE, (self.node, token)),
                (sub.verifier, abi.VERIFIER_SUPPORTS, (token,)),
                (sub.verifier, abi.VERIFIER_FEE, (token,)),
                (self.fee_contract, abi.FEE_AND_RECIPIENT, ()),
            ]
        answers = await (self.reader(calls) if self.reader else read_batch(self.rpc, calls))
        values = [answer[0] if answer else None for answer in answers]
        values += [None] * (7 - len(values))  # without a verifier only the consumer is read
        view = Settlement(
            consumer=WalletView(True, _int(values[0]), _int(values[1])),
            node=WalletView(bool(self.node_wallet_valid), _int(values[2]), _int(values[3])),
            fee_bps=_int(values[6]),
            verifier_supported=values[4] is True,
            verifier_fee=_int(values[5]),
        )
        return funds_refusal(sub, view, reserved)

    def reserve(self, job: Job, sub: Subscription) -> None:
        """Promise ``sub``'s stake to ``job`` until it is sent (or abandoned)."""
        if sub.pays and sub.requires_proof:
            self._reservations[job] = (sub.payment_token.lower(), sub.payment_amount)

    def note_refusal(self, job: Job, refusal: Refusal, *, retrying: bool = False) -> None:
        """Count, show and log a refusal once per change of state: a job refused again with the
        same code while it waits (``retrying``: it will be checked again) only updates its
        entry's reason and check count, so hours of retries neither log nor count again."""
        now = round(time.time(), 3)
        entry = self._waiting.pop(job, None)
        if entry is not None and entry["code"] == refusal.code:
            entry.update(reason=refusal.message, checks=entry["checks"] + 1, retrying=retrying)
            entry["checked_at"] = now
            if retrying:
                self._waiting[job] = entry
                return
        else:
            if entry is not None:  # another reason now: that entry's wait is over
                entry["retrying"] = False
            self.refused += 1
            self._recorder.payment_refused(refusal.code)
            entry = {
                "subscription": job[0],
                "interval": job[1],
                "code": refusal.code,
                "reason": refusal.message,
                "retrying": retrying,
                "checks": 1,
                "at": now,
                "checked_at": now,
            }
            self._recent.append(entry)
            if retrying:
                self._waiting[job] = entry
        log.info(
            "payment_refused",
            sub=job[0],
            interval=job[1],
            code=refusal.code,
            reason=refusal.message,
            retrying=retrying,
            checks=entry["checks"],
        )

    def refusal_cleared(self, job: Job) -> None:
        """A job that waited on a transient refusal passed the check: its entry says so."""
        entry = self._waiting.pop(job, None)
        if entry is not None:
            entry.update(retrying=False, cleared_at=round(time.time(), 3))
            log.info(
                "payment_refusal_cleared",
                sub=job[0],
                interval=job[1],
                code=entry["code"],
                checks=entry["checks"],
            )

    def status(self) -> dict[str, Any]:
        return {
            "payment_address": self.payment_address,
            "payment_address_valid": self.node_wallet_valid,
            "wallet_factory": self.wallet_factory,
            "fee_contract": self.fee_contract,
            "refused": self.refused,
            "waiting": len(self._waiting),  # refused for now, checked again while due
            "recent_refusals": list(self._recent)[::-1],
            "balances": self.balances,
        }


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else 0


def _settlement(*, consumer_valid: bool) -> Settlement:
    empty = WalletView(consumer_valid, 0, 0)
    return Settlement(consumer=empty, node=empty, fee_bps=0)
