"""Settings for GPU discovery (``gpus:`` section)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from node_agent.gpu.health import APPLICATION_XIDS


class GpusConfig(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    enabled: bool = True
    poll_interval: float = Field(5.0, gt=0)
    call_timeout: float = Field(10.0, gt=0)
    init_retry_seconds: float = Field(60.0, gt=0)
    lost_retry_seconds: float = Field(300.0, gt=0)
    watch_xid_events: bool = True
    event_wait_ms: int = Field(5000, ge=10)
    ignored_xids: tuple[int, ...] = APPLICATION_XIDS
    xid_hold_seconds: float = Field(600.0, ge=0)
