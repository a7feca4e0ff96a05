#!/usr/bin/env bash
# Tools the systemd tests need: systemd-analyze, systemd-sysusers, systemd-tmpfiles (package
# systemd; installing it does not start anything when systemd is not PID 1). Idempotent.
set -euo pipefail
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
if ! command -v systemd-analyze >/dev/null 2>&1 || ! command -v systemd-sysusers >/dev/null 2>&1; then
    printf '[setup-systemd-tools] installing systemd (for systemd-analyze)\n' >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
fi
systemd-analyze --version | head -1
