"""Fixtures for the example service containers: in-process servers and real Docker containers."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from example_helpers import (
    ROOT,
    SERVICE_FILES,
    RunContainer,
    RunningContainer,
    Serve,
    docker_cli,
    wait_healthy,
)


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start a service in this event loop on a free port; returns its base URL."""
    import infernet_service

    servers: list[asyncio.Server] = []

    async def _serve(handler: Any, limits: Any = None) -> str:
        server = await infernet_service.start(handler, "127.0.0.1", 0, limits)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    yield _serve
    for server in servers:
        server.close()


# --- Docker --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def example_images() -> dict[str, str]:
    """Build (or reuse) the example images through the project's own script."""
    try:
        docker_cli("info", timeout=20)
    except (RuntimeError, FileNotFoundError, subprocess.TimeoutExpired):
        pytest.skip("no Docker engine answers")
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-examples.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, f"build-examples.sh failed:\n{done.stderr}"
    return {name: f"node-agent/{name}:latest" for name in SERVICE_FILES}


@pytest.fixture
def run_container(example_images: dict[str, str]) -> Iterator[RunContainer]:
    """Run example containers published on 127.0.0.1 (a free port) with unique names."""
    names: list[str] = []

    def _run(service: str, *env: str) -> RunningContainer:
        name = f"na-test-{service}-{secrets.token_hex(4)}"
        env_args = [arg for pair in env for arg in ("-e", pair)]
        docker_cli(
            "run", "-d", "--name", name, "-p", "127.0.0.1::3000",
            "--label", "org.node-agent.test=examples", *env_args, example_images[service],
        )  # fmt: skip
        names.append(name)
        port = docker_cli("port", name, "3000/tcp").splitlines()[0].rsplit(":", 1)[1]
        container = RunningContainer(name, f"http://127.0.0.1:{port}")
        wait_healthy(container)
        return container

    yield _run
    for name in names:
        docker_cli("rm", "-f", name, check=False)
