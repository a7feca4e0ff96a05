"""``node-agent version``: every probe answers, and one that fails does not hide the others."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from node_agent import __version__, version
from node_agent.cli import main
from tests.gpu.fake_nvml import FakeNvml, board


def test_version_names_the_agent_python_libraries_docker_and_the_missing_driver(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["version", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["node_agent"] == __version__
    assert found["python"] == ".".join(map(str, sys.version_info[:3]))
    assert all(found["libraries"][name] for name in ("aiohttp", "web3", "docker", "pydantic"))
    engine = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert found["docker"]["engine"] == engine and found["docker"]["api"]
    # no GPU on this machine: said, not raised
    assert "NVML" in found["nvidia"]["error"]
    assert main(["version"]) == 0
    screen = capsys.readouterr().out
    assert f"node-agent {__version__}" in screen and f"engine {engine}" in screen
    assert "no driver: " in screen
    assert main(["version", "--short"]) == 0
    assert capsys.readouterr().out.startswith(f"node-agent {__version__} (Infernet API")


def test_driver_and_cuda_versions_come_from_nvml() -> None:
    found = version.collect(nvml_library=FakeNvml([board("h100-sxm"), board("l4")], driver="570.1"))
    assert found["nvidia"]["driver"] == "570.1" and found["nvidia"]["gpus"] == 2
    assert found["nvidia"]["cuda"]
    assert "driver 570.1, CUDA" in version.render(found)


def test_an_unreachable_docker_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    found = version.collect()
    assert "error" in found["docker"]
    assert "docker     unavailable: " in version.render(found)
