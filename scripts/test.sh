#!/usr/bin/env bash
# The test command (`make test`, `.ci/run`): prepare the machine, lint, forge test, pytest last.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/bootstrap.sh
bash scripts/setup-docker.sh
bash scripts/build-examples.sh
# shellcheck disable=SC1091
source scripts/setup-chain-tools.sh >/dev/null   # forge/anvil/cast (npm) on PATH
if [ -f scripts/setup-test-deps.sh ]; then
    bash scripts/setup-test-deps.sh
fi
echo "[test] ruff + mypy" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy node_agent
echo "[test] contracts: forge build + forge test + ABI drift check" >&2
PATH="$root/.venv/bin:$PATH" bash scripts/ci-contracts.sh
echo "[test] pytest" >&2
exec .venv/bin/pytest -q "$@"
