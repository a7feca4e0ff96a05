"""Fixtures: notify sockets the tests own."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from notifysocket import NotifySocket


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
