#!/usr/bin/env bash
# Installs the offline Ethereum toolchain for contracts/ (forge, anvil, cast 1.7.x and solcjs, pinned
# in contracts/package-lock.json) and reports where the binaries are.
#
#   bash scripts/setup-chain-tools.sh          # install if needed, print FORGE=... ANVIL=... CAST=...
#   eval "$(bash scripts/setup-chain-tools.sh)" # same, and export them in the calling shell
#   source scripts/setup-chain-tools.sh        # same, exports directly (and puts them on PATH)
#
# Idempotent and fast when nothing changed: npm runs only when the lock file differs from the
# one the current node_modules was installed from. Set CHAIN_TOOLS_FORCE=1 to reinstall.

_chain_tools_main() {
    local repo_root contracts stamp lock_hash platform_dir tool path
    repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    contracts="$repo_root/contracts"
    stamp="$contracts/node_modules/.node-agent-lock.sha256"
    lock_hash="$(sha256sum "$contracts/package-lock.json" | cut -d' ' -f1)"

    if [[ "${CHAIN_TOOLS_FORCE:-0}" == "1" || ! -f "$stamp" || "$(cat "$stamp")" != "$lock_hash" ]]; then
        command -v npm >/dev/null || { echo "setup-chain-tools: npm is required" >&2; return 1; }
        echo "setup-chain-tools: installing npm tools in $contracts" >&2
        # Not `npm ci`: registry mirrors may lack some per-platform optional packages, which the lock
        # then omits and `npm ci` rejects. `install --no-save` honours the lock and never rewrites it.
        (cd "$contracts" && npm install --no-save --no-audit --no-fund --loglevel=error >&2)
        echo "$lock_hash" >"$stamp"
    fi

    for tool in forge anvil cast; do
        # Prefer the native binary from the platform package (skips the node wrapper's start-up).
        path="$(ls -1 "$contracts"/node_modules/@foundry-rs/"$tool"-*/bin/"$tool" 2>/dev/null | head -n1 || true)"
        [[ -x "$path" ]] || path="$contracts/node_modules/.bin/$tool"
        [[ -x "$path" ]] || { echo "setup-chain-tools: $tool not found after install" >&2; return 1; }
        printf -v "${tool^^}" '%s' "$path"
    done
    export FORGE ANVIL CAST
    export FOUNDRY_SOLC="$contracts/tools/solc"
    printf 'FORGE=%q\nANVIL=%q\nCAST=%q\nFOUNDRY_SOLC=%q\n' "$FORGE" "$ANVIL" "$CAST" "$FOUNDRY_SOLC"
    export PATH="$(dirname "$FORGE"):$(dirname "$ANVIL"):$(dirname "$CAST"):$PATH"
}

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then
    # Sourced: export into the caller and give it back its own shell options exactly (turning
    # errexit off here once let every later lint failure of scripts/test.sh pass unnoticed).
    # (Read from $- and shopt, not "$(set +o)": a command substitution drops errexit.)
    _chain_tools_options=""
    [[ $- == *e* ]] && _chain_tools_options+=" -e"
    [[ $- == *u* ]] && _chain_tools_options+=" -u"
    shopt -qo pipefail && _chain_tools_options+=" -o pipefail"
    set +eu +o pipefail
    _chain_tools_main >/dev/null
    _chain_tools_status=$?
    # shellcheck disable=SC2086
    [[ -n "$_chain_tools_options" ]] && set $_chain_tools_options
    unset _chain_tools_options
    if [[ $_chain_tools_status -ne 0 ]]; then
        echo "setup-chain-tools: failed (status $_chain_tools_status)" >&2
        return "$_chain_tools_status"
    fi
    unset _chain_tools_status
else
    set -euo pipefail
    _chain_tools_main
fi
