"""Fixtures of the workload tests: four principals (two full keys, a write-only and a read-only
one) and a real agent that knows them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from node_agent.daemon import Daemon
from tests.support.agent import running_agent
from tests.workloads.support import Key, make_key, node_config


@pytest.fixture
def keys() -> dict[str, Key]:
    return {
        "alice": make_key(),
        "bob": make_key(),
        "writer": make_key("jobs:write"),
        "reader": make_key("jobs:read"),
    }


@pytest.fixture
async def node(keys: dict[str, Key], tmp_path: Path) -> AsyncIterator[tuple[Daemon, str]]:
    async with running_agent(node_config(list(keys.values())), tmp_path / "state") as running:
        yield running
