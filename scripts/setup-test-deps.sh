#!/usr/bin/env bash
# Extra machine setup the test suite needs (scripts/test.sh runs this when present). Idempotent.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/setup-systemd-tools.sh" >/dev/null   # systemd-analyze/-sysusers/-tmpfiles
