"""The unit, sysusers.d and tmpfiles.d files, checked by systemd's own offline tools."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

from node_agent.config import AgentConfig, ServerConfig
from tests.systemd.unitfile import (
    EXEC_START,
    SYSUSERS,
    TMPFILES,
    UNIT,
    require_tool,
    run_tool,
    seconds,
    values,
    verifiable_copy,
)

# Exposure is 1.7 with systemd 252. The allowance of 2.0 absorbs a newer systemd re-weighting
# its checks; dropping any one of the heavier protections (ProtectSystem, PrivateTmp,
# NoNewPrivileges: 1.9; RestrictNamespaces: 2.4; the syscall filter: 3.3; the capability
# bounding set: 3.7) still shows up in test_only_deliberate_exposures.
MAX_EXPOSURE = 2.0

# What stays exposed on purpose, by systemd-analyze's json_field name.
DELIBERATE_EXPOSURES = {
    "PrivateNetwork",  # it serves the API and reaches RPC nodes and the orchestrator
    "RestrictAddressFamilies_AF_INET_INET6",  # same
    "IPAddressDeny",  # clients and RPC endpoints can be anywhere
    "RestrictAddressFamilies_AF_UNIX",  # Docker socket, notify socket
    "RestrictAddressFamilies_AF_NETLINK",  # glibc getaddrinfo(AI_ADDRCONFIG) asks the kernel
    "PrivateDevices",  # would hide /dev/nvidia*; DevicePolicy=closed + DeviceAllow instead
    "DeviceAllow",  # the NVIDIA nodes NVML opens
    "SupplementaryGroups",  # docker (socket), video/render (GPU nodes)
    "PrivateUsers",  # would unmap the docker group and lose the socket
    "ProtectProc",  # NVML process PIDs are mapped to containers through /proc/<pid>/cgroup
    "ProcSubset",  # NVML reads /proc/driver/nvidia
    "MemoryDenyWriteExecute",  # ctypes/libffi and vendor libraries may need W+X pages
    "RootDirectoryOrRootImage",  # runs from the host's /opt venv and driver libraries
    # setpriority only, re-allowed: the chain process lowers its own CPU priority (raising it
    # needs CAP_SYS_NICE, which the unit does not grant)
    "SystemCallFilter_resources",
}


def test_verify_prints_nothing(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze")
    result = run_tool(analyze, "verify", "--man=no", verifiable_copy(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    assert result.stdout == ""


def test_verify_check_catches_a_typo(tmp_path: Path) -> None:
    """The check above can fail: verify exits 0 on an unknown key but says so on stderr."""
    analyze = require_tool("systemd-analyze")
    broken = UNIT.read_text().replace("WatchdogSec=", "WatchdogSecs=")
    result = run_tool(analyze, "verify", "--man=no", verifiable_copy(tmp_path, broken))
    assert "WatchdogSecs" in result.stderr


def test_verify_needs_the_real_binary(tmp_path: Path) -> None:
    """Why the copy: the shipped ExecStart only exists after install.sh."""
    analyze = require_tool("systemd-analyze")
    text = UNIT.read_text().replace(EXEC_START, str(tmp_path / "missing" / "node-agent"))
    (tmp_path / "node-agent.service").write_text(text)
    result = run_tool(analyze, "verify", "--man=no", tmp_path / "node-agent.service")
    assert result.returncode != 0
    assert "is not executable" in result.stderr


def _exposure(tmp_path: Path) -> tuple[float, list[dict[str, object]]]:
    analyze = require_tool("systemd-analyze")
    unit = verifiable_copy(tmp_path)
    text = run_tool(analyze, "security", "--offline=true", unit)
    assert text.returncode == 0, text.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", text.stdout)
    assert match, text.stdout
    gated = run_tool(
        analyze, "security", "--offline=true", f"--threshold={int(MAX_EXPOSURE * 10)}", unit
    )
    assert gated.returncode == 0, f"exposure {match.group(1)} over {MAX_EXPOSURE}"
    checks = json.loads(
        run_tool(analyze, "security", "--offline=true", "--json=short", unit).stdout
    )
    return float(match.group(1)), checks


def test_security_exposure_under_threshold(tmp_path: Path) -> None:
    score, _ = _exposure(tmp_path)
    assert score <= MAX_EXPOSURE


def test_only_deliberate_exposures(tmp_path: Path) -> None:
    _, checks = _exposure(tmp_path)
    exposed = {str(c["json_field"]) for c in checks if c.get("exposure") not in (None, "0.0")}
    assert exposed <= DELIBERATE_EXPOSURES, exposed - DELIBERATE_EXPOSURES


def test_service_settings_the_agent_relies_on() -> None:
    text = UNIT.read_text()
    assert values(text, "Service", "Type") == ["notify"]
    assert values(text, "Service", "NotifyAccess") == ["main"]
    assert values(text, "Service", "ExecStart") == [
        f"{EXEC_START} run --config /etc/node-agent/config.yaml"
    ]
    assert values(text, "Service", "ExecReload") == ["/bin/kill -HUP $MAINPID"]
    assert values(text, "Service", "Restart") == ["on-failure"]
    # an OOM-killed chain process is the agent's to start again, not a reason to stop the node
    assert values(text, "Service", "OOMPolicy") == ["continue"]
    assert values(text, "Service", "StateDirectory") == ["node-agent"]
    assert values(text, "Service", "ConfigurationDirectory") == ["node-agent"]
    assert values(text, "Service", "User") == ["node-agent"]
    groups = " ".join(values(text, "Service", "SupplementaryGroups")).split()
    assert {"docker", "video", "render"} <= set(groups)
    # PrivateDevices= would hide /dev/nvidia*: never set it.
    assert values(text, "Service", "PrivateDevices") == []
    assert values(text, "Service", "DevicePolicy") == ["closed"]
    credentials = [v.split(":", 1)[0] for v in values(text, "Service", "LoadCredential")]
    assert credentials == ["wallet-key", "orchestrator-key", "api-keys"]
    # The watchdog must leave room for pings at half the interval.
    assert seconds(values(text, "Service", "WatchdogSec")[0]) >= 10
    # Room for server.max_connections (default 1000) above the agent's own descriptors.
    max_connections = ServerConfig.model_fields["max_connections"].default
    assert int(values(text, "Service", "LimitNOFILE")[0]) >= 4 * max_connections


def test_stop_timeout_covers_the_drain() -> None:
    """SIGKILL must not arrive before the agent's own grace period has run out."""
    stop = seconds(values(UNIT.read_text(), "Service", "TimeoutStopSec")[0])
    grace = AgentConfig().shutdown_grace
    assert stop >= grace + 30


def test_sysusers_creates_the_account(tmp_path: Path) -> None:
    sysusers = require_tool("systemd-sysusers")
    (tmp_path / "etc").mkdir()
    for _ in range(2):  # idempotent
        result = run_tool(sysusers, f"--root={tmp_path}", SYSUSERS)
        assert result.returncode == 0, result.stderr
    passwd = (tmp_path / "etc" / "passwd").read_text().splitlines()
    [entry] = [line for line in passwd if line.startswith("node-agent:")]
    _, _, uid, _, _, home, shell = entry.split(":")
    assert int(uid) < 1000  # a system account
    assert (home, shell) == ("/var/lib/node-agent", "/usr/sbin/nologin")
    groups = {line.split(":")[0] for line in (tmp_path / "etc" / "group").read_text().splitlines()}
    assert {"node-agent", "docker", "video", "render"} <= groups


def test_tmpfiles_make_credentials_root_only(tmp_path: Path) -> None:
    tmpfiles = require_tool("systemd-tmpfiles")
    result = run_tool(tmpfiles, f"--root={tmp_path}", "--create", TMPFILES)
    assert result.returncode == 0, result.stderr
    credentials = (tmp_path / "etc" / "node-agent" / "credentials").stat()
    assert stat.S_IMODE(credentials.st_mode) == 0o700
    assert (credentials.st_uid, credentials.st_gid) == (0, 0)
    assert stat.S_IMODE((tmp_path / "etc" / "node-agent").stat().st_mode) == 0o755
