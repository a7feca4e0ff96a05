"""The workload job model (pure): draft validation, states, the final-status decision, and the
wire views. No I/O here, so every rule is unit-tested alone."""

from __future__ import annotations

import enum
import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from node_agent import jsonpolicy
from node_agent.errors import BadRequest


class WorkloadStatus(enum.StrEnum):
    QUEUED = "queued"
    PULLING = "pulling"
    STARTING = "starting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in FINAL


FINAL = frozenset({WorkloadStatus.SUCCEEDED, WorkloadStatus.FAILED, WorkloadStatus.CANCELLED})
# Statuses a callback receiver hears about (the orchestrator's users follow these).
CALLBACK_STATUSES = FINAL | {WorkloadStatus.RUNNING}
# Forward-only: a status may only move to a later one (a late event never rewinds a job).
ORDER = {s: i for i, s in enumerate(WorkloadStatus)}

WORKLOAD_TYPES = ("inference", "batch")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
# A Docker image reference: [host[:port]/]path[:tag][@digest]; Docker checks the rest.
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._\-/:@]*$", re.IGNORECASE)
MAX_METADATA_BYTES = 16 * 1024


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


ShortText = Annotated[str, Field(max_length=256)]
ArgText = Annotated[str, Field(max_length=64 * 1024)]


class Constraints(BaseModel):
    """Placement wishes; unknown keys are kept (the orchestrator may add more) and ignored."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    preferred_gpu_family: ShortText | None = None
    avoid_gpu_families: Annotated[list[ShortText], Field(max_length=64)] = []
    max_price_per_hour: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    region_preference: ShortText | None = None
    latency_priority: ShortText | None = None
    cost_priority: ShortText | None = None

    @field_validator("max_price_per_hour", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


class Draft(BaseModel):
    """A draft job as the orchestrator sends it, plus the node's additions (``gpus``,
    ``max_runtime``, ``ports``, ``infernet_service``)."""

    # Unknown fields are kept aside (reported as ``ignored_fields``), never stored.
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    name: Annotated[str, Field(max_length=256)] = ""
    workload_type: str = "batch"
    image: Annotated[str, Field(min_length=1, max_length=512)]
    command: Annotated[list[ArgText], Field(max_length=64)] | None = None
    args: Annotated[list[ArgText], Field(max_length=4096)] = []
    env: Annotated[dict[str, ArgText], Field(max_length=512)] = {}
    model_size_gb: Annotated[float, Field(ge=0, le=100_000, allow_inf_nan=False)] | None = None
    optimize_for: ShortText | None = None
    constraints: Constraints = Constraints()
    callback_url: Annotated[str, Field(max_length=2048)] | None = None
    callback_auth_token: Annotated[str, Field(max_length=4096)] | None = None
    callback_metadata: dict[str, Any] | None = None
    gpus: Annotated[int, Field(ge=0, le=64)] | None = None
    max_runtime: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    ports: Annotated[list[Annotated[int, Field(ge=1, le=65535)]], Field(max_length=16)] = []
    infernet_service: bool = False
    # Served to every client of /api/jobs, not only the owner's API key (node-agent addition).
    infernet_public: bool = False

    @field_validator("command", mode="before")
    @classmethod
    def _command(cls, value: Any) -> Any:
        """``"python"`` (as the orchestrator's examples) or ``["python", "-u"]``."""
        return [value] if isinstance(value, str) else value

    @field_validator("model_size_gb", "max_runtime", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("workload_type")
    @classmethod
    def _type(cls, value: str) -> str:
        if value not in WORKLOAD_TYPES:
            raise ValueError(f"must be one of {', '.join(WORKLOAD_TYPES)}")
        return value

    @field_validator("image")
    @classmethod
    def _image(cls, value: str) -> str:
        if not _IMAGE.match(value) or "//" in value:
            raise ValueError("must be a Docker image reference such as python:3.11")
        return value

    @field_validator("command", "args")
    @classmethod
    def _args(cls, value: list[str] | None) -> list[str] | None:
        for item in value or ():
            _no_nul(item)
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for name, item in value.items():
            if not _ENV_NAME.match(name) or len(name) > 256:
                raise ValueError(f"{name[:64]!r} is not a valid environment variable name")
            _no_nul(item)
        return value

    @field_validator("callback_url")
    @classmethod
    def _callback_url(cls, value: str | None) -> str | None:
        if value is not None:
            check_callback_url(value)
        return value

    @field_validator("callback_metadata")
    @classmethod
    def _metadata(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(jsonpolicy.dumps(value)) > MAX_METADATA_BYTES:
            raise ValueError(f"must serialise to at most {MAX_METADATA_BYTES} bytes")
        return value

    def unknown_fields(self) -> list[str]:
        return sorted(self.model_extra or ())

    def stored(self) -> dict[str, Any]:
        """What the store keeps: known fields, without the callback token (a column of its own,
        never part of any answer)."""
        return self.model_dump(mode="json", exclude={"callback_auth_token", *self.unknown_fields()})


def is_loopback_host(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.") or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_callback_url(url: str) -> None:
    """HTTPS, unless the receiver is on this host (the orchestrator's own rule)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError("must be an http(s) URL with a host")
    if parts.scheme == "http" and not is_loopback_host(host):
        raise ValueError("must use https unless the host is localhost or loopback")
    if parts.username or parts.password:
        raise ValueError("must not carry credentials (use callback_auth_token)")


def parse_draft(body: Any) -> Draft:
    """The body as a Draft, or a 400 naming the first offending field."""
    if not isinstance(body, dict):
        raise BadRequest("Invalid job", {"problem": "expected a JSON object"})
    try:
        draft = Draft.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "body"
        raise BadRequest("Invalid job", {"field": loc, "problem": first["msg"]}) from None
    if draft.ports and draft.workload_type != "inference":
        raise BadRequest(
            "Invalid job", {"field": "ports", "problem": "only inference workloads publish ports"}
        )
    if draft.infernet_service and not draft.ports:
        raise BadRequest(
            "Invalid job",
            {"field": "infernet_service", "problem": "needs the service port in 'ports'"},
        )
    return draft


def gpus_needed(draft: Draft, unit_memory_gb: float | None, overhead: float) -> int:
    """GPUs the job asks for: explicit ``gpus``, else enough of this GPU size to hold the model
    (``model_size_gb`` × overhead), else none."""
    if draft.gpus is not None:
        return draft.gpus
    if not draft.model_size_gb:
        return 0
    if not unit_memory_gb:
        return 1
    return max(1, math.ceil(draft.model_size_gb * overhead / unit_memory_gb))


# --- the one place a job's final status is decided ------------------------------------------


@dataclass(frozen=True)
class Outcome:
    status: WorkloadStatus
    error: str | None


def final_outcome(
    *,
    exit_code: int | None,
    cancel_requested: bool,
    timed_out: float | None = None,
    error: str | None = None,
) -> Outcome:
    """Cancel wins over everything (the user asked); then a runtime limit, an error of the
    node's, and last the command's own exit code."""
    if cancel_requested:
        return Outcome(WorkloadStatus.CANCELLED, "cancelled by the client")
    if timed_out is not None:
        return Outcome(WorkloadStatus.FAILED, f"max_runtime exceeded ({timed_out:g} s)")
    if error is not None:
        return Outcome(WorkloadStatus.FAILED, error)
    if exit_code == 0:
        return Outcome(WorkloadStatus.SUCCEEDED, None)
    if exit_code is None:
        return Outcome(WorkloadStatus.FAILED, "the container ended without an exit code")
    reason = f"command exited with code {exit_code}"
    if exit_code == 137:
        reason += " (killed: out of memory or SIGKILL)"
    return Outcome(WorkloadStatus.FAILED, reason)


# --- the record ------------------------------------------------------------------------------


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Workload:
    """One job as stored; ``draft`` is the validated body minus the callback token."""

    id: str
    owner: str
    draft: dict[str, Any]
    status: WorkloadStatus
    created_at: float
    updated_at: float
    origin: Literal["push", "pull"] = "push"
    grid_job_id: str | None = None
    callback_token: str | None = None
    gpus: list[dict[str, Any]] = field(default_factory=list)
    container_id: str | None = None
    exit_code: int | None = None
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    cancel_requested: bool = False
    progress: dict[str, Any] | None = None
    ports: dict[str, int] = field(default_factory=dict)
    seq: int = 0

    def runtime_seconds(self, now: float) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at if self.finished_at is not None else now
        return max(0.0, end - self.started_at)

    def cost_usd(self, now: float, prices: Mapping[str, float]) -> float:
        """GPU-hours so far at the node's advertised prices (a CPU-only job costs nothing)."""
        runtime = self.runtime_seconds(now) or 0.0
        hourly = sum(prices.get(str(g.get("family") or ""), 0.0) for g in self.gpus)
        return round(hourly * runtime / 3600.0, 6)

    def to_wire(self, now: float, prices: Mapping[str, float]) -> dict[str, Any]:
        draft = self.draft
        body: dict[str, Any] = {
            "job_id": self.id,
            "name": draft.get("name", ""),
            "status": self.status.value,
            "workload_type": draft.get("workload_type"),
            "image": draft.get("image"),
            "command": draft.get("command"),
            "args": draft.get("args", []),
            "model_size_gb": draft.get("model_size_gb"),
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "gpus": self.gpus,
            "exit_code": self.exit_code,
            "error": self.error,
            "runtime_seconds": self.runtime_seconds(now),
            "cost_usd": self.cost_usd(now, prices),
            "hourly_rate_usd": round(
                sum(prices.get(str(g.get("family") or ""), 0.0) for g in self.gpus), 6
            ),
            "origin": self.origin,
        }
        if self.grid_job_id is not None:
            body["grid_job_id"] = self.grid_job_id
        if self.progress is not None:
            body["pull_progress"] = self.progress
        if self.ports:
            body["ports"] = self.ports
        if draft.get("callback_url"):
            body["callback_url"] = draft["callback_url"]
        if self.cancel_requested and not self.status.final:
            body["cancel_requested"] = True
        return body
