"""A reload (SIGHUP) applies workload limits and callback settings live; switching workloads
on or off waits for a restart."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
import yaml

from node_agent.config import load_config
from node_agent.daemon import Daemon
from tests.support.net import free_port
from tests.workloads.support import draft, make_key, node_config

pytestmark = pytest.mark.docker


async def test_reload_applies_workload_limits(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    key = make_key()
    raw = node_config([key])
    raw["server"] = {"port": free_port(), "rate_limit_enabled": False}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    daemon = Daemon(load_config(path), tmp_path / "state", config_path=path)
    await daemon.start()
    try:
        url = f"http://127.0.0.1:{daemon.port}"
        raw["workloads"] = {
            **raw["workloads"],
            "allowed_images": ["ghcr.io/acme/*"],
            "callbacks": {"max_attempts": 3},
            "enabled": False,
        }
        path.write_text(yaml.safe_dump(raw))
        assert await daemon.reload()
        assert daemon.workloads.deliverer.settings.max_attempts == 3
        assert "workloads.enabled" in daemon.restart_pending
        async with http.post(f"{url}/v1/jobs", json=draft("true"), headers=key.headers) as r:
            assert r.status == 403  # the new allowed_images is in force at once
            assert (await r.json())["params"]["allowed"] == ["ghcr.io/acme/*"]
    finally:
        await daemon.stop()
