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
    # Pull dispatch: drafts with the orchestrator's job_id, and acks refusing the entries that
    # could not even be read as one (see parse_assignments).
    assignments: tuple[dict[str, Any], ...] = ()
    refused: tuple[dict[str, Any], ...] = ()
    # Orchestrator job ids of pulled jobs to cancel (the orchestrator's users cancel there).
    cancellations: tuple[str, ...] = ()


MAX_ASSIGNMENTS = 100
MAX_JOB_ID = 256


def parse_cancellations(value: Any) -> list[str]:
    """Job ids to cancel; anything that is not a short string is ignored (and logged)."""
    if not isinstance(value, list):
        return []
    return [v for v in value[:MAX_ASSIGNMENTS] if isinstance(v, str) and 0 < len(v) <= MAX_JOB_ID]


def parse_assignments(value: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Loose check of the heartbeat answer's ``assignments``: each must be an object with a
    string ``job_id``; the draft itself is validated by the workload service. Returns the
    assignments and refusal acks (``job_id`` null when there is none to name)."""
    if value is None:
        return [], []
    if not isinstance(value, list):
        return [], [_refusal(None, "assignments must be a list")]
    accepted: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        job_id = item.get("job_id") if isinstance(item, dict) else None
        named = job_id if isinstance(job_id, str) and 0 < len(job_id) <= MAX_JOB_ID else None
        if not isinstance(item, dict):
            refused.append(_refusal(None, f"assignment {index} is not an object"))
        elif named is None:
            problem = "has no job_id" if job_id is None else "job_id must be a string of 1-256"
            refused.append(_refusal(None, f"assignment {index} {problem}"))
        elif index >= MAX_ASSIGNMENTS:
            refused.append(
                _refusal(named, f"more than {MAX_ASSIGNMENTS} assignments in one answer", True)
            )
        else:
            accepted.append(item)
    return accepted, refused


def _refusal(job_id: str | None, reason: str, retryable: bool = False) -> dict[str, Any]:
    return {"job_id": job_id, "accepted": False, "reason": reason, "retryable": retryable}


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
        assignments, refused = parse_assignments(data.get("assignments"))
        return HeartbeatResult(
            inventory_required=bool(data.get("inventory_required", False)),
            heartbeat_interval=_seconds(data, "heartbeat_interval"),
            assignments=tuple(assignments),
            refused=tuple(refused),
            cancellations=tuple(parse_cancellations(data.get("cancellations"))),
        )

    async def job_status(self, node_id: str, job_id: str, body: Mapping[str, Any]) -> None:
        """Report a pulled job's status change at once (the heartbeat repeats it later)."""
        path = f"/v1/nodes/{quote(node_id, safe='')}/jobs/{quote(job_id, safe='')}/status"
        await self._request("POST", path, body)

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
        if response.status == 404 and response.url.path.endswith("/heartbeat"):
            return GridNodeUnknown(message, response.status)
        return GridHttpError(message, response.status, retry_after)


def _seconds(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    return float(value) if isinstance(value, int | float) and value > 0 else None
