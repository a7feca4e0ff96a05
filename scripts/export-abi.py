#!/usr/bin/env python3
"""Export the ABIs the node needs from forge artifacts into ``node_agent/abi/*.json``, and the
ABI + creation bytecode ``python -m node_agent.chain.deploy`` deploys into
``node_agent/abi/deploy/*.json`` (so deployment works from an installed wheel, without forge).

    python scripts/export-abi.py            # forge build, then (re)write node_agent/abi/
    python scripts/export-abi.py --check    # forge build, exit 1 if the committed JSON drifted

``Errors.json`` gathers every custom error declared under ``contracts/src`` so the node can map a
revert selector to a name whichever contract raised it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from node_agent.chain.tools import build_contracts  # noqa: E402

ABI_DIR = REPO_ROOT / "node_agent" / "abi"

# exported name -> (source file, contract name)
EXPORTS: dict[str, tuple[str, str]] = {
    "Coordinator": ("Coordinator.sol", "Coordinator"),
    "Inbox": ("Inbox.sol", "Inbox"),
    "Reader": ("Reader.sol", "Reader"),
    "Registry": ("Registry.sol", "Registry"),
    "Consumer": ("IConsumer.sol", "IConsumer"),
    "Delegator": ("IConsumer.sol", "IDelegator"),
    # payments (created by the Coordinator; node and consumers call them)
    "Wallet": ("Wallet.sol", "Wallet"),
    "WalletFactory": ("WalletFactory.sol", "WalletFactory"),
    "Fee": ("Fee.sol", "Fee"),
    "Verifier": ("IVerifier.sol", "IVerifier"),
    "ERC20": ("IERC20.sol", "IERC20"),
}

# Contracts the deploy module creates: the core set (the Coordinator creates Inbox, Fee and
# WalletFactory itself), the example consumers, and the example verifiers and token for paid demos.
DEPLOYED = (
    "Coordinator",
    "Reader",
    "Registry",
    "ExampleSubscriptionConsumer",
    "ExampleCallbackConsumer",
    "ExampleDelegatorConsumer",
    "ExampleAtomicVerifier",
    "ExampleOptimisticVerifier",
    "ExampleToken",
)


def _dump(abi: list[dict[str, Any]]) -> str:
    return json.dumps(abi, indent=2, sort_keys=True) + "\n"


def _load(out_dir: Path, source: str, contract: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out_dir / source / f"{contract}.json").read_text())
    return data


def _all_errors(out_dir: Path) -> list[dict[str, Any]]:
    errors: dict[str, dict[str, Any]] = {}
    for path in sorted(out_dir.glob("*.sol/*.json")):
        data = json.loads(path.read_text())
        targets = data.get("metadata", {}).get("settings", {}).get("compilationTarget", {})
        if not any(str(src).startswith("src/") for src in targets):
            continue
        for entry in data["abi"]:
            if entry["type"] == "error":
                types = ",".join(i["type"] for i in entry["inputs"])
                errors[f"{entry['name']}({types})"] = entry
    return [errors[key] for key in sorted(errors)]


def render(out_dir: Path) -> dict[str, str]:
    """File name (relative to node_agent/abi/) -> content."""
    files = {
        f"{name}.json": _dump(_load(out_dir, source, contract)["abi"])
        for name, (source, contract) in EXPORTS.items()
    }
    files["Errors.json"] = _dump(_all_errors(out_dir))
    for name in DEPLOYED:
        data = _load(out_dir, f"{name}.sol", name)
        artifact = {"abi": data["abi"], "bytecode": data["bytecode"]["object"]}
        files[f"deploy/{name}.json"] = json.dumps(artifact, sort_keys=True) + "\n"
    return files


def main() -> int:
    parser = argparse.ArgumentParser(description="export contract ABIs into node_agent/abi")
    parser.add_argument("--check", action="store_true", help="fail if committed ABIs drifted")
    parser.add_argument("--out-dir", type=Path, help="existing forge output (skips forge build)")
    args = parser.parse_args()
    files = render(args.out_dir or build_contracts())
    if args.check:
        drifted = [
            name
            for name, content in files.items()
            if not (ABI_DIR / name).is_file() or (ABI_DIR / name).read_text() != content
        ]
        if drifted:
            print(f"ABI drift in node_agent/abi: {', '.join(drifted)}", file=sys.stderr)
            print("run: python scripts/export-abi.py", file=sys.stderr)
            return 1
        print(f"node_agent/abi up to date ({len(files)} files)")
        return 0
    (ABI_DIR / "deploy").mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (ABI_DIR / name).write_text(content)
    print(f"wrote {len(files)} files to {ABI_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
