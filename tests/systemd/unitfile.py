"""Reading the shipped systemd files and running systemd's own offline checkers on them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SYSTEMD_DIR = REPO / "systemd"
UNIT = SYSTEMD_DIR / "node-agent.service"
SYSUSERS = SYSTEMD_DIR / "node-agent.sysusers"
TMPFILES = SYSTEMD_DIR / "node-agent.tmpfiles"
EXEC_START = "/opt/node-agent/venv/bin/node-agent"


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed: run scripts/setup-systemd-tools.sh")
    return path


def run_tool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=60, check=False
    )


def unit_settings(text: str) -> list[tuple[str, str, str]]:
    """``(section, key, value)`` for every assignment, repeated keys kept in order."""
    settings = []
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        settings.append((section, key.strip(), value.strip()))
    return settings


def values(text: str, section: str, key: str) -> list[str]:
    return [v for s, k, v in unit_settings(text) if s == section and k == key]


def seconds(value: str) -> float:
    """systemd time spans as used in the unit: ``90s``, ``10min``, ``15min``, ``30``."""
    for suffix, factor in (("min", 60.0), ("ms", 0.001), ("s", 1.0), ("h", 3600.0)):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)


def verifiable_copy(directory: Path, text: str | None = None) -> Path:
    """The unit with ``ExecStart`` pointing at a real executable, as ``verify`` requires.

    Only the binary's path changes; every other line is checked as shipped.
    """
    text = UNIT.read_text() if text is None else text
    assert text.count(EXEC_START) == 1
    stub = directory / "bin" / "node-agent"
    stub.parent.mkdir(parents=True, exist_ok=True)
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    copy = directory / "node-agent.service"
    copy.write_text(text.replace(EXEC_START, str(stub)))
    return copy
