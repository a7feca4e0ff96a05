"""Settings for the orchestrator connection (``grid:`` section)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class GridConfig(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    enabled: bool = False
    url: str | None = None
    # Provider API key (``jg_...``): inline, or {env: NAME} / {file: PATH} / {credential: NAME}.
    api_key: SecretStr | None = None
    public_url: str | None = None
    region: str | None = None
    labels: dict[str, str] = {}
    price_per_gpu_hour: dict[str, float] = {}
    heartbeat_interval: float = Field(15.0, gt=0)
    heartbeat_jitter: float = Field(0.2, ge=0, le=0.5)
    request_timeout: float = Field(10.0, gt=0)
    backoff_initial: float = Field(1.0, gt=0)
    backoff_max: float = Field(60.0, gt=0)
    auth_retry_seconds: float = Field(300.0, gt=0)
    startup_delay_max: float = Field(10.0, ge=0)
    full_inventory_every: float = Field(300.0, gt=0)

    @field_validator("api_key", mode="before")
    @classmethod
    def _api_key(cls, value: Any) -> Any:
        from node_agent.config import _resolve_secret

        return None if value in ("", None) else _resolve_secret(value)

    @field_validator("price_per_gpu_hour")
    @classmethod
    def _families_lower(cls, value: dict[str, float]) -> dict[str, float]:
        if any(price < 0 for price in value.values()):
            raise ValueError("prices must not be negative")
        return {family.lower(): price for family, price in value.items()}

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> GridConfig:
        if self.enabled and not self.url:
            raise ValueError("grid.url is required when grid.enabled is true")
        if self.enabled and self.api_key is None:
            raise ValueError("grid.api_key is required when grid.enabled is true")
        return self
