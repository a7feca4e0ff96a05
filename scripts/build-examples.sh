#!/usr/bin/env bash
# Build the example service images (node-agent/echo, node-agent/transform) and the test-only
# node-agent/faulty image. Idempotent: an image is rebuilt only when its sources or its base
# image changed (a label on the image holds a hash of both).
#
#   scripts/build-examples.sh [--force] [echo|transform|faulty ...]
#
# NODE_AGENT_BASE_IMAGE picks the base (default: the offline node-agent/base:bookworm that
# scripts/setup-docker.sh builds; a real python image such as python:3.12-slim works too).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE_IMAGE="${NODE_AGENT_BASE_IMAGE:-node-agent/base:bookworm}"
HASH_LABEL="org.node-agent.source-hash"
log() { printf '[build-examples] %s\n' "$*" >&2; }

force=0
wanted=()
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        echo|transform|faulty) wanted+=("$arg") ;;
        *) log "unknown argument: $arg (expected --force, echo, transform or faulty)"; exit 2 ;;
    esac
done
[ "${#wanted[@]}" -gt 0 ] || wanted=(echo transform faulty)

NODE_AGENT_BASE_IMAGE="$BASE_IMAGE" bash "$root/scripts/setup-docker.sh"
# Without buildx the docker CLI falls back to the classic builder anyway; say so explicitly.
docker buildx version >/dev/null 2>&1 || export DOCKER_BUILDKIT=0

# Several test sessions may build at once: one builder at a time on this machine.
exec 9>"${TMPDIR:-/tmp}/node-agent-build-examples.lock"
flock 9

common=examples/containers/common/infernet_service.py
base_id=$(docker image inspect -f '{{.Id}}' "$BASE_IMAGE")

build() {
    local name=$1 dockerfile=$2 service=$3
    local image="node-agent/$name:latest"
    local files=("$dockerfile" "$common" "$service")
    local hash
    hash=$( { echo "$base_id"; for f in "${files[@]}"; do echo "$f"; cat "$root/$f"; done; } \
        | sha256sum | cut -c1-32)
    if [ "$force" -eq 0 ]; then
        local current
        current=$(docker image inspect -f "{{ index .Config.Labels \"$HASH_LABEL\" }}" "$image" \
            2>/dev/null || true)
        if [ "$current" = "$hash" ]; then
            log "$image is up to date"
            return
        fi
    fi
    log "building $image on $BASE_IMAGE"
    # The context is exactly the files the image needs, not the whole repository.
    local output
    if ! output=$(tar -C "$root" -cf - "${files[@]}" \
        | docker build -q -f "$dockerfile" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
            --label "$HASH_LABEL=$hash" -t "$image" - 2>&1); then
        log "building $image failed:"
        printf '%s\n' "$output" >&2
        exit 1
    fi
    log "built $image"
}

for name in "${wanted[@]}"; do
    case "$name" in
        echo) build echo examples/containers/echo/Dockerfile examples/containers/echo/service.py ;;
        transform) build transform examples/containers/transform/Dockerfile \
            examples/containers/transform/service.py ;;
        faulty) build faulty tests/containers/faulty/Dockerfile tests/containers/faulty/service.py ;;
    esac
done
