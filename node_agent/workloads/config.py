"""Settings for orchestrator workloads (``workloads:`` section)."""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from node_agent.workloads.destinations import DEFAULT_BLOCKED, Network, parse_networks


class RegistryCredential(BaseModel):
    """Login for a private registry; the password is a secret like every other."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    username: str
    password: SecretStr

    @field_validator("password", mode="before")
    @classmethod
    def _secret(cls, value: Any) -> Any:
        from node_agent.config import _resolve_secret

        return _resolve_secret(value)


class CallbackSettings(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    timeout: float = Field(10.0, gt=0)
    max_attempts: int = Field(10, ge=1, le=100)
    backoff_initial: float = Field(1.0, gt=0)
    backoff_max: float = Field(300.0, gt=0)
    # Deliveries in flight at once, across all receivers.
    concurrency: int = Field(16, ge=1, le=256)
    # Networks a callback never reaches (CIDRs; see workloads/destinations.py for why). Setting
    # it replaces the default list: keep those entries and add yours.
    blocked_networks: tuple[str, ...] = DEFAULT_BLOCKED

    @field_validator("blocked_networks")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        try:
            parse_networks(value)
        except ValueError as exc:
            raise ValueError(f"not a network: {exc}") from None
        return value

    @functools.cached_property
    def blocked(self) -> tuple[Network, ...]:
        """Parsed once per settings object (a reload makes a new one)."""
        return parse_networks(self.blocked_networks)


class WorkloadsConfig(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    enabled: bool = True
    # Jobs waiting for GPUs (or a running slot); beyond it a submit gets 503 + Retry-After.
    max_queued: int = Field(1000, ge=1, le=100_000)
    # Containers running at once (GPU jobs are also bounded by the GPUs).
    max_running: int = Field(16, ge=1, le=1024)
    # Image references a workload may use (fnmatch patterns); the provider narrows it.
    allowed_images: tuple[str, ...] = ("*",)
    # Per-registry logins, by host (``ghcr.io``, ``registry.example.com:5000``).
    registries: dict[str, RegistryCredential] = {}
    pull_timeout: float = Field(3600.0, gt=0)
    # Pull even when the image is present (``always``) or only when missing.
    pull_policy: str = Field("missing", pattern="^(missing|always)$")
    stop_grace: float = Field(10.0, ge=0, le=3600)
    default_max_runtime: float | None = Field(None, gt=0)
    max_runtime_limit: float = Field(30 * 24 * 3600.0, gt=0)
    memory_limit: str | None = "16g"
    cpus: float | None = Field(None, gt=0)
    pids_limit: int = Field(4096, ge=16)
    # Docker's own log file per container, bounded so a chatty job cannot fill the disk.
    docker_log_max_size: str = "50m"
    # The agent's captured log per job (newest kept), served by /runtime and /logs/live.
    log_max_bytes: int = Field(64 * 1024 * 1024, ge=64 * 1024)
    runtime_tail_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    retention_seconds: float = Field(7 * 24 * 3600.0, gt=0)
    retention_count: int = Field(10_000, ge=10)
    # Memory a model needs per GB of weights (activations, KV cache, CUDA context).
    memory_overhead_factor: float = Field(1.2, ge=1.0, le=10.0)
    network: str | None = None
    callbacks: CallbackSettings = CallbackSettings()
