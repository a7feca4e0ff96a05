#!/usr/bin/env bash
# `make demo`: prepare this machine, start node-agent with the example containers, act as a
# client (job, chained job, batch, stream) and as an orchestrator (a workload: submit, logs
# live, callback, result), print what comes back, and stop cleanly. Then the
# on-chain part (scripts/demo_chain.py): a local anvil devnet with the contracts deployed, the
# node restarted with the chain enabled, a recurring and a delegated subscription fulfilled,
# the delivered outputs read back from the chain; then a paid subscription (the node's Wallet
# from `node-agent wallet create`, a consumer's funded Wallet, the node Wallet's balance printed
# per paid delivery, `node-agent wallet show` and `wallet withdraw`). DEMO_CHAIN=0 skips the
# on-chain part.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
log() { printf '\n[demo] %s\n' "$*" >&2; }

bash scripts/bootstrap.sh
bash scripts/setup-docker.sh
bash scripts/build-examples.sh echo transform
if [ "${DEMO_CHAIN:-1}" != 0 ]; then
    log "installing the chain toolchain (forge, anvil; npm, pinned)"
    bash scripts/setup-chain-tools.sh >/dev/null
fi

demo=.demo
rm -rf "$demo" && mkdir -p "$demo"
port=${DEMO_PORT:-4000}
cat >"$demo/config.yaml" <<YAML
server: {port: $port}
startup_wait: 30
runtime: {pull: false}
containers:
  - {id: demo-echo, image: "node-agent/echo:latest", port: 3101, description: "echoes its input"}
  - {id: demo-transform, image: "node-agent/transform:latest", port: 3102,
     description: "transforms its input"}
YAML

# The orchestrator's key for /v1/jobs (printed once; only its hash is stored).
created=$(.venv/bin/node-agent api-key create --state-dir "$demo/state" --name demo-orchestrator \
    2>/dev/null)
api_key=${created%%$'\n'*}

log "starting node-agent on port $port (log: $demo/agent.log)"
.venv/bin/node-agent run --config "$demo/config.yaml" --state-dir "$demo/state" \
    >"$demo/agent.log" 2>&1 &
agent=$!
cleanup() {
    if kill -0 "$agent" 2>/dev/null; then
        log "stopping node-agent (SIGTERM: drains running jobs, stops containers)"
        kill -TERM "$agent"
        wait "$agent" || true
    fi
}
trap cleanup EXIT

.venv/bin/python scripts/demo_client.py "http://127.0.0.1:$port"

log "a workload as an orchestrator sends it: submit, follow its logs live, callback, result"
.venv/bin/python scripts/demo_workload.py "http://127.0.0.1:$port" "$api_key"
cleanup  # the off-chain part is done; the chain part restarts the node with the chain enabled

if [ "${DEMO_CHAIN:-1}" != 0 ]; then
    log "on-chain part: anvil devnet, contracts, subscriptions (log: $demo/chain/agent.log)"
    .venv/bin/python scripts/demo_chain.py --config "$demo/config.yaml" --port "$port"
fi
log "demo finished"
