"""One exception hierarchy for the whole agent.

Every error a client can see is a :class:`NodeAgentError` carrying its HTTP status, the wire
``error`` string (kept identical to the Infernet node's where one exists) and JSON-serialisable
``params``. The API layer maps them to responses in exactly one place (``api.dispatch``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class NodeAgentError(Exception):
    """Base of every error the agent raises on purpose."""

    status: int = 500
    default_message: str = "Internal server error"

    def __init__(
        self,
        error: str | None = None,
        params: Mapping[str, Any] | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        self.error = error or self.default_message
        self.params: dict[str, Any] | None = dict(params) if params is not None else None
        self.retry_after = retry_after
        super().__init__(self.error)

    def response_headers(self) -> dict[str, str]:
        """Headers HTTP requires with this answer (RFC 9110: Retry-After, Allow)."""
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, round(self.retry_after)))}

    def to_wire(self) -> dict[str, Any]:
        """The ``{"error": ..., "params"?: ...}`` body infernet-client parses."""
        body: dict[str, Any] = {"error": self.error}
        if self.params is not None:
            body["params"] = self.params
        return body


# --- client errors (4xx) -------------------------------------------------------------------


class BadRequest(NodeAgentError):
    status = 400
    default_message = "Bad request"


class InvalidJson(BadRequest):
    """A body outside the node's JSON policy (``node_agent.jsonpolicy``): malformed, or one
    the node could not store and send back intact."""

    default_message = "Invalid JSON body"


class Unauthorized(NodeAgentError):
    status = 401
    default_message = "Unauthorized"


class Forbidden(NodeAgentError):
    status = 403
    default_message = "Forbidden"


class NotFound(NodeAgentError):
    status = 404
    default_message = "Not found"


class MethodNotAllowed(NodeAgentError):
    status = 405
    default_message = "Method not allowed"

    def response_headers(self) -> dict[str, str]:
        allowed = (self.params or {}).get("allowed") or []
        return {**super().response_headers(), "Allow": ", ".join(allowed)}


class PayloadTooLarge(NodeAgentError):
    status = 413
    default_message = "Request body too large"


class UnsupportedMediaType(NodeAgentError):
    status = 415
    default_message = "Unsupported media type"


class RateLimited(NodeAgentError):
    status = 429
    default_message = "Too many requests"


class GuardianRejection(NodeAgentError):
    """A request the access rules refuse; ``error`` is one of Infernet's guardian strings."""

    status = 400


class AccessDenied(GuardianRejection):
    """``Container not allowed for address``: the caller is known but not allowed."""

    status = 403


# --- server-side conditions (5xx) ---------------------------------------------------------


class Overloaded(NodeAgentError):
    """A container's queue is full: refuse new work instead of piling it up."""

    status = 503
    default_message = "Node overloaded"


class ShuttingDown(NodeAgentError):
    status = 503
    default_message = "Node is shutting down"


class InternalError(NodeAgentError):
    status = 500


# --- non-HTTP errors ----------------------------------------------------------------------


class ConfigError(NodeAgentError):
    """The configuration is invalid; ``params`` name the offending key."""

    status = 500
    default_message = "Invalid configuration"


class ContainerError(NodeAgentError):
    """A service container failed a job (bad status, bad body, timeout, unreachable)."""

    status = 502
    default_message = "Container error"


class ContainerUnreachable(ContainerError):
    """No connection to the container: it may have crashed or been removed (worth a check)."""


class StoreError(NodeAgentError):
    status = 500
    default_message = "Job store error"


class StoreUnavailable(StoreError):
    """The store's writer is gone: nothing can be written until the node restarts."""

    status = 503
    default_message = "Job store unavailable"
