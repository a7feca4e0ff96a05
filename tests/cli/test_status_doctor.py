"""``node-agent status`` and ``doctor`` through the CLI entry point, against a real agent and
this host's Docker (no GPU here: NVML must warn, not fail)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from pathlib import Path

import pytest

from node_agent.cli import main
from tests.support.agent import running_agent
from tests.support.net import free_port
from tests.workloads.support import make_key


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


async def cli(argv: list[str]) -> tuple[int, str, str]:
    """Off the loop: the CLI blocks on HTTP while the agent serves from this loop."""
    return await asyncio.to_thread(run_cli, argv)


def node(**extra: object) -> dict[str, object]:
    return {"manage_containers": False, "containers": [], "gpus": {"enabled": False}, **extra}


async def test_status_of_a_healthy_node_exits_0(tmp_path: Path) -> None:
    async with running_agent(node(), tmp_path / "state") as (_, url):
        code, out, err = await cli(["status", "--url", url])
        assert code == 0, (out, err)
        assert f"at {url}: healthy" in out
        assert "containers: none configured" in out and "chain: disabled" in out
        assert "grid: disabled" in out
        code, out, _ = await cli(["status", "--url", url, "--json"])
    assert code == 0
    doc = json.loads(out)
    assert doc["verdict"] == "healthy"
    assert doc["health"]["status"] == "healthy" and doc["info"]["agent_version"]


async def test_status_default_url_comes_from_the_config(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps(node(server={"port": port})))
    async with running_agent(node(server={"port": port}), tmp_path / "state"):
        code, out, err = await cli(["status", "--config", str(config)])
    assert code == 0, (out, err)
    assert f"127.0.0.1:{port}: healthy" in out


async def test_status_with_protected_info_needs_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = make_key("jobs:read")
    raw = node(api_keys={"keys": [key.entry()], "protect_info": True})
    monkeypatch.delenv("NODE_AGENT_API_KEY", raising=False)
    async with running_agent(raw, tmp_path / "state") as (_, url):
        code, out, _ = await cli(["status", "--url", url])
        assert "info: unavailable (HTTP 401" in out and "--key" in out
        assert code == 0  # the node is healthy; only the details are withheld
        code, out, _ = await cli(["status", "--url", url, "--key", key.token])
        assert code == 0 and "containers: none configured" in out
        assert key.token not in out
        monkeypatch.setenv("NODE_AGENT_API_KEY", key.token)
        code, out, _ = await cli(["status", "--url", url, "--json"])
    assert code == 0 and json.loads(out)["info"]["agent_version"]


def test_status_of_an_unreachable_node_exits_1_with_a_message() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = run_cli(["status", "--url", url])
    assert code == 1
    assert "unreachable" in out
    assert f"cannot reach the node at {url}" in err and "Traceback" not in err
    code, out, _ = run_cli(["status", "--url", url, "--json"])
    assert code == 1 and json.loads(out)["verdict"] == "unreachable"


def test_doctor_on_this_host_warns_about_the_gpu_and_passes(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"containers: []\nserver:\n  port: {free_port()}\n  prot: 1\n")
    argv = ["doctor", "--config", str(config), "--state-dir", str(tmp_path / "state")]
    code, out, err = run_cli([*argv, "--json"])
    assert code == 0, (out, err)
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert checks["config"]["status"] == "warn" and "server.prot" in checks["config"]["detail"]
    assert checks["docker"]["status"] == "ok"
    assert checks["nvml"]["status"] == "warn" and "no GPU" in checks["nvml"]["detail"]
    assert checks["api port"]["status"] == "ok"
    assert checks["disk (state dir)"]["status"] in ("ok", "warn")
    code, out, _ = run_cli(argv)
    assert code == 0 and "✓ docker: engine" in out and "! nvml: no GPU" in out


def test_doctor_fails_on_an_invalid_config_and_a_busy_port(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  port: 99999999\n")
    code, out, _ = run_cli(["doctor", "--config", str(bad), "--state-dir", str(tmp_path)])
    assert code == 1 and "✗ config:" in out


async def test_doctor_accepts_the_port_of_a_running_node_agent(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps(node(server={"port": port, "host": "127.0.0.1"})))
    raw = node(server={"port": port, "host": "127.0.0.1"})
    async with running_agent(raw, tmp_path / "state"):
        code, out, err = await cli(["doctor", "--config", str(config), "--json"])
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert checks["api port"]["status"] == "ok", checks["api port"]
    assert "running node-agent" in checks["api port"]["detail"]
    assert code == 0, (out, err)
