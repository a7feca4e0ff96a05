#!/usr/bin/env bash
# Extra machine setup the test suite needs (scripts/test.sh runs this when present). Idempotent.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/setup-systemd-tools.sh" >/dev/null   # systemd-analyze/-sysusers/-tmpfiles

# Chromium for the status page tests (tests/ui): Playwright drives the system's browser, since
# no browser build can be downloaded here.
if [ ! -x /usr/bin/chromium ]; then
    printf '[setup-test-deps] installing chromium (for tests/ui)\n' >&2
    root=()
    [ "$(id -u)" -eq 0 ] || root=(sudo)
    "${root[@]}" apt-get update -qq
    "${root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
