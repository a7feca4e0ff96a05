#!/usr/bin/env bash
# The test command (`make test`, `.ci/run`): prepare the machine, lint, forge test, pytest last.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/bootstrap.sh
bash scripts/setup-docker.sh
bash scripts/build-examples.sh
if [ -f scripts/setup-chain-tools.sh ]; then
    # shellcheck disable=SC1091
    source scripts/setup-chain-tools.sh
fi
if [ -f scripts/setup-test-deps.sh ]; then
    bash scripts/setup-test-deps.sh
fi
echo "[test] ruff + mypy" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy node_agent
if [ -f scripts/export-abi.py ] && [ -d contracts ]; then
    echo "[test] ABI drift check + forge test" >&2
    .venv/bin/python scripts/export-abi.py --check
    (cd contracts && forge test)
fi
echo "[test] pytest" >&2
exec .venv/bin/pytest -q "$@"
