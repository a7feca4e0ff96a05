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

# promtool (tests/deploy: `promtool check rules` and `promtool test rules` on deploy/prometheus)
# comes with Debian's prometheus package. Its maintainer scripts would start a Prometheus server
# (systemd or init.d): a policy-rc.d answering 101 ("forbidden") keeps them from it while the
# package installs, and goes again afterwards unless the machine had one already.
if ! command -v promtool >/dev/null 2>&1; then
    printf '[setup-test-deps] installing prometheus (for promtool)\n' >&2
    root=()
    [ "$(id -u)" -eq 0 ] || root=(sudo)
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | "${root[@]}" tee "$policy" >/dev/null
        "${root[@]}" chmod 755 "$policy"
        trap '"${root[@]}" rm -f "$policy"' EXIT
    fi
    "${root[@]}" apt-get update -qq
    "${root[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
promtool --version 2>&1 | head -1
