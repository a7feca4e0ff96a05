"""Helpers for the example-service tests (paths, module loading, docker CLI, the node's call)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
COMMON_DIR = ROOT / "examples" / "containers" / "common"
SERVICE_FILES = {
    "echo": ROOT / "examples" / "containers" / "echo" / "service.py",
    "transform": ROOT / "examples" / "containers" / "transform" / "service.py",
    "faulty": ROOT / "tests" / "containers" / "faulty" / "service.py",
}

# The services import the shared server module by its plain name, as they do in the images.
if str(COMMON_DIR) not in sys.path:
    sys.path.insert(0, str(COMMON_DIR))


def load_service(name: str) -> ModuleType:
    """Import one example's service.py under a unique module name (they are all 'service')."""
    module_name = f"example_service_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, SERVICE_FILES[name])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def docker_cli(*args: str, check: bool = True, timeout: float = 60) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def docker_logs(name: str) -> str:
    """A container's stdout and stderr (the services log to stderr)."""
    done = subprocess.run(
        ["docker", "logs", name], capture_output=True, text=True, timeout=30, check=False
    )
    return done.stdout + done.stderr


@dataclass
class RunningContainer:
    name: str
    url: str

    def state(self) -> dict[str, Any]:
        return dict(json.loads(docker_cli("inspect", "-f", "{{json .State}}", self.name)))


def wait_healthy(container: RunningContainer, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{container.url}/health", timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.05)
    logs = docker_logs(container.name)
    raise AssertionError(f"{container.name} never became healthy: {last}\n{logs}")


@dataclass
class ConnectionCounter:
    """Counts the TCP connections a one-connection session opens (keep-alive must reuse it)."""

    created: int = 0

    def session(self) -> aiohttp.ClientSession:
        async def on_create(*_: Any) -> None:
            self.created += 1

        trace = aiohttp.TraceConfig()
        trace.on_connection_create_end.append(on_create)
        connector = aiohttp.TCPConnector(limit=1)
        return aiohttp.ClientSession(connector=connector, trace_configs=[trace])


async def post_job(
    session: aiohttp.ClientSession, url: str, data: Any, destination: int = 1
) -> aiohttp.ClientResponse:
    """POST /service_output exactly as the node does (JSON body, all four keys)."""
    body = {"source": 1, "destination": destination, "data": data, "requires_proof": False}
    return await session.post(f"{url}/service_output", json=body)


Serve = Callable[..., Awaitable[str]]
RunContainer = Callable[..., RunningContainer]
