"""scripts/install.sh and uninstall.sh into a temporary root: real sysusers, venv, pip, files."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from node_agent.config import load_config
from tests.systemd.unitfile import REPO, require_tool

INSTALL = REPO / "scripts" / "install.sh"
UNINSTALL = REPO / "scripts" / "uninstall.sh"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="install.sh runs as root")


def run_script(script: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def gid_of(root: Path, group: str) -> int:
    for line in (root / "etc" / "group").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == group:
            return int(fields[2])
    raise AssertionError(f"no group {group} in {root}/etc/group")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    require_tool("systemd-sysusers")
    root = tmp_path_factory.mktemp("root")
    result = run_script(INSTALL, "--root", root)
    assert result.returncode == 0, result.stderr
    assert "not calling systemctl" in result.stderr
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_files_land_with_their_modes(installed: Path) -> None:
    root = installed
    for unit_file in (
        "usr/local/lib/systemd/system/node-agent.service",
        "usr/local/lib/sysusers.d/node-agent.conf",
        "usr/local/lib/tmpfiles.d/node-agent.conf",
    ):
        assert mode(root / unit_file) == 0o644, unit_file
    assert (root / "usr/local/lib/systemd/system/node-agent.service").read_bytes() == (
        REPO / "systemd" / "node-agent.service"
    ).read_bytes()

    etc = root / "etc" / "node-agent"
    assert mode(etc) == 0o755
    config = etc / "config.yaml"
    assert mode(config) == 0o640
    assert (config.stat().st_uid, config.stat().st_gid) == (0, gid_of(root, "node-agent"))
    credentials = etc / "credentials"
    assert mode(credentials) == 0o700
    assert credentials.stat().st_uid == 0
    for name in ("wallet-key", "orchestrator-key", "api-keys"):
        secret = credentials / name
        assert mode(secret) == 0o600, name
        assert (secret.stat().st_uid, secret.stat().st_gid) == (0, 0)

    # The venv's entry point runs, and accepts the config install.sh placed.
    agent = root / "opt" / "node-agent" / "venv" / "bin" / "node-agent"
    for args in (["version"], ["check-config", "--config", str(config)]):
        check = subprocess.run(
            [agent, *args], capture_output=True, text=True, timeout=60, check=False
        )
        assert check.returncode == 0, check.stderr
    assert any(
        line.startswith("node-agent:") for line in (root / "etc" / "passwd").read_text().split()
    )
    # Installed from the wheel install.sh built (not from the checkout), package data included.
    venv = root / "opt" / "node-agent" / "venv"
    (dist_info,) = venv.glob("lib/python3*/site-packages/node_agent-*.dist-info")
    assert (dist_info / "direct_url.json").read_text().count(".whl") == 1
    (package,) = venv.glob("lib/python3*/site-packages/node_agent")
    assert (package / "abi" / "Coordinator.json").is_file()


def test_installed_config_runs_no_image_nobody_named(installed: Path) -> None:
    """Issue 16 item 13: no container image (once node-agent/echo:latest, pulled from a
    namespace nobody here owns), no workload image allowed, the API on loopback, node details
    behind a key. The full example is there for reference only."""
    etc = installed / "etc" / "node-agent"
    config = load_config(etc / "config.yaml")
    assert config.containers == ()
    assert config.workloads.allowed_images == ()
    assert config.server.host == "127.0.0.1"
    assert config.api_keys.protect_info
    assert "image:" not in "".join(
        line.split("#")[0] for line in (etc / "config.yaml").read_text().splitlines()
    )
    assert mode(etc / "config.example.yaml") == 0o644


def test_rerun_is_idempotent_and_keeps_config_and_secrets(installed: Path) -> None:
    root = installed
    config = root / "etc/node-agent/config.yaml"
    secret = root / "etc/node-agent/credentials/wallet-key"
    config.write_text("server:\n  port: 4100\n")
    secret.write_text("0x" + "11" * 32)
    passwd_before = (root / "etc/passwd").read_text()

    result = run_script(INSTALL, "--root", root)

    assert result.returncode == 0, result.stderr
    assert "keeping existing" in result.stderr
    assert config.read_text() == "server:\n  port: 4100\n"
    assert secret.read_text() == "0x" + "11" * 32
    assert mode(secret) == 0o600
    assert (root / "etc/passwd").read_text() == passwd_before


def test_uninstall_keeps_state_unless_purged(installed: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(installed, root, symlinks=True)
    state = root / "var/lib/node-agent"
    state.mkdir(parents=True)
    (state / "jobs.sqlite3").write_bytes(b"jobs")

    kept = run_script(UNINSTALL, "--root", root)

    assert kept.returncode == 0, kept.stderr
    assert not (root / "opt/node-agent").exists()
    assert not (root / "usr/local/lib/systemd/system/node-agent.service").exists()
    assert not (root / "usr/local/lib/sysusers.d/node-agent.conf").exists()
    assert not (root / "usr/local/lib/tmpfiles.d/node-agent.conf").exists()
    assert (state / "jobs.sqlite3").read_bytes() == b"jobs"
    assert (root / "etc/node-agent/config.yaml").exists()
    assert (root / "etc/node-agent/credentials/wallet-key").exists()
    assert "node-agent:" in (root / "etc/passwd").read_text()

    again = run_script(UNINSTALL, "--root", root)  # nothing left to remove: still fine
    assert again.returncode == 0, again.stderr

    purged = run_script(UNINSTALL, "--root", root, "--purge")

    assert purged.returncode == 0, purged.stderr
    assert not (root / "etc/node-agent").exists()
    assert not state.exists()
    assert "node-agent:" not in (root / "etc/passwd").read_text()
    assert "\nnode-agent:" not in "\n" + (root / "etc/group").read_text()
    assert "docker:" in (root / "etc/group").read_text()  # shared groups stay


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    unknown = run_script(INSTALL, "--root", tmp_path, "--frobnicate")
    assert unknown.returncode == 2
    assert "unknown argument: --frobnicate" in unknown.stderr
    missing = run_script(INSTALL, "--root", tmp_path, "--wheel", tmp_path / "nope.whl")
    assert missing.returncode != 0
    assert "no such wheel" in missing.stderr
