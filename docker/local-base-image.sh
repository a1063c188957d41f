#!/usr/bin/env bash
# Build a Debian bookworm base image without any registry: debootstrap a minbase root file system and
# `docker import` it. The result stands in for `debian:bookworm-slim` (same release, same dpkg excludes).
#
#   docker/local-base-image.sh [IMAGE]        default IMAGE: local/debian:bookworm
#
# Idempotent: does nothing when IMAGE already exists (FORCE=1 rebuilds it).
# Environment:
#   DEBIAN_MIRROR           Debian mirror (default: the one this host's apt uses, else http://deb.debian.org/debian)
#   DEBIAN_SECURITY_MIRROR  security mirror (default: same rule, else http://deb.debian.org/debian-security)
#   EXTRA_CA_DIR            extra CA certificates (*.crt) trusted inside the image, e.g. a TLS-inspecting
#                           proxy's CA (default: /usr/local/share/ca-certificates)
# Needs root (debootstrap) and a running Docker engine (see docker/dockerd.sh).
set -euo pipefail

IMAGE="${1:-local/debian:bookworm}"
SUITE=bookworm
EXTRA_CA_DIR="${EXTRA_CA_DIR:-/usr/local/share/ca-certificates}"

log() { echo "[local-base-image] $*" >&2; }
die() { log "error: $*"; exit 1; }

if [[ "${FORCE:-0}" != 1 ]] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "$IMAGE already exists (FORCE=1 rebuilds it)"
    exit 0
fi
[[ $EUID -eq 0 ]] || die "debootstrap needs root: run this script with sudo"
command -v debootstrap >/dev/null || die "debootstrap not found: apt-get install -y debootstrap"
docker info >/dev/null 2>&1 || die "no Docker engine answers: start one (docker/dockerd.sh start)"

# The first URI of this host's apt sources whose path ends in /$1 (debian or debian-security).
host_mirror() {
    local want="$1"
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
        grep -v '^[[:space:]]*#' | grep -oE '(https?|file)://[^[:space:]]+' | sed 's:/*$::' |
        grep -E "/${want}\$" | head -n 1 || true
}
MIRROR="${DEBIAN_MIRROR:-$(host_mirror debian)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-$(host_mirror debian-security)}"
SECURITY_MIRROR="${SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

WORK="$(mktemp -d "${TMPDIR:-/var/tmp}/local-base-image.XXXXXX")"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
ROOTFS="$WORK/rootfs"

log "debootstrap --variant=minbase $SUITE from $MIRROR"
start=$SECONDS
debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$ROOTFS" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log above)"; }

cat >"$ROOTFS/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF

# What debian:bookworm-slim does: no docs, man pages or locales from later installs; apt keeps no caches.
cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
EOF
cat >"$ROOTFS/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF

# Extra CAs (e.g. a TLS-inspecting proxy) so that apt over https, pip and curl work inside builds.
shopt -s nullglob
extra=("$EXTRA_CA_DIR"/*.crt)
if ((${#extra[@]})); then
    log "trusting ${#extra[@]} extra CA certificate(s) from $EXTRA_CA_DIR"
    cp "${extra[@]}" "$ROOTFS/usr/local/share/ca-certificates/"
    chroot "$ROOTFS" update-ca-certificates >/dev/null
fi

chroot "$ROOTFS" apt-get clean
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/log/*.log "$ROOTFS"/var/log/apt/* \
    "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/usr/share/locale/*
find "$ROOTFS/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
# debootstrap leaves the host's resolver and hostname behind; Docker provides both at run time.
: >"$ROOTFS/etc/resolv.conf"
: >"$ROOTFS/etc/hostname"

log "docker import -> $IMAGE"
tar --numeric-owner -C "$ROOTFS" -c . |
    docker import --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' --message "debootstrap $SUITE minbase from $MIRROR" - "$IMAGE" >/dev/null
log "built $IMAGE in $((SECONDS - start)) s ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
