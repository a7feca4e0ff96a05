"""The shipped unit under a real systemd (PID 1 in a container), installed by install.sh.

Offline checks cannot show that the hardening leaves Python, the Docker socket and the notify
protocol working together; this does: Type=notify start, reload with a job in flight, the drain
on stop, the watchdog restarting a frozen agent. Skipped (with the reason) where systemd cannot
boot in a container on this host.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.systemd.agentproc import free_port, http, service, unique_id
from tests.systemd.unitfile import REPO

pytestmark = pytest.mark.docker

IMAGE = "node-agent-test/systemd:latest"
IMAGE_DIR = Path(__file__).resolve().parent / "systemd-image"
# pip's settings and local wheel mirrors of this machine, passed through when present.
HOST_FILES = (
    "/etc/pip.conf",
    "/etc/ssl/certs/ca-certificates.crt",
    "/opt/wheels",
    "/opt/pypi",
    "/opt/pypi-more",
)


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


class Host:
    """A container booted into systemd, sharing this machine's network and Docker engine."""

    def __init__(self, name: str) -> None:
        self.name = name

    def sh(self, script: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return docker("exec", self.name, "bash", "-c", script, timeout=timeout)

    def ok(self, script: str, timeout: float = 300) -> str:
        result = self.sh(script, timeout)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def show(self, *props: str) -> dict[str, str]:
        out = self.ok(f"systemctl show -p {','.join(props)} node-agent")
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


@pytest.fixture(scope="module")
def systemd_host(test_image: str) -> Iterator[Host]:
    gid = os.stat("/var/run/docker.sock").st_gid
    build = docker(
        "build", "-q", "--network", "host", "--build-arg", f"DOCKER_GID={gid}",
        "-t", IMAGE, str(IMAGE_DIR), timeout=600,
    )  # fmt: skip
    if build.returncode != 0:
        pytest.skip(f"cannot build the systemd image (needs apt): {build.stderr[-300:]}")
    name = f"na-test-systemd-{uuid.uuid4().hex[:8]}"
    mounts = [f"-v={path}:{path}:ro" for path in HOST_FILES if os.path.exists(path)]
    started = docker(
        "run", "-d", "--name", name, "--network", "host",
        "--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined",
        "--security-opt", "apparmor=unconfined", "--tmpfs", "/run", "--tmpfs", "/run/lock",
        "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        "-v", "/var/run/docker.sock:/var/run/docker.sock",
        "-v", f"{REPO}:/src:ro", *mounts, IMAGE,
    )  # fmt: skip
    host = Host(name)
    try:
        if started.returncode != 0:
            pytest.skip(f"cannot start a systemd container here: {started.stderr[-300:]}")
        state = ""
        for _ in range(60):
            state = host.sh("systemctl is-system-running").stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.5)
        else:
            pytest.skip(f"systemd did not boot in a container here (state {state!r})")
        yield host
    finally:
        docker("rm", "-f", name)


def test_unit_under_real_systemd(systemd_host: Host) -> None:
    host = systemd_host
    port = free_port()
    svc = service(unique_id("sd"), VERSION="v1")
    config = {
        "server": {"port": port, "host": "127.0.0.1"},
        "startup_wait": 30,
        "runtime": {"pull": False},
        "containers": [svc],
    }
    try:
        # A config in place first: install.sh keeps it and starts the unit on it.
        host.ok(
            "install -d -m 0755 /etc/node-agent && cat > /etc/node-agent/config.yaml <<'EOF'\n"
            f"{json.dumps(config)}\nEOF"
        )
        out = host.sh(
            "rm -rf /tmp/src && cp -r /src /tmp/src && rm -rf /tmp/src/.venv /tmp/src/build "
            "/tmp/src/*.egg-info && bash /tmp/src/scripts/install.sh",
            timeout=600,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        assert "keeping existing" in out.stderr

        # Type=notify: `systemctl restart` inside install.sh returned only after READY=1.
        state = host.show("ActiveState", "SubState", "StatusText", "NRestarts")
        assert (state["ActiveState"], state["SubState"]) == ("active", "running"), state
        assert "containers 1/1 running" in state["StatusText"]
        url = f"http://127.0.0.1:{port}"
        mode = host.ok("stat -c '%U %a' /var/lib/node-agent").split()
        assert mode == ["node-agent", "700"]

        # Reload with a job in flight: the job ends on v1, then the container is v2.
        status, body = http(
            "POST", f"{url}/api/jobs", {"containers": [svc["id"]], "data": {"sleep": 3}}
        )
        assert status == 200, body
        first = body["id"]
        host.ok('sed -i \'s/"VERSION": "v1"/"VERSION": "v2"/\' /etc/node-agent/config.yaml')
        host.ok("systemctl reload node-agent")  # returns after RELOADING=1 … READY=1
        status, body = http("POST", f"{url}/api/jobs", {"containers": [svc["id"]], "data": {}})
        second = body["id"]
        status, jobs = http("GET", f"{url}/api/jobs?id={first}&id={second}&wait=10", timeout=20)
        versions = [j["result"]["output"]["version"] for j in jobs if j["status"] == "success"]
        assert versions == ["v1", "v2"], jobs

        # Stop drains: the running job finishes, a new one is refused, exit status 0.
        status, body = http(
            "POST", f"{url}/api/jobs", {"containers": [svc["id"]], "data": {"sleep": 3}}
        )
        draining = body["id"]
        stop = subprocess.Popen(["docker", "exec", host.name, "systemctl", "stop", "node-agent"])
        time.sleep(1.0)
        status, body = http("POST", f"{url}/api/jobs", {"containers": [svc["id"]], "data": {}})
        assert (status, body["error"]) == (503, "Node is shutting down")
        assert stop.wait(timeout=120) == 0
        state = host.show("ActiveState", "Result", "ExecMainStatus")
        assert state == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}

        # The watchdog: a frozen agent (SIGSTOP) is killed and restarted by systemd.
        host.ok(
            "mkdir -p /etc/systemd/system/node-agent.service.d"
            " && printf '[Service]\\nWatchdogSec=3s\\n'"
            " > /etc/systemd/system/node-agent.service.d/test.conf"
            " && systemctl daemon-reload && systemctl start node-agent"
        )
        status, jobs = http("GET", f"{url}/api/jobs?id={draining}")
        assert jobs[0]["status"] == "success", jobs  # finished during the drain, kept in state
        frozen = host.show("MainPID")["MainPID"]
        host.ok(f"kill -STOP {frozen}")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = host.show("MainPID", "NRestarts", "ActiveState")
            if state["NRestarts"] == "1" and state["ActiveState"] == "active":
                break
            time.sleep(0.5)
        assert state["NRestarts"] == "1" and state["MainPID"] != frozen, state
        journal = host.ok("journalctl -u node-agent -o cat --no-pager")
        assert "Watchdog timeout" in journal

        host.ok("bash /tmp/src/scripts/uninstall.sh --purge")
        assert host.sh("systemctl cat node-agent").returncode != 0
    finally:
        docker("rm", "-f", str(svc["id"]))
