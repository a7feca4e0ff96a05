#!/usr/bin/env bash
# Contracts leg of CI: install the npm toolchain, build, run the forge suite, check the shipped ABIs.
# Run it before pytest so pytest's summary line stays the last one.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
eval "$(bash "$repo_root/scripts/setup-chain-tools.sh")"
cd "$repo_root/contracts"
"$FORGE" build
"$FORGE" test
python3 "$repo_root/scripts/export-abi.py" --check
