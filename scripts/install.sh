#!/usr/bin/env bash
# Install node-agent as a systemd service on a Debian/Ubuntu GPU host (see docs/systemd.md).
#
#   sudo scripts/install.sh [--wheel FILE] [--no-start] [--root DIR]
#
# Creates the node-agent user (sysusers.d), a virtual environment in /opt/node-agent/venv with
# the package (a wheel built from this checkout, or --wheel FILE; dependencies pinned by
# constraints.txt), /etc/node-agent/config.yaml (secure defaults, only if absent), the root-only
# credentials directory, and the unit; then enables and starts it. Idempotent: a re-run upgrades
# the package and unit files and leaves config and credentials alone.
#
# --root DIR installs into DIR instead of / (staging and tests): users go into DIR/etc/passwd and
# no systemctl call is made. systemctl is also skipped when systemd is not PID 1 (containers, CI).
set -euo pipefail

SRC_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT="${DESTDIR:-}"
WHEEL=""
START=1
PYTHON="${PYTHON:-python3}"
CREDENTIALS=(wallet-key orchestrator-key api-keys)

log() { printf '[install] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { sed -n '2,12s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
        --root=*) ROOT="${1#*=}"; shift ;;
        --wheel) WHEEL="${2:?--wheel needs a file}"; shift 2 ;;
        --wheel=*) WHEEL="${1#*=}"; shift ;;
        --no-start) START=0; shift ;;
        -h|--help) usage 0 ;;
        *) log "unknown argument: $1"; usage 2 ;;
    esac
done
ROOT="${ROOT%/}"
[ "$(id -u)" -eq 0 ] || die "run as root (sudo $0)"
[ -z "$WHEEL" ] || [ -f "$WHEEL" ] || die "no such wheel: $WHEEL"
if [ -n "$ROOT" ]; then
    mkdir -p "$ROOT"
    ROOT="$(cd "$ROOT" && pwd)"
fi

PREFIX="$ROOT/opt/node-agent"
VENV="$PREFIX/venv"
ETC="$ROOT/etc/node-agent"
UNIT_DIR="$ROOT/usr/local/lib/systemd/system"
SYSUSERS_DIR="$ROOT/usr/local/lib/sysusers.d"
TMPFILES_DIR="$ROOT/usr/local/lib/tmpfiles.d"

# --- user and groups ---------------------------------------------------------------------------
install -D -m 0644 "$SRC_DIR/systemd/node-agent.sysusers" "$SYSUSERS_DIR/node-agent.conf"
if command -v systemd-sysusers >/dev/null 2>&1; then
    mkdir -p "$ROOT/etc"
    systemd-sysusers ${ROOT:+--root="$ROOT"} "$SYSUSERS_DIR/node-agent.conf"
else
    log "systemd-sysusers not found; using groupadd/useradd"
    for group in docker video render; do
        groupadd --force --system ${ROOT:+--root "$ROOT"} "$group"
    done
    if ! grep -q '^node-agent:' "$ROOT/etc/passwd" 2>/dev/null; then
        useradd --system --user-group --home-dir /var/lib/node-agent --no-create-home \
            --shell /usr/sbin/nologin --comment "node-agent GPU node agent" \
            ${ROOT:+--root "$ROOT"} node-agent
    fi
fi
AGENT_GID="$(awk -F: '$1 == "node-agent" { print $3 }' "$ROOT/etc/group")"
[ -n "$AGENT_GID" ] || die "group node-agent was not created"

# --- package into its own virtual environment -----------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    mkdir -p "$PREFIX"
    "$PYTHON" -m venv "$VENV" ||
        die "cannot create a virtual environment (apt-get install python3-venv)"
fi
if [ -n "$WHEEL" ]; then
    target="$WHEEL"
else
    # What gets installed is a wheel, the same artifact `pip install node-agent` gives: the
    # status page, ABIs and compiled contracts are its package data, not files of this checkout.
    build_dir="$(mktemp -d)"
    trap 'rm -rf "$build_dir"' EXIT
    log "building the node-agent wheel"
    "$VENV/bin/python" -m pip wheel --quiet --disable-pip-version-check --no-deps \
        -w "$build_dir" "$SRC_DIR" >&2 || die "cannot build the wheel from $SRC_DIR"
    target="$(ls "$build_dir"/node_agent-*.whl)"
fi
log "installing node-agent from $target"
# The versions CI tested (constraints.txt), not whatever resolves on the day of the install.
constraints=()
[ ! -f "$SRC_DIR/constraints.txt" ] || constraints=(-c "$SRC_DIR/constraints.txt")
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade \
    "${constraints[@]}" "$target"
[ -x "$VENV/bin/node-agent" ] || die "$VENV/bin/node-agent missing after pip install"
install -D -m 0644 "$SRC_DIR/docs/systemd.md" "$PREFIX/docs/systemd.md"

# --- configuration and credentials ------------------------------------------------------------
install -d -m 0755 -o root -g root "$ETC"
install -d -m 0700 -o root -g root "$ETC/credentials"
if [ -e "$ETC/config.yaml" ]; then
    log "keeping existing $ETC/config.yaml"
else
    # Secure defaults: API on loopback, no container image, no workload image allowed,
    # /info and /metrics behind a key. Nothing runs that the provider did not name.
    # Readable by the service's group only: a config may still hold an inline secret.
    install -m 0640 -o root -g "$AGENT_GID" "$SRC_DIR/systemd/config.minimal.yaml" \
        "$ETC/config.yaml"
    log "wrote $ETC/config.yaml (secure defaults); edit it, then: systemctl reload node-agent"
fi
# Reference only (every key and its default), refreshed on each run; never read by the agent.
install -m 0644 -o root -g root "$SRC_DIR/config.example.yaml" "$ETC/config.example.yaml"
# LoadCredential= refuses to start the unit when a listed file is missing, so each credential
# exists, empty until the operator fills it. Existing files are never touched.
for name in "${CREDENTIALS[@]}"; do
    if [ ! -e "$ETC/credentials/$name" ]; then
        install -m 0600 -o root -g root /dev/null "$ETC/credentials/$name"
    fi
done

# --- unit files --------------------------------------------------------------------------------
install -D -m 0644 "$SRC_DIR/systemd/node-agent.service" "$UNIT_DIR/node-agent.service"
install -D -m 0644 "$SRC_DIR/systemd/node-agent.tmpfiles" "$TMPFILES_DIR/node-agent.conf"
if command -v systemd-tmpfiles >/dev/null 2>&1; then
    systemd-tmpfiles ${ROOT:+--root="$ROOT"} --create "$TMPFILES_DIR/node-agent.conf"
fi

# --- systemd -------------------------------------------------------------------------------------
if [ -n "$ROOT" ]; then
    log "installed into $ROOT; not calling systemctl for a staged root"
elif [ ! -d /run/systemd/system ]; then
    log "systemd is not running as PID 1 here (container/CI?); skipping systemctl."
    log "on a systemd host: systemctl daemon-reload && systemctl enable --now node-agent"
else
    systemctl daemon-reload
    if [ "$START" -eq 1 ]; then
        systemctl enable node-agent.service
        # restart, not start: a re-run after an upgrade must load the new code (drains first).
        systemctl restart node-agent.service
        log "started; status: systemctl status node-agent; logs: journalctl -u node-agent -f"
    else
        systemctl enable node-agent.service
        log "enabled, not started (--no-start): systemctl start node-agent"
    fi
fi
