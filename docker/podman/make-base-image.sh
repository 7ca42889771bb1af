#!/usr/bin/env bash
# Makes a local Debian base image for podman when no registry can be reached: debootstrap
# (variant minbase) from the machine's configured Debian mirror, trimmed (no apt lists, caches,
# documentation, man pages or translations, and a dpkg filter that keeps later installs from
# adding them), then imported with `podman import`. Keeps an existing image unless --force.
#
#   docker/podman/make-base-image.sh [--force]
#
# Settings: BASE_IMAGE (localhost/debian:bookworm), BASE_SUITE (bookworm), BASE_MIRROR (the first
# deb.debian.org-style URI of /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list, else
# http://deb.debian.org/debian), TMPDIR.
set -euo pipefail

image="${BASE_IMAGE:-localhost/debian:bookworm}"
suite="${BASE_SUITE:-bookworm}"
force=0
[[ "${1:-}" == --force ]] && force=1

log() { printf 'make-base-image: %s\n' "$*" >&2; }

if [[ $force == 0 ]] && podman image exists "$image"; then
    log "$image exists"
    exit 0
fi
command -v debootstrap >/dev/null || { log "ERROR: debootstrap missing (apt-get install debootstrap)"; exit 1; }

mirror="${BASE_MIRROR:-}"
if [[ -z "$mirror" ]]; then
    mirror="$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1 || true)"
fi
if [[ -z "$mirror" && -f /etc/apt/sources.list ]]; then
    mirror="$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list)"
fi
mirror="${mirror:-http://deb.debian.org/debian}"

root="$(mktemp -d "${TMPDIR:-/tmp}/exchanger-rootfs.XXXXXX")"
trap 'rm -rf "$root"' EXIT
log "debootstrap --variant=minbase $suite from $mirror"
started=$SECONDS
debootstrap --variant=minbase "$suite" "$root" "$mirror" >"$root.log" 2>&1 || {
    tail -n 30 "$root.log" >&2
    rm -f "$root.log"
    exit 1
}
rm -f "$root.log"

# Trim, and keep later `apt-get install` in derived images from bringing the same back.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
cat >"$root/etc/dpkg/dpkg.cfg.d/01-exchanger-slim" <<'CFG'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-exclude=/usr/share/lintian/*
CFG
cat >"$root/etc/apt/apt.conf.d/01-exchanger-slim" <<'CFG'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
CFG

tar -C "$root" -c . | podman import --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
log "imported $image in $((SECONDS - started)) s ($(podman image inspect --format '{{.Size}}' "$image") bytes)"
