"""HTTP client for Infernet service containers (``POST /service_output``, §4).

Unlike the reference node, a reply only counts as output when it is a 2xx with a JSON body;
every failure becomes a :class:`ContainerError` whose text says what happened.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from node_agent.errors import ContainerError

_ERROR_BODY_PREVIEW = 300


def _preview(body: bytes) -> str:
    text = body[:_ERROR_BODY_PREVIEW].decode("utf-8", "replace")
    return text + ("…" if len(body) > _ERROR_BODY_PREVIEW else "")


class ServiceEndpoint:
    """Where one container answers, and how to authenticate to it."""

    __slots__ = ("bearer", "container_id", "output_url", "resources_url", "timeout")

    def __init__(self, container_id: str, base_url: str, bearer: str | None, timeout: float):
        base = base_url.rstrip("/")
        self.container_id = container_id
        self.output_url = f"{base}/service_output"
        self.resources_url = f"{base}/service-resources"
        self.bearer = bearer
        self.timeout = timeout

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.bearer:
            headers["Authorization"] = f"Bearer {self.bearer}"
        return headers


class ServiceClient:
    """One keep-alive connection pool for every container call the node makes."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    @staticmethod
    def make_session(pool_size: int = 1024) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=pool_size, limit_per_host=0, ttl_dns_cache=300)
        return aiohttp.ClientSession(
            connector=connector, json_serialize=lambda o: orjson.dumps(o).decode()
        )

    async def call(self, endpoint: ServiceEndpoint, body: dict[str, Any]) -> Any:
        """POST the job to the container and return its JSON output."""
        cid = endpoint.container_id
        try:
            async with self._session.post(
                endpoint.output_url,
                data=orjson.dumps(body),
                headers=endpoint.headers(),
                timeout=aiohttp.ClientTimeout(total=endpoint.timeout),
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except TimeoutError:
            raise ContainerError(
                f"container {cid} did not answer within {endpoint.timeout:g} s"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            raise ContainerError(f"container {cid} is unreachable: {exc.os_error}") from None
        except aiohttp.ClientError as exc:
            raise ContainerError(
                f"container {cid} connection failed: {type(exc).__name__}: {exc}"
            ) from None
        if not 200 <= status < 300:
            raise ContainerError(f"container {cid} answered HTTP {status}: {_preview(raw)}")
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise ContainerError(
                f"container {cid} answered with a body that is not JSON: {_preview(raw)}"
            ) from None

    async def stream(
        self, endpoint: ServiceEndpoint, body: dict[str, Any], *, timeout: float
    ) -> AsyncIterator[bytes]:
        """POST a stream job and yield the container's bytes as they arrive."""
        cid = endpoint.container_id
        try:
            async with self._session.post(
                endpoint.output_url,
                data=orjson.dumps(body),
                headers=endpoint.headers(),
                timeout=aiohttp.ClientTimeout(total=timeout, sock_read=endpoint.timeout),
            ) as resp:
                if not 200 <= resp.status < 300:
                    raw = await resp.read()
                    raise ContainerError(
                        f"container {cid} answered HTTP {resp.status}: {_preview(raw)}"
                    )
                async for chunk in resp.content.iter_any():
                    yield chunk
        except TimeoutError:
            raise ContainerError(f"container {cid} stream timed out") from None
        except aiohttp.ClientConnectorError as exc:
            raise ContainerError(f"container {cid} is unreachable: {exc.os_error}") from None
        except aiohttp.ClientError as exc:
            raise ContainerError(
                f"container {cid} stream failed: {type(exc).__name__}: {exc}"
            ) from None

    async def resources(
        self, endpoint: ServiceEndpoint, model_id: str | None, timeout: float
    ) -> Any:
        """GET ``/service-resources``; raises on any failure (the caller omits the container)."""
        params = {"model_id": model_id} if model_id is not None else None
        async with self._session.get(
            endpoint.resources_url,
            params=params,
            headers=endpoint.headers(),
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            resp.raise_for_status()
            return orjson.loads(await resp.read())

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
