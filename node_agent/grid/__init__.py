"""Reporting capacity to the orchestrator: register once, then heartbeat with jitter."""
