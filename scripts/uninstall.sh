#!/usr/bin/env bash
# Remove what scripts/install.sh installed (see docs/systemd.md).
#
#   sudo scripts/uninstall.sh [--purge] [--root DIR]
#
# Stops and disables the unit, removes the unit, sysusers.d and tmpfiles.d files and
# /opt/node-agent. Config, credentials, state (jobs DB, chain journal, node identity), logs and
# the node-agent user stay, so a reinstall picks up where it left off; --purge removes them too.
set -euo pipefail

ROOT="${DESTDIR:-}"
PURGE=0

log() { printf '[uninstall] %s\n' "$*" >&2; }
usage() { sed -n '2,8s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
        --root=*) ROOT="${1#*=}"; shift ;;
        --purge) PURGE=1; shift ;;
        -h|--help) usage 0 ;;
        *) log "unknown argument: $1"; usage 2 ;;
    esac
done
ROOT="${ROOT%/}"
[ "$(id -u)" -eq 0 ] || { log "error: run as root (sudo $0)"; exit 1; }
if [ -n "$ROOT" ]; then
    [ -d "$ROOT" ] || { log "error: no such root: $ROOT"; exit 1; }
    ROOT="$(cd "$ROOT" && pwd)"
fi

if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then
    # stop drains in-flight jobs first (TimeoutStopSec in the unit).
    systemctl disable --now node-agent.service 2>/dev/null || true
elif [ -z "$ROOT" ]; then
    log "systemd is not running as PID 1 here; skipping systemctl"
fi

rm -f "$ROOT/usr/local/lib/systemd/system/node-agent.service" \
    "$ROOT/usr/local/lib/sysusers.d/node-agent.conf" \
    "$ROOT/usr/local/lib/tmpfiles.d/node-agent.conf"
rm -rf "$ROOT/opt/node-agent"

if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl reset-failed node-agent.service 2>/dev/null || true
fi

if [ "$PURGE" -eq 1 ]; then
    rm -rf "$ROOT/etc/node-agent" "$ROOT/var/lib/node-agent" "$ROOT/var/log/node-agent"
    if grep -q '^node-agent:' "$ROOT/etc/passwd" 2>/dev/null; then
        userdel ${ROOT:+--root "$ROOT"} node-agent
    fi
    # userdel leaves the group when other members remain; the docker/video/render groups stay.
    if grep -q '^node-agent:' "$ROOT/etc/group" 2>/dev/null; then
        groupdel ${ROOT:+--root "$ROOT"} node-agent
    fi
    log "purged config, credentials, state, logs and the node-agent user"
else
    log "kept $ROOT/etc/node-agent, $ROOT/var/lib/node-agent, $ROOT/var/log/node-agent and" \
        "the node-agent user (--purge removes them)"
fi
