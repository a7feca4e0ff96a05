"""Run a real node-agent daemon in the test's event loop, on a free port."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from node_agent.config import Config, parse_config
from node_agent.daemon import Daemon
from tests.support.net import free_port


def make_config(raw: dict[str, Any]) -> Config:
    raw = dict(raw)
    server = dict(raw.get("server", {}))
    server.setdefault("port", free_port())
    server.setdefault("rate_limit_enabled", False)
    raw["server"] = server
    return parse_config(raw, source="test")


@asynccontextmanager
async def running_agent(
    raw: dict[str, Any],
    state_dir: Path,
    *,
    wait_containers: bool = True,
    provider_options: dict[str, Any] | None = None,
) -> AsyncIterator[tuple[Daemon, str]]:
    """``provider_options``: test seams of the provider services (e.g. a fake NVML library)."""
    daemon = Daemon(make_config(raw), state_dir, provider_options=provider_options)
    await daemon.start()
    try:
        if wait_containers:
            await daemon.containers_ready.wait()
        yield daemon, f"http://127.0.0.1:{daemon.port}"
    finally:
        await daemon.stop()


async def start_agent_process(
    config: Path, state: Path, *, log: Path | None = None
) -> asyncio.subprocess.Process:
    """``node-agent run`` as its own process (for ``kill -9``); output to ``log`` or nowhere."""
    output = log.open("ab") if log is not None else asyncio.subprocess.DEVNULL
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "node_agent.cli",
            "run",
            "--config",
            str(config),
            "--state-dir",
            str(state),
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
        )
    finally:
        if log is not None:
            output.close()  # type: ignore[union-attr]
