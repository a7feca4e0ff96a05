"""Orchestrator workloads (the Jungle Grid job model): one Docker container per job, with GPUs
by UUID, captured logs, cancel, estimate and durable callbacks; beside ``jobs/`` (Infernet
service jobs), not inside it."""
