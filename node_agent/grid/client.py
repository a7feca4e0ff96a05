"""HTTP client for the orchestrator's node API (see docs/grid.md for the protocol)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import aiohttp
from pydantic import SecretStr
from yarl import URL

from node_agent.errors import NodeAgentError
from node_agent.grid.backoff import parse_retry_after


class GridError(NodeAgentError):
    """The orchestrator could not be reached or refused a request."""

    status = 502
    default_message = "Orchestrator error"


class GridUnreachable(GridError):
    """Connection refused, DNS failure, timeout: retried with backoff."""


class GridHttpError(GridError):
    def __init__(self, error: str, http_status: int, retry_after: float | None = None) -> None:
        super().__init__(error, {"status": http_status}, retry_after=retry_after)
        self.http_status = http_status


class GridAuthError(GridHttpError):
    """401/403: the API key is wrong, revoked or lacks a scope; not retried in a tight loop."""


class GridNodeUnknown(GridHttpError):
    """404 on a heartbeat: the orchestrator forgot the node, so it registers again."""


@dataclass(frozen=True)
class RegisterResult:
    node_id: str
    heartbeat_interval: float | None = None


@dataclass(frozen=True)
class HeartbeatResult:
    inventory_required: bool = False
    heartbeat_interval: float | None = None


class OrchestratorClient:
    """Owns the session (unless injected), the base URL, the key and every timeout."""

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr | None,
        *,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 10.0,
        user_agent: str = "node-agent",
    ) -> None:
        self._base = URL(base_url)
        self._api_key = api_key
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 5.0))
        self._user_agent = user_agent

    def __repr__(self) -> str:  # never show the key
        return f"OrchestratorClient({str(self._base)!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def register(self, body: Mapping[str, Any], *, idempotency_key: str) -> RegisterResult:
        data = await self._request(
            "POST", "/v1/nodes/register", body, headers={"Idempotency-Key": idempotency_key}
        )
        node_id = data.get("node_id")
        if not isinstance(node_id, str) or not node_id:
            raise GridError("orchestrator register response has no node_id")
        return RegisterResult(
            node_id=node_id, heartbeat_interval=_seconds(data, "heartbeat_interval")
        )

    async def heartbeat(self, node_id: str, body: Mapping[str, Any]) -> HeartbeatResult:
        data = await self._request("POST", f"/v1/nodes/{quote(node_id, safe='')}/heartbeat", body)
        return HeartbeatResult(
            inventory_required=bool(data.get("inventory_required", False)),
            heartbeat_interval=_seconds(data, "heartbeat_interval"),
        )

    async def _request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        # Segments are already percent-encoded by the callers (see heartbeat()).
        url = self._base.joinpath(*path.strip("/").split("/"), encoded=True)
        all_headers = {"User-Agent": self._user_agent, "Accept": "application/json"}
        if self._api_key is not None:
            all_headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        all_headers.update(headers or {})
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.request(
                method, url, json=body, headers=all_headers, timeout=self._timeout
            ) as response:
                text = await response.text()
                if response.status >= 400:
                    raise self._http_error(response, text)
                try:
                    data = await response.json(content_type=None) if text else {}
                except ValueError:
                    raise GridError("orchestrator sent a response that is not JSON") from None
        except TimeoutError:
            raise GridUnreachable(f"orchestrator timed out ({method} {path})") from None
        except aiohttp.ClientError as exc:
            raise GridUnreachable(
                f"orchestrator unreachable ({method} {path}): {type(exc).__name__}"
            ) from None
        if not isinstance(data, dict):
            raise GridError("orchestrator sent a JSON value that is not an object")
        return data

    @staticmethod
    def _http_error(response: aiohttp.ClientResponse, text: str) -> GridHttpError:
        detail = text[:200].strip() or response.reason or ""
        message = f"orchestrator answered {response.status}: {detail}"
        retry_after = parse_retry_after(response.headers.get("Retry-After"), time.time())
        if response.status in (401, 403):
            return GridAuthError(message, response.status)
        if response.status == 404 and "/heartbeat" in response.url.path:
            return GridNodeUnknown(message, response.status)
        return GridHttpError(message, response.status, retry_after)


def _seconds(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    return float(value) if isinstance(value, int | float) and value > 0 else None
