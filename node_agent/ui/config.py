"""Settings for the status page (``ui:`` section)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

# However the two settings below are chosen, the history holds at most this many samples.
MAX_SAMPLES = 2000


class UiConfig(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    enabled: bool = True
    # One sample of GPU telemetry and job rates every this many seconds ...
    sample_interval: float = Field(5.0, gt=0, le=3600)
    # ... kept for this long (the charts' width).
    history_seconds: float = Field(900.0, gt=0, le=7 * 24 * 3600)
    # Newest Infernet jobs and workloads listed on the page.
    recent_jobs: int = Field(20, ge=0, le=200)

    @model_validator(mode="after")
    def _bounded(self) -> UiConfig:
        if self.history_seconds / self.sample_interval > MAX_SAMPLES:
            raise ValueError(
                f"history_seconds / sample_interval must be at most {MAX_SAMPLES} samples"
            )
        return self

    @property
    def capacity(self) -> int:
        """Samples kept: the history's whole window, at least two (a chart needs a line)."""
        return max(2, round(self.history_seconds / self.sample_interval))
