"""Fixtures for the chain tests (helpers live in chain_support.py)."""

from chain_support import anvil, deployment, devnet, service_container

__all__ = ["anvil", "deployment", "devnet", "service_container"]
