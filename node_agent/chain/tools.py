"""Locate the Foundry toolchain (forge, anvil, cast) and the contracts project.

The repo installs pinned binaries with npm (``scripts/setup-chain-tools.sh``) so tests, the demo and
CI work offline; a normal Foundry install on PATH works too. Order: env override (``FORGE``,
``ANVIL``, ``CAST``), ``contracts/node_modules``, then PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Literal

from node_agent.errors import ConfigError

Tool = Literal["forge", "anvil", "cast"]

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTRACTS_DIR = REPO_ROOT / "contracts"
SETUP_SCRIPT = REPO_ROOT / "scripts" / "setup-chain-tools.sh"


class ChainToolNotFound(ConfigError):
    """forge/anvil/cast is not installed where we look."""


def _candidates(tool: Tool) -> list[Path]:
    found: list[Path] = []
    override = os.environ.get(tool.upper())
    if override:
        found.append(Path(override))
    modules = CONTRACTS_DIR / "node_modules"
    found.extend(sorted(modules.glob(f"@foundry-rs/{tool}-*/bin/{tool}")))
    found.append(modules / ".bin" / tool)
    on_path = shutil.which(tool)
    if on_path:
        found.append(Path(on_path))
    return found


def find_tool(tool: Tool) -> Path:
    """Path of an executable ``tool``; raises ChainToolNotFound with the fix in ``params``."""
    for path in _candidates(tool):
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise ChainToolNotFound(
        f"{tool} not found",
        {"tool": tool, "hint": f"run {SETUP_SCRIPT} or install Foundry (foundryup)"},
    )


def ensure_chain_tools(timeout: float = 300.0) -> dict[str, Path]:
    """Install the npm toolchain if needed (idempotent, fast when present); return tool paths."""
    try:
        return {tool: find_tool(tool) for tool in ("forge", "anvil", "cast")}
    except ChainToolNotFound:
        subprocess.run(
            ["bash", str(SETUP_SCRIPT)], check=True, timeout=timeout, stdout=subprocess.DEVNULL
        )
        return {tool: find_tool(tool) for tool in ("forge", "anvil", "cast")}


def forge_env() -> dict[str, str]:
    """Environment for running forge in ``contracts/`` (uses the solcjs shim unless overridden)."""
    env = dict(os.environ)
    env.setdefault("FOUNDRY_SOLC", str(CONTRACTS_DIR / "tools" / "solc"))
    return env


def build_contracts(timeout: float = 300.0) -> Path:
    """``forge build`` the contracts (cached, ~1 s when unchanged); return the artifacts dir."""
    forge = ensure_chain_tools(timeout)["forge"]
    result = subprocess.run(
        [str(forge), "build"],
        cwd=CONTRACTS_DIR,
        env=forge_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise ConfigError("forge build failed", {"output": (result.stdout + result.stderr)[-4000:]})
    return CONTRACTS_DIR / "out"
