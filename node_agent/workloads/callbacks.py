"""Delivers the outbox: callbacks to the job's ``callback_url`` and status reports to the
orchestrator, at least once, with backoff and a bounded number of attempts.

Rows are written in the same transaction as the status change they report, so a restart
resends what was not acknowledged. Delivery never blocks a job: it is its own owned task, woken
when a row is written, and the token is only ever put in a header (never logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import aiohttp
import structlog

from node_agent import __version__
from node_agent.grid.backoff import Backoff, parse_retry_after
from node_agent.workloads.config import CallbackSettings
from node_agent.workloads.destinations import BlockedDestination, check_host
from node_agent.workloads.store import OutboxItem, WorkloadStore

log = structlog.get_logger(__name__)

CALLBACK_VERSION = "1"
# 4xx answers that may succeed later; any other 4xx is final (a wrong token will stay wrong).
RETRYABLE_4XX = frozenset({408, 409, 425, 429})
IDLE_RECHECK = 30.0


class DeliveryFailed(Exception):
    def __init__(self, reason: str, *, final: bool, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.final = final
        self.retry_after = retry_after


Sender = Callable[[OutboxItem], Awaitable[None]]


def callback_headers(item: OutboxItem, now: float) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"node-agent/{__version__}",
        "X-JungleGrid-Callback-Version": CALLBACK_VERSION,
        "X-JungleGrid-Callback-Timestamp": str(int(now)),
        "X-JungleGrid-Job-ID": str(item.body.get("job_id", item.job_id)),
        "X-JungleGrid-Job-Status": item.status,
        # Receivers dedupe on this: delivery is at least once.
        "X-JungleGrid-Delivery-ID": f"{item.job_id}:{item.id}",
    }
    if item.callback_token:
        headers["Authorization"] = f"Bearer {item.callback_token}"
    return headers


class OutboxDeliverer:
    def __init__(
        self,
        store: WorkloadStore,
        settings: CallbackSettings,
        *,
        session: aiohttp.ClientSession,
        grid_sender: Sender | None = None,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.settings = settings
        self._session = session
        self.grid_sender = grid_sender
        self._clock = clock
        self._rand = rand
        self._wake = asyncio.Event()
        self._inflight: set[int] = set()
        self.delivered = 0
        self.failed = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Owned by the daemon; one pass, then sleep until woken or the next row is due."""
        while True:
            self._wake.clear()
            try:
                items = await self.store.due(self._clock(), self.settings.concurrency)
                items = [i for i in items if i.id not in self._inflight]
                if items:
                    await asyncio.gather(*(self._deliver(i) for i in items))
                    continue
                next_at = await self.store.next_due_at()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox_pass_failed")
                next_at = self._clock() + 5.0
            delay = IDLE_RECHECK if next_at is None else max(0.0, next_at - self._clock())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(delay, IDLE_RECHECK))

    async def _deliver(self, item: OutboxItem) -> None:
        self._inflight.add(item.id)
        try:
            if item.kind == "callback":
                await self._post_callback(item)
            elif self.grid_sender is not None:
                await self.grid_sender(item)
            else:
                await self.store.outbox_done(item.id, "dropped", "no orchestrator connection")
                return
        except DeliveryFailed as exc:
            await self._failed(item, str(exc), final=exc.final, retry_after=exc.retry_after)
        except Exception as exc:  # a bug must not stop the outbox
            log.exception("outbox_delivery_crashed", job_id=item.job_id, kind=item.kind)
            await self._failed(item, type(exc).__name__, final=False, retry_after=None)
        else:
            self.delivered += 1
            await self.store.outbox_done(item.id, "delivered")
            log.info(
                "outbox_delivered",
                kind=item.kind,
                job_id=item.job_id,
                status=item.status,
                attempts=item.attempts + 1,
            )
        finally:
            self._inflight.discard(item.id)

    async def _failed(
        self, item: OutboxItem, reason: str, *, final: bool, retry_after: float | None
    ) -> None:
        attempts = item.attempts + 1
        if final or attempts >= self.settings.max_attempts:
            self.failed += 1
            await self.store.outbox_done(item.id, "failed", reason)
            log.warning(
                "outbox_gave_up",
                kind=item.kind,
                job_id=item.job_id,
                attempts=attempts,
                error=reason,
            )
            return
        backoff = Backoff(
            self.settings.backoff_initial, self.settings.backoff_max, self._rand, attempts - 1
        )
        # A receiver's Retry-After is honoured up to an hour (never a row parked for days).
        delay = max(min(retry_after or 0.0, 3600.0), backoff.next_delay())
        await self.store.outbox_retry(item.id, self._clock() + delay, reason)
        log.info(
            "outbox_retry",
            kind=item.kind,
            job_id=item.job_id,
            attempts=attempts,
            retry_in=round(delay, 2),
            error=reason,
        )

    async def _post_callback(self, item: OutboxItem) -> None:
        url = item.body.get("callback_url")
        if not isinstance(url, str):
            raise DeliveryFailed("job has no callback_url", final=True)
        try:  # a name is checked by the session's resolver; a literal IP here
            check_host(urlsplit(url).hostname or "", self.settings.blocked)
        except BlockedDestination as exc:
            raise DeliveryFailed(str(exc), final=True) from None
        await post_json(
            self._session,
            url,
            item.body,
            callback_headers(item, self._clock()),
            timeout=self.settings.timeout,
        )


async def post_json(
    session: aiohttp.ClientSession,
    url: str,
    body: object,
    headers: dict[str, str],
    *,
    timeout: float,
) -> None:
    """POST and classify the answer; raises DeliveryFailed. Redirects are not followed (a
    callback must reach the URL the client gave, with its token, or fail)."""
    try:
        async with session.post(
            url,
            json=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,
        ) as response:
            await response.read()
            if 200 <= response.status < 300:
                return
            retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())
            final = 400 <= response.status < 500 and response.status not in RETRYABLE_4XX
            raise DeliveryFailed(
                f"receiver answered HTTP {response.status}",
                final=final or 300 <= response.status < 400,
                retry_after=retry_after,
            )
    except aiohttp.ClientConnectorError as exc:
        if isinstance(exc.os_error, BlockedDestination):  # will not change by retrying
            raise DeliveryFailed(str(exc.os_error), final=True) from None
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}"[:200], final=False) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}"[:200], final=False) from None
