#!/usr/bin/env bash
# Make a Docker engine answer on this machine and make sure the offline base image exists.
# Idempotent: every step is skipped when its result is already there.
set -euo pipefail

BASE_IMAGE="${NODE_AGENT_BASE_IMAGE:-node-agent/base:bookworm}"
log() { printf '[setup-docker] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_updated=0
apt_install() {
    if [ "$apt_updated" -eq 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! docker info >/dev/null 2>&1; then
    if ! command -v dockerd >/dev/null 2>&1; then
        log "installing docker.io"
        apt_install docker.io
    fi
    if ! docker info >/dev/null 2>&1; then
        log "starting dockerd in the background (log: /var/log/dockerd.log)"
        as_root sh -c 'nohup dockerd >/var/log/dockerd.log 2>&1 &'
        for _ in $(seq 1 100); do
            docker info >/dev/null 2>&1 && break
            sleep 0.2
        done
    fi
    docker info >/dev/null 2>&1 || { log "dockerd did not come up; see /var/log/dockerd.log"; exit 1; }
fi
log "docker engine answers"

if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "base image $BASE_IMAGE present"
    exit 0
fi

# Try a real python image first (works wherever a registry is reachable), else build one offline.
if docker pull -q python:3.12-slim >/dev/null 2>&1; then
    docker tag python:3.12-slim "$BASE_IMAGE"
    log "tagged python:3.12-slim as $BASE_IMAGE"
    exit 0
fi

command -v debootstrap >/dev/null 2>&1 || { log "installing debootstrap"; apt_install debootstrap; }
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror="${mirror:-http://deb.debian.org/debian}"
root=$(mktemp -d /tmp/node-agent-rootfs.XXXXXX)
trap 'as_root rm -rf "$root"' EXIT
log "building $BASE_IMAGE offline with debootstrap from $mirror (about a minute)"
as_root debootstrap --variant=minbase --include=python3 bookworm "$root" "$mirror" >/tmp/debootstrap.log 2>&1 \
    || { log "debootstrap failed; see /tmp/debootstrap.log"; exit 1; }
as_root tar -C "$root" -c . | docker import -c 'ENV PYTHONUNBUFFERED=1' - "$BASE_IMAGE" >/dev/null
log "built $BASE_IMAGE"
