"""JSON-RPC access over several endpoints: per-call timeout, retry with backoff, failover.

A revert is an answer (raised at once as :class:`Reverted`); everything else that goes wrong
on the way (timeout, 429, refused connection, a restarted node, a 5xx) is retried on the next
endpoint with exponential backoff, and only after every attempt failed does a call raise
:class:`ChainUnavailable` — which the service's loops catch, log and outlive.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

import aiohttp
import structlog
from web3 import AsyncWeb3
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError
from web3.types import RPCEndpoint, RPCResponse

from node_agent.chain.abi import Function
from node_agent.chain.errors import ChainUnavailable, Reverted
from node_agent.chain.transport import OwnSessionHTTPProvider, web3_client
from node_agent.recorder import NO_RECORDER, Recorder

log = structlog.get_logger(__name__)
T = TypeVar("T")

# JSON-RPC errors that are answers about the request, not about the endpoint's health.
_REQUEST_ERRORS = (
    "nonce too low",
    "already known",
    "replacement transaction underpriced",
    "insufficient funds",
    "nonce too high",
    "exceeds block gas limit",
)


class RequestRejected(Exception):
    """The node understood the request and refused it (e.g. ``nonce too low``)."""


class MethodUnsupported(RequestRejected):
    """The endpoint does not offer this JSON-RPC method (e.g. ``eth_simulateV1``)."""


_UNSUPPORTED = ("method not found", "not supported", "unsupported", "does not exist")


class Rpc:
    """AsyncWeb3 clients for each URL, used in turn."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout: float = 10.0,
        attempts: int = 5,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        recorder: Recorder = NO_RECORDER,
    ) -> None:
        if not urls:
            raise ValueError("at least one RPC URL is needed")
        self.urls = tuple(urls)
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._clients = [web3_client(url, timeout=timeout, recorder=recorder) for url in self.urls]
        self._preferred = 0
        self.calls = 0
        self.failures = 0
        self.last_error: str | None = None
        self.block_gas_limit = 30_000_000  # of the latest head read (Ethereum's, until then)

    async def close(self) -> None:
        for client in self._clients:
            try:
                await client.provider.disconnect()
            except Exception as exc:  # closing must not fail shutdown
                log.debug("rpc_close_failed", error=str(exc))

    async def call(self, op: Callable[[AsyncWeb3[Any]], Awaitable[T]], *, what: str) -> T:
        """Run ``op`` against an endpoint, failing over and backing off on transport errors."""
        delay = self.backoff
        for attempt in range(self.attempts):
            index = (self._preferred + attempt) % len(self._clients)
            self.calls += 1
            try:
                async with asyncio.timeout(self.timeout):
                    result = await op(self._clients[index])
                self._preferred = index
                return result
            except ContractLogicError as exc:
                raise Reverted(exc.data if isinstance(exc.data, str) else None, str(exc)) from None
            except (TransactionNotFound, RequestRejected):
                raise
            except Web3RPCError as exc:
                message = str(exc)
                if "revert" in message.lower():
                    raise Reverted(_revert_data(exc), message) from None
                if any(text in message.lower() for text in _REQUEST_ERRORS):
                    raise RequestRejected(message) from None
                self._note_failure(what, index, message)
            except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
                self._note_failure(what, index, f"{type(exc).__name__}: {exc}")
            except Exception as exc:  # unknown provider errors are treated as transient
                self._note_failure(what, index, f"{type(exc).__name__}: {exc}")
            if attempt + 1 < self.attempts:
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
                delay = min(delay * 2, self.max_backoff)
        raise ChainUnavailable("Chain RPC unavailable", {"call": what, "error": self.last_error})

    def calls_by_method(self) -> dict[str, int]:
        """JSON-RPC calls sent so far, by method, over every endpoint (retries included; a
        call inside a JSON-RPC batch counts as one call of its method)."""
        total: dict[str, int] = {}
        for client in self._clients:
            provider = client.provider
            if isinstance(provider, OwnSessionHTTPProvider):
                for method, count in provider.requests.items():
                    total[method] = total.get(method, 0) + count
        return total

    async def request(self, method: str, params: list[Any], *, refusals_final: bool = False) -> Any:
        """One raw JSON-RPC call: the decoded JSON ``result``, without web3's formatters (they
        cost more than the call itself for large answers). With ``refusals_final`` an error
        answer raises :class:`RequestRejected` at once instead of being retried elsewhere."""

        async def op(w3: AsyncWeb3[Any]) -> Any:
            response = await w3.provider.make_request(RPCEndpoint(method), params)
            return _result(response, refusals_final)

        return await self.call(op, what=method)

    async def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[RPCResponse]:
        """A JSON-RPC batch; each answer as it came (``result`` or ``error``), in order. The
        transport counts each call in it; only a failure of the whole batch is retried."""

        async def op(w3: AsyncWeb3[Any]) -> list[RPCResponse]:
            requests = [(RPCEndpoint(method), params) for method, params in calls]
            answers = await w3.provider.make_batch_request(requests)
            if not isinstance(answers, list):  # the batch itself was refused
                _result(answers, False)
                raise Web3RPCError("batch refused", rpc_response=answers)
            return answers

        return await self.call(op, what="batch")

    def _note_failure(self, what: str, index: int, message: str) -> None:
        self.failures += 1
        self.last_error = message[:300]
        self._preferred = (index + 1) % len(self._clients)
        log.warning("rpc_call_failed", call=what, endpoint=index, error=self.last_error)

    # --- typed helpers ---------------------------------------------------------------------

    async def eth_call(
        self,
        to: str,
        fn: Function,
        *args: Any,
        block: int | str = "latest",
        sender: str | None = None,
    ) -> tuple[Any, ...]:
        data = fn.encode_call(*args)
        params: dict[str, Any] = {"to": to, "data": data}
        if sender is not None:
            params["from"] = sender
        raw = await self.call(
            lambda w3: w3.eth.call(cast(Any, params), block_identifier=cast(Any, block)),
            what=fn.name,
        )
        return fn.decode_result(bytes(raw)) if fn.outputs else ()

    async def head(self) -> tuple[int, int, int]:
        """(block number, timestamp, base fee) of the latest block (its gas limit is kept in
        :attr:`block_gas_limit`)."""
        block = await self.call(lambda w3: w3.eth.get_block("latest"), what="get_block")
        self.block_gas_limit = int(block.get("gasLimit") or self.block_gas_limit)
        return int(block["number"]), int(block["timestamp"]), int(block.get("baseFeePerGas", 0))

    async def block_number(self) -> int:
        return int(await self.call(lambda w3: w3.eth.block_number, what="block_number"))

    async def chain_id(self) -> int:
        return int(await self.call(lambda w3: w3.eth.chain_id, what="chain_id"))

    async def nonce(self, address: str, block: str = "pending") -> int:
        return int(
            await self.call(
                lambda w3: w3.eth.get_transaction_count(cast(Any, address), cast(Any, block)),
                what="get_transaction_count",
            )
        )

    async def estimate_gas(self, tx: dict[str, Any]) -> int:
        return int(await self.call(lambda w3: w3.eth.estimate_gas(cast(Any, tx)), what="estimate"))

    async def send_raw(self, raw: bytes) -> None:
        await self.call(lambda w3: w3.eth.send_raw_transaction(raw), what="send_raw_transaction")

    async def receipt(self, tx_hash: str) -> dict[str, Any] | None:
        try:
            receipt = await self.call(
                lambda w3: w3.eth.get_transaction_receipt(cast(Any, tx_hash)), what="receipt"
            )
        except TransactionNotFound:
            return None
        return dict(receipt)


def _result(response: RPCResponse, refusals_final: bool) -> Any:
    """The ``result`` of a raw answer; an ``error`` raised the way :meth:`Rpc.call` sorts
    them (a revert, a refusal of the request, or trouble with the endpoint)."""
    error = response.get("error")
    if error is None:
        return response.get("result")
    message = str(error.get("message", error)) if isinstance(error, dict) else str(error)
    code = error.get("code") if isinstance(error, dict) else None
    lowered = message.lower()
    if code == -32601 or ("method" in lowered and any(text in lowered for text in _UNSUPPORTED)):
        raise MethodUnsupported(message)
    if refusals_final:
        raise RequestRejected(message)
    raise Web3RPCError(message, rpc_response=response)


def _revert_data(exc: Web3RPCError) -> str | None:
    response = getattr(exc, "rpc_response", None)
    if isinstance(response, dict):
        error = response.get("error")
        if isinstance(error, dict) and isinstance(error.get("data"), str):
            return str(error["data"])
    return None


def backoff_delays(
    initial: float = 0.5, maximum: float = 30.0, factor: float = 2.0
) -> Callable[[], float]:
    """A stateful backoff: each call returns the next (jittered) delay."""
    state = {"delay": initial}

    def next_delay() -> float:
        delay = state["delay"]
        state["delay"] = min(delay * factor, maximum)
        return delay * (0.5 + random.random() / 2)

    return next_delay
