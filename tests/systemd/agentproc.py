"""The real agent as a child process (``python -m node_agent.cli run``) for lifecycle tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.support.docker_env import unique
from tests.support.net import free_port
from tests.systemd.notifysocket import NotifySocket

TEST_IMAGE = "node-agent-test/slow:latest"
SLOWSERVICE_DIR = Path(__file__).resolve().parent / "slowservice"


def unique_id(prefix: str) -> str:
    return unique(f"na-test-{prefix}")


def service(container_id: str, **env: str) -> dict[str, Any]:
    """A config entry for the test service on a free host port."""
    return {
        "id": container_id,
        "image": TEST_IMAGE,
        "port": free_port(),
        "env": env,
        "max_concurrency": 8,
    }


def http(method: str, url: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode(errors="replace")


class Agent:
    """One agent process with its own config, state dir, port and notify socket."""

    def __init__(self, directory: Path, notify: NotifySocket, containers: list[dict[str, Any]]):
        self.directory = directory
        self.notify = notify
        self.port = free_port()
        self.config_path = directory / "config.yaml"
        self.state_dir = directory / "state"
        self.log_path = directory / "agent.log"
        self.container_ids: set[str] = set()
        self.process: subprocess.Popen[bytes] | None = None
        self.write_config(containers)

    def config(self, containers: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "server": {"port": self.port, "host": "127.0.0.1", "rate_limit_enabled": False},
            "containers": containers,
            "startup_wait": 30,
            "runtime": {"pull": False, "watch_interval": 1},
            "agent": {"shutdown_grace": 20},
            "log": {"format": "json", "level": "INFO"},
        }

    def write_config(self, containers: list[dict[str, Any]]) -> None:
        self.container_ids.update(c["id"] for c in containers)
        self.config_path.write_text(yaml.safe_dump(self.config(containers)))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, watchdog_usec: int | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WATCHDOG_", "NOTIFY_"))}
        env["NOTIFY_SOCKET"] = self.notify.env_value
        env["STATE_DIRECTORY"] = str(self.state_dir)
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        with self.log_path.open("ab") as log:
            # As the unit runs it: only --config; the state dir comes from $STATE_DIRECTORY.
            self.process = subprocess.Popen(
                [sys.executable, "-m", "node_agent.cli", "run", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log_path.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        return events

    def submit(self, container: str, **data: Any) -> str:
        status, body = http(
            "POST", f"{self.url}/api/jobs", {"containers": [container], "data": data}
        )
        assert status == 200, (status, body)
        return str(body["id"])

    def job(self, job_id: str, wait: float = 0) -> dict[str, Any]:
        status, body = http(
            "GET", f"{self.url}/api/jobs?id={job_id}&wait={wait}", timeout=wait + 10
        )
        assert status == 200, (status, body)
        [job] = body
        return dict(job)

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        if self.container_ids:
            subprocess.run(
                ["docker", "rm", "-f", *sorted(self.container_ids)],
                capture_output=True,
                timeout=60,
                check=False,
            )


def wait_until(predicate: Any, timeout: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


def answers(url: str) -> bool:
    try:
        status, _ = http("GET", url, timeout=1.0)
    except (OSError, ValueError):
        return False
    return status == 200
