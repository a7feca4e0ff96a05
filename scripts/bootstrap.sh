#!/usr/bin/env bash
# Create .venv and install node-agent with its dev tools. Idempotent and quick when done.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "[bootstrap] creating .venv" >&2
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.node-agent-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
    echo "[bootstrap] installing node-agent and dev tools into .venv" >&2
    .venv/bin/pip install -q --upgrade pip >/dev/null
    # The exact versions CI tests (constraints.txt), not whatever resolves today.
    .venv/bin/pip install -q -c constraints.txt -e '.[dev]'
    touch "$stamp"
fi
