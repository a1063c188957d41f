#!/usr/bin/env bash
# Build one of the images with a plain `docker build`, passing the host's proxy and package-index settings.
#
#   docker/build.sh train|infer [TAG]       default TAG: forecaster-train:latest / forecaster-infer:latest
#
# Environment:
#   BASE_IMAGE   base image (default debian:bookworm-slim; local/debian:bookworm from docker/local-base-image.sh)
#   HTTP_PROXY, HTTPS_PROXY, NO_PROXY (either case)   passed on as build args when set
#   PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_TRUSTED_HOST   passed on when set; otherwise the index URLs of the
#                host's pip configuration (pip config get global.index-url / extra-index-url) are used.
#                file:// indexes are dropped: the build cannot see the host's files.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "[build.sh] $*" >&2; }
die() { log "error: $*"; exit 2; }

KIND="${1:-}"
[[ "$KIND" == train || "$KIND" == infer ]] || die "usage: $0 train|infer [TAG]"
TAG="${2:-forecaster-$KIND:latest}"
BASE_IMAGE="${BASE_IMAGE:-debian:bookworm-slim}"

args=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
for var in HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do
    if [[ -n "${!var:-}" ]]; then args+=(--build-arg "$var"); fi
done

# Only index URLs a container can reach (http/https), space-separated as pip expects.
reachable_urls() { tr ' ' '\n' | grep -E '^https?://' | paste -sd ' ' - || true; }
pip_config() {
    local pip
    for pip in .venv/bin/pip pip3; do
        if command -v "$pip" >/dev/null; then
            "$pip" config get "global.$1" 2>/dev/null | tr '\n' ' ' && return 0
        fi
    done
    return 0
}
index_url="${PIP_INDEX_URL:-$(pip_config index-url)}"
extra_index_url="${PIP_EXTRA_INDEX_URL:-$(pip_config extra-index-url)}"
for pair in "PIP_INDEX_URL=$index_url" "PIP_EXTRA_INDEX_URL=$extra_index_url"; do
    name="${pair%%=*}"
    value="$(echo "${pair#*=}" | reachable_urls)"
    if [[ -n "$value" ]]; then
        args+=(--build-arg "$name=$value")
    elif [[ -n "${pair#*=}" && "${pair#*=}" != " " ]]; then
        log "not passing $name (${pair#*=}): no http(s) URL the build could reach"
    fi
done
if [[ -n "${PIP_TRUSTED_HOST:-}" ]]; then args+=(--build-arg PIP_TRUSTED_HOST); fi

log "docker build -f Dockerfile.$KIND -t $TAG (BASE_IMAGE=$BASE_IMAGE)"
start=$SECONDS
# The legacy builder is enough (no BuildKit-only features); it also works where buildx is not installed.
DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}" docker build -f "Dockerfile.$KIND" -t "$TAG" "${args[@]}" .
size="$(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f", $1/1e6}')"
log "built $TAG in $((SECONDS - start)) s, image size ${size} MB"
