"""Fixtures: notify sockets the tests own."""

from __future__ import annotations

import os
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.systemd.agentproc import SLOWSERVICE_DIR, TEST_IMAGE, Agent
from tests.systemd.notifysocket import NotifySocket


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    """A path-named notify socket in a private temporary directory."""
    with tempfile.TemporaryDirectory(prefix="na-notify-") as directory:
        path = str(Path(directory) / "notify")
        receiver = NotifySocket(path, path)
        try:
            yield receiver
        finally:
            receiver.close()


@pytest.fixture
def abstract_notify_socket() -> Iterator[NotifySocket]:
    name = f"node-agent-test-{os.getpid()}-{uuid.uuid4().hex}"
    receiver = NotifySocket(b"\0" + name.encode(), "@" + name)
    try:
        yield receiver
    finally:
        receiver.close()


@pytest.fixture(scope="session")
def test_image() -> str:
    """Build the tiny test service on the offline base image (cached by Docker)."""
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode != 0:
        pytest.skip("no Docker engine: run scripts/setup-docker.sh")
    build = subprocess.run(
        ["docker", "build", "-q", "-t", TEST_IMAGE, str(SLOWSERVICE_DIR)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    return TEST_IMAGE


@pytest.fixture
def agent_factory(
    tmp_path: Path, notify_socket: NotifySocket, test_image: str
) -> Iterator[Callable[[list[dict[str, object]]], Agent]]:
    """Agents as real processes; each is killed (if still alive) and its containers removed."""
    agents: list[Agent] = []

    def make(containers: list[dict[str, object]]) -> Agent:
        directory = tmp_path / f"agent{len(agents)}"
        directory.mkdir()
        agent = Agent(directory, notify_socket, containers)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        agent.close()
