"""Docker prerequisites for integration tests: a live engine and the example images."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ("node-agent/echo:latest", "node-agent/transform:latest", "node-agent/faulty:latest")


def ensure_images() -> None:
    """Build (or confirm) the example images; fails loudly when Docker is not usable."""
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-examples.sh")], check=True, capture_output=True
    )


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def docker_client() -> Any:
    import docker

    return docker.from_env(timeout=60)


def remove_containers(names: list[str]) -> None:
    import docker.errors

    client = docker_client()
    for name in names:
        with contextlib.suppress(docker.errors.NotFound):
            client.containers.get(name).remove(force=True)
    client.close()
