"""Shared fixtures: a protocol-speaking service and an agent in front of it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog

from node_agent.daemon import Daemon
from tests.support.agent import running_agent
from tests.support.service import ProtocolService, running_service


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """A CLI command run in-process (doctor, gpus) configures logging for the whole process,
    to stderr at ERROR; later tests that read the node's log lines must not inherit that."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
async def services() -> AsyncIterator[dict[str, tuple[ProtocolService, str]]]:
    async with running_service("first") as first, running_service("second") as second:
        yield {"first": first, "second": second}


def unmanaged_config(
    services: dict[str, tuple[ProtocolService, str]], **extra: Any
) -> dict[str, Any]:
    return {
        "manage_containers": False,
        "containers": [
            {"id": "first", "url": services["first"][1], "description": "first service"},
            {"id": "second", "url": services["second"][1]},
            {"id": "internal", "url": services["second"][1], "external": False},
            {"id": "prover", "url": services["second"][1], "generates_proofs": True},
            {"id": "lan-only", "url": services["first"][1], "allowed_ips": ["10.0.0.0/8"]},
        ],
        **extra,
    }


@pytest.fixture
async def agent(
    services: dict[str, tuple[ProtocolService, str]], tmp_path: Path
) -> AsyncIterator[tuple[Daemon, str]]:
    async with running_agent(unmanaged_config(services), tmp_path / "state") as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
