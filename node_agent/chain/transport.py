"""web3's HTTP provider with an aiohttp session of its own.

Why: web3's ``HTTPSessionManager`` guards its session cache with a *class-level*
``threading.Lock`` that each request takes through a thread pool. A request cancelled while it
waits for that lock (our per-call timeout, a shutdown) can leave the lock held for good, and
from then on every web3 HTTP request in the process waits forever: the node would stop talking
to the chain until restarted. It happened in CI (two contract deployments on fresh anvils never
got an answer after a daemon with an RPC call in flight had been stopped). This provider posts
through its own session and never takes that lock.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, cast

import aiohttp
from web3 import AsyncHTTPProvider, AsyncWeb3
from web3._utils.batching import sort_batch_response_by_response_ids
from web3.types import RPCEndpoint, RPCResponse

from node_agent.recorder import NO_RECORDER, Recorder


class OwnSessionHTTPProvider(AsyncHTTPProvider):
    """``AsyncHTTPProvider`` minus the shared session cache; no retries of its own (the
    caller decides: :class:`node_agent.chain.rpc.Rpc` retries and fails over)."""

    def __init__(
        self, endpoint_uri: str, *, timeout: float, recorder: Recorder = NO_RECORDER
    ) -> None:
        super().__init__(endpoint_uri, exception_retry_configuration=None)
        self._url = endpoint_uri
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._recorder = recorder
        # JSON-RPC calls sent, by method; each call inside a batch counts (what providers bill)
        self.requests: Counter[str] = Counter()

    async def _post(self, data: bytes, method: str) -> bytes:
        """One HTTP round trip; its latency is reported by JSON-RPC ``method`` (a timeout or
        a cancellation too: a slow endpoint must show in the histogram, not vanish from it)."""
        began = time.monotonic()
        try:
            return await self._round_trip(data)
        finally:
            self._recorder.rpc_called(method, time.monotonic() - began)

    async def _round_trip(self, data: bytes) -> bytes:
        session = self._session
        if session is None or session.closed:
            # Made on first use, inside the loop that uses it.
            session = self._session = aiohttp.ClientSession(
                headers=self.get_request_headers(), timeout=self._timeout, raise_for_status=True
            )
        async with session.post(self._url, data=data) as response:
            return await response.read()

    async def _make_request(self, method: RPCEndpoint, request_data: bytes) -> bytes:
        self.requests[str(method)] += 1
        return await self._post(request_data, str(method))

    async def make_batch_request(
        self, batch_requests: list[tuple[RPCEndpoint, Any]]
    ) -> list[RPCResponse] | RPCResponse:
        self.requests.update(str(method) for method, _ in batch_requests)
        raw = await self._post(self.encode_batch_rpc_request(batch_requests), "batch")
        response = self.decode_rpc_response(raw)
        if not isinstance(response, list):
            return response  # an error for the whole batch comes back as one object
        return cast(list[RPCResponse], sort_batch_response_by_response_ids(response))

    async def disconnect(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def web3_client(
    url: str, *, timeout: float = 30.0, recorder: Recorder = NO_RECORDER
) -> AsyncWeb3[Any]:
    """An ``AsyncWeb3`` over :class:`OwnSessionHTTPProvider`; close it with
    ``await client.provider.disconnect()``.

    Without web3's ``validation`` middleware: it asks the endpoint for ``eth_chainId`` before
    every ``eth_call`` and ``eth_estimateGas`` (uncached), to compare it with a chain id that
    the node's calls never carry: a second call for every call.
    """
    client = AsyncWeb3(OwnSessionHTTPProvider(url, timeout=timeout, recorder=recorder))
    client.middleware_onion.remove("validation")
    return client
