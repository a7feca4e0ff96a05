"""node-agent's own on-chain settings (the ``onchain:`` section of the config file)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class OnchainConfig(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    # Container sets served besides the automatic ones (explicit multi-container pipelines).
    pipelines: tuple[tuple[str, ...], ...] = ()
    # Automatic container sets: every chain of up to this many distinct configured containers
    # starting with an external one, as long as that stays under max_container_sets.
    max_pipeline_length: int = Field(2, ge=1, le=8)
    max_container_sets: int = Field(100_000, ge=1)
    # Delivery
    max_concurrent_deliveries: int = Field(8, ge=1)
    max_attempts: int = Field(3, ge=1)
    interval_margin_seconds: int = Field(2, ge=0)
    stuck_after_seconds: float = Field(30.0, gt=0)
    fee_bump_percent: int = Field(15, ge=10, le=200)
    gas_margin_percent: int = Field(20, ge=0, le=200)
    # The node's transactions journaled and not final yet, at most (sends wait beyond that;
    # a batch already signing may pass it by its size). Many in flight is what makes a burst
    # of deliveries fast; endpoints and pools limit how many one account may have pending.
    max_pending_transactions: int = Field(1000, ge=1)
    # The chain process's niceness above the agent's (0-19): higher serves the HTTP API and the
    # containers first when the CPU is short; lower puts deliveries into fewer blocks in a burst.
    process_nice: int = Field(10, ge=0, le=19)
    # Delegated subscriptions
    max_delegated: int = Field(10_000, ge=1)
    # Final deliveries (and their transactions) are kept in the journal this long, then pruned
    # (the latest interval of a subscription still served is kept).
    journal_retention_seconds: float = Field(86_400.0, ge=60)
