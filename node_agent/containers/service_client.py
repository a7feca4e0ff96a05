"""HTTP client for Infernet service containers (``POST /service_output``, §4).

Unlike the reference node, a reply only counts as output when it is a 2xx with a JSON body;
every failure becomes a :class:`ContainerError` whose text says what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from yarl import URL

from node_agent import jsonpolicy
from node_agent.containers.http1 import (
    DEFAULT_MAX_RESPONSE_BYTES,
    Http1ConnectTimeout,
    Http1Error,
    Http1Pool,
    Http1TooLarge,
    request_head,
)
from node_agent.errors import ContainerError, ContainerUnreachable, InvalidJson

_ERROR_BODY_PREVIEW = 300


def _preview(body: bytes) -> str:
    text = body[:_ERROR_BODY_PREVIEW].decode("utf-8", "replace")
    return text + ("…" if len(body) > _ERROR_BODY_PREVIEW else "")


CONNECT_TIMEOUT = 3.0


def _unreachable(cid: str, detail: str) -> ContainerUnreachable:
    return ContainerUnreachable(f"container {cid} is unreachable: {detail}")


def _no_answer(endpoint: ServiceEndpoint) -> ContainerError:
    return ContainerError(
        f"container {endpoint.container_id} did not answer within {endpoint.timeout:g} s"
    )


def _bad_status(cid: str, status: int, body: bytes) -> ContainerError:
    return ContainerError(f"container {cid} answered HTTP {status}: {_preview(body)}")


def _too_large(cid: str, limit: int) -> ContainerError:
    return ContainerError(f"container {cid} answered more than {limit} bytes")


def host_header(url: URL) -> str:
    """``Host`` for ``url``: IPv6 literals in brackets, without a zone (RFC 9110 §7.2)."""
    host = str(url.host)
    if ":" in host:
        host = f"[{host.partition('%')[0]}]"
    return f"{host}:{url.port}" if url.explicit_port else host


class ServiceEndpoint:
    """Where one container answers, and how to authenticate to it.

    URLs, headers and the timeout are built once here, not on every job.
    """

    __slots__ = (
        "call_timeout",
        "container_id",
        "direct_headers",
        "headers",
        "host_header",
        "output_url",
        "resources_url",
        "timeout",
    )

    def __init__(self, container_id: str, base_url: str, bearer: str | None, timeout: float):
        base = base_url.rstrip("/")
        self.container_id = container_id
        self.output_url = URL(f"{base}/service_output")
        self.resources_url = URL(f"{base}/service-resources")
        self.timeout = timeout
        # A container that vanished from its network does not refuse connections, it just
        # never answers: give up connecting quickly (the watcher recreates it meanwhile).
        self.call_timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=CONNECT_TIMEOUT)
        self.headers = {"Content-Type": "application/json"}
        if bearer:
            self.headers["Authorization"] = f"Bearer {bearer}"
        url = self.output_url
        self.host_header = host_header(url)
        # Plain-HTTP endpoints use the lightweight keep-alive client (``http1``).
        self.direct_headers = self.headers if url.scheme == "http" and url.host else None


class ServiceClient:
    """One keep-alive connection pool for every container call the node makes."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self._session = session
        self._pools: dict[tuple[str, int], Http1Pool] = {}
        # A service's answer is held in memory whole: one runaway reply must not exhaust it.
        self.max_response_bytes = max_response_bytes

    @staticmethod
    def make_session(pool_size: int = 1024) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=pool_size, limit_per_host=0, ttl_dns_cache=300)
        return aiohttp.ClientSession(
            connector=connector, json_serialize=lambda o: orjson.dumps(o).decode()
        )

    @contextlib.asynccontextmanager
    async def _post(
        self, endpoint: ServiceEndpoint, body: dict[str, Any], timeout: aiohttp.ClientTimeout
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST to ``/service_output``; transport failures become a :class:`ContainerError`
        that says what happened (the reference stored a timeout as an empty string)."""
        cid = endpoint.container_id
        try:
            async with self._session.post(
                endpoint.output_url,
                data=jsonpolicy.dumps(body),
                headers=endpoint.headers,
                timeout=timeout,
            ) as resp:
                if not 200 <= resp.status < 300:
                    preview = await resp.content.read(_ERROR_BODY_PREVIEW + 1)
                    raise _bad_status(cid, resp.status, preview)
                yield resp
        except aiohttp.ConnectionTimeoutError:
            raise _unreachable(cid, f"no connection within {CONNECT_TIMEOUT:g} s") from None
        except TimeoutError:
            raise _no_answer(endpoint) from None
        except aiohttp.ClientConnectorError as exc:
            raise _unreachable(cid, str(exc.os_error)) from None
        except aiohttp.ClientError as exc:
            raise ContainerError(
                f"container {cid} connection failed: {type(exc).__name__}: {exc}"
            ) from None

    async def call(self, endpoint: ServiceEndpoint, body: dict[str, Any]) -> Any:
        """POST the job to the container and return its JSON output (2xx + JSON only)."""
        if endpoint.direct_headers is not None:
            raw = await self._call_direct(endpoint, jsonpolicy.dumps(body))
        else:
            async with self._post(endpoint, body, endpoint.call_timeout) as r:
                raw = await self._read_capped(endpoint, r)
        try:
            # The node's JSON policy: an output it accepts, it can store, list and deliver.
            return jsonpolicy.loads(raw)
        except InvalidJson as exc:
            problem = (exc.params or {}).get("problem", "")
            raise ContainerError(
                f"container {endpoint.container_id} answered with a body that is not JSON "
                f"the node accepts ({problem}): {_preview(raw)}"
            ) from None

    async def _read_capped(self, endpoint: ServiceEndpoint, resp: aiohttp.ClientResponse) -> bytes:
        """The whole body, refused as soon as it passes ``max_response_bytes``."""
        limit = self.max_response_bytes
        if resp.content_length is not None and resp.content_length > limit:
            raise _too_large(endpoint.container_id, limit)
        parts: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_any():
            size += len(chunk)
            if size > limit:
                raise _too_large(endpoint.container_id, limit)
            parts.append(chunk)
        return b"".join(parts)

    def _pool(self, endpoint: ServiceEndpoint) -> Http1Pool:
        url = endpoint.output_url
        key = (str(url.host), url.port or 80)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = Http1Pool(
                key[0],
                key[1],
                connect_timeout=CONNECT_TIMEOUT,
                max_response_bytes=self.max_response_bytes,
            )
        return pool

    async def _call_direct(self, endpoint: ServiceEndpoint, payload: bytes) -> bytes:
        cid = endpoint.container_id
        headers = endpoint.direct_headers or {}
        head = request_head(
            endpoint.output_url.raw_path, endpoint.host_header, len(payload), headers
        )
        try:
            response = await self._pool(endpoint).post(head, payload, timeout=endpoint.timeout)
        except Http1ConnectTimeout:
            raise _unreachable(cid, f"no connection within {CONNECT_TIMEOUT:g} s") from None
        except TimeoutError:
            raise _no_answer(endpoint) from None
        except Http1TooLarge as exc:
            raise _too_large(cid, exc.limit) from None
        except Http1Error as exc:
            raise ContainerError(
                f"container {cid} connection failed: {exc or type(exc).__name__}"
            ) from None
        except OSError as exc:
            raise _unreachable(cid, str(exc)) from None
        if not 200 <= response.status < 300:
            raise _bad_status(cid, response.status, response.body)
        return response.body

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

    async def stream(
        self, endpoint: ServiceEndpoint, body: dict[str, Any], *, timeout: float
    ) -> AsyncIterator[bytes]:
        """POST a stream job and yield the container's bytes as they arrive."""
        limits = aiohttp.ClientTimeout(total=timeout, sock_read=endpoint.timeout)
        async with self._post(endpoint, body, limits) as resp:
            async for chunk in resp.content.iter_any():
                yield chunk

    async def resources(
        self, endpoint: ServiceEndpoint, model_id: str | None, timeout: float
    ) -> Any:
        """GET ``/service-resources``; raises on any failure (the caller omits the container)."""
        params = {"model_id": model_id} if model_id is not None else None
        async with self._session.get(
            endpoint.resources_url,
            params=params,
            headers=endpoint.headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            resp.raise_for_status()
            return jsonpolicy.loads(await resp.read())

    async def probe(self, base_url: str, timeout: float) -> bool:
        """True when anything answers HTTP at ``base_url`` (readiness, not health)."""
        try:
            async with self._session.get(
                base_url.rstrip("/") + "/", timeout=aiohttp.ClientTimeout(total=timeout)
            ) as resp:
                await resp.read()
                return True
        except (aiohttp.ClientError, TimeoutError, asyncio.CancelledError) as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            return False
