"""The built wheel is complete: licence metadata, declared dependencies, and a deploy that
works from an installed package (no checkout, no forge) against a real anvil."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from node_agent.chain.devnet import DEPLOYER_KEY, Anvil

pytestmark = pytest.mark.chain

REPO = Path(__file__).resolve().parents[2]
# Imported by node_agent but not pulled in by an undeclared path: each must be a Requires-Dist.
IMPORTED = ("aiohttp", "yarl", "web3", "eth-abi", "eth-utils", "eth-keys", "hexbytes")


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy of the project files, so nothing is written into the checkout."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(
        REPO / "node_agent", src / "node_agent", ignore=shutil.ignore_patterns("__pycache__")
    )
    dist = tmp_path_factory.mktemp("dist")
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--wheel-dir",
        dist,
        src,
        cwd=src,
    )
    (built,) = dist.glob("node_agent-*.whl")
    return built


def test_wheel_metadata_has_spdx_licence_and_every_imported_dependency(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        metadata = archive.read(metadata_name).decode()
    assert "License-Expression: Apache-2.0" in metadata
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    requires = [
        line.split(":", 1)[1].strip().lower().replace("_", "-")
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    for package in IMPORTED:
        (spec,) = [r for r in requires if re.split(r"[<>=!~ ;\[]", r)[0] == package]
        assert ">=" in spec and "<" in spec, spec  # bounded on both sides
    deploy_files = {n.rsplit("/", 1)[1] for n in names if "/abi/deploy/" in n}
    assert {"Coordinator.json", "Reader.json", "Registry.json"} <= deploy_files
    # the status page is served from package data: no checkout, no CDN
    static_files = {n.rsplit("/", 1)[1] for n in names if "/ui/static/" in n}
    assert {"index.html", "app.js", "app.css"} <= static_files, static_files


def test_deploy_runs_from_the_installed_wheel(wheel: Path, anvil: Anvil, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(
        sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", wheel, cwd=tmp_path
    )
    # Dependencies from the test venv (its site dir holds node-agent only as an editable
    # finder, which a PYTHONPATH entry does not activate); the package from the wheel.
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": sysconfig.get_paths()["purelib"],
        "DEPLOYER_PRIVATE_KEY": DEPLOYER_KEY,
    }
    where = run(
        python,
        "-c",
        "import node_agent.chain.deploy as d; print(d.__file__); print(d.in_checkout())",
        cwd=tmp_path,
        env=env,
    ).split()
    assert where[0].startswith(str(venv)), where
    assert where[1] == "False"

    out = tmp_path / "deployment.json"
    run(
        python,
        "-m",
        "node_agent.chain.deploy",
        "--rpc-url",
        anvil.url,
        "--examples",
        "--out",
        out,
        cwd=tmp_path,
        env=env,
    )
    deployed = json.loads(out.read_text())
    addresses = [deployed[k] for k in ("coordinator", "inbox", "reader", "registry")]
    addresses += list(deployed["examples"].values())
    for address in addresses:
        assert anvil.rpc("eth_getCode", [address, "latest"]) not in ("0x", "", None), address
