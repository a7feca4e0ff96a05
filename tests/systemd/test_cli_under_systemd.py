"""What the unit assumes about `node-agent run`: exit status on a bad config, credentials from
$CREDENTIALS_DIRECTORY, state in $STATE_DIRECTORY."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.systemd.unitfile import UNIT, values


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("CREDENTIALS_DIRECTORY",)}
    return subprocess.run(
        [sys.executable, "-m", "node_agent.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**base, **(env or {})},
    )


def test_invalid_config_exit_status_stops_restarts(tmp_path: Path) -> None:
    """systemd must not restart-loop on a config that cannot work: the unit names its status."""
    config = tmp_path / "config.yaml"
    config.write_text("containers: [{id: 'no spaces allowed', image: x}]\n")
    result = cli("run", "--config", str(config), "--state-dir", str(tmp_path / "state"))
    assert result.returncode != 0
    prevent = " ".join(values(UNIT.read_text(), "Service", "RestartPreventExitStatus")).split()
    assert str(result.returncode) in prevent
    assert "containers.0.id" in result.stderr


def test_secrets_come_from_the_credentials_directory(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "containers:\n"
        "  - id: svc\n"
        "    image: node-agent-test/slow:latest\n"
        "    bearer: {credential: api-keys}\n"
    )
    missing = cli("check-config", "--config", str(config))
    assert missing.returncode == 2
    assert "CREDENTIALS_DIRECTORY is not set" in missing.stderr

    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    (credentials / "api-keys").write_text("s3cret-token\n")
    found = cli(
        "check-config", "--config", str(config), env={"CREDENTIALS_DIRECTORY": str(credentials)}
    )
    assert found.returncode == 0, found.stderr
    assert "s3cret-token" not in found.stdout + found.stderr
