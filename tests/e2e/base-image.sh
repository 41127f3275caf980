#!/usr/bin/env bash
# Build the local images that stand in for pulled ones, from Debian packages (debootstrap),
# for machines that reach no container registry (see images/README.md):
#
#   base-image.sh base       localhost/podkit-base:bookworm   (python3, the BASE_IMAGE of images/)
#                            and localhost/podkit-base-builder:bookworm (the same, with gcc
#                            and the Python headers: the BUILDER_IMAGE of images/)
#   base-image.sh standins   nginx, redis, busybox and postgres images under the names the
#                            k8s/ manifests use
#
# Each rootfs is cached as a tarball under $PODKIT_E2E_CACHE (default /var/tmp/podkit-e2e),
# keyed by a hash of this script, so a rerun skips debootstrap; an image already in podman's
# store with the same hash label is not imported again. A fresh machine builds everything.
set -euo pipefail

CACHE=${PODKIT_E2E_CACHE:-/var/tmp/podkit-e2e}
SUITE=${SUITE:-bookworm}
ENGINE=${ENGINE:-podman}
PATH_ENV="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

BASE_TAG=localhost/podkit-base:$SUITE
BASE_PACKAGES=python3,python3-venv,ca-certificates
# The builder stage of a helper that compiles part of itself (Helper.image_build:
# pg-ambassador's hot path) runs on the base's Python with a C compiler and its headers;
# images/build.sh picks BASE-builder:TAG for it. The image itself is on the base: no gcc.
BUILDER_PACKAGES=gcc,libc6-dev,python3-dev
# Helpers whose image needs Debian packages (Helper.image_packages; a unit test keeps this
# in step) get a base of their own, localhost/podkit-base-HELPER:SUITE, which
# images/build.sh picks for them: their image build then needs no network, and no other
# helper's image carries their packages.
HELPER_PACKAGES=(
    "git-sync=git,openssh-client,libnss-wrapper"
)
# The stand-ins only need to run the same commands as the images the manifests name.
STANDIN_TAG=localhost/podkit-standins:$SUITE
STANDIN_PACKAGES=nginx-light,redis-server,redis-sentinel,redis-tools,busybox,wget,ca-certificates
# name the manifests use -> the stand-in image is tagged with it
STANDIN_NAMES=(
    "nginxinc/nginx-unprivileged:1.27"
    "redis:7.2"
    "busybox:1.36"
)
# PostgreSQL's stand-in (server and client: the pg-ambassador pod's app runs psql and
# pg_isready from it, the e2e test runs the server from it) has a rootfs of its own, so the
# other stand-ins do not carry the server. Debian's binaries are put first on PATH, as the
# official image has them (psql, pg_isready, initdb, postgres).
POSTGRES_TAG=localhost/podkit-standin-postgres:$SUITE
POSTGRES_PACKAGES=postgresql-15,ca-certificates
POSTGRES_PATH="PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
POSTGRES_NAMES=(
    "postgres:16.4"
)

script_hash=$(sha256sum "$0" | cut -c1-16)

log() { echo "base-image: $*" >&2; }

# Smaller images: docs, man pages, locales and apt's lists are never used at run time.
slim_rootfs() {
    local dir=$1
    rm -rf "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/info/* \
        "$dir"/var/cache/apt/* "$dir"/var/lib/apt/lists/* "$dir"/var/log/* \
        "$dir"/var/cache/debconf/*-old "$dir"/var/lib/dpkg/*-old
    find "$dir"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'C.*' -exec rm -rf {} + 2>/dev/null || true
    # World-writable dirs other than /tmp and /var/tmp would be writable by the helper's user.
    chmod 0755 "$dir"/run/lock 2>/dev/null || true
}

rootfs_tarball() {  # name packages -> path of a cached tarball of the rootfs
    local name=$1 packages=$2
    local tarball="$CACHE/$name-$SUITE-$script_hash.tar"
    if [ -s "$tarball" ]; then
        echo "$tarball"
        return
    fi
    command -v debootstrap >/dev/null || { log "debootstrap is not installed (./dev setup)"; exit 1; }
    [ "$(id -u)" = 0 ] || { log "debootstrap needs root"; exit 1; }
    mkdir -p "$CACHE"
    local dir
    dir=$(mktemp -d "$CACHE/rootfs-$name.XXXXXX")
    log "debootstrap $SUITE ($packages) into $dir"
    # The mirror is debootstrap's default unless MIRROR is set.
    debootstrap --variant=minbase --include="$packages" "$SUITE" "$dir" ${MIRROR:+"$MIRROR"} \
        >"$dir.log" 2>&1 || { tail -20 "$dir.log" >&2; rm -rf "$dir"; exit 1; }
    slim_rootfs "$dir"
    tar -C "$dir" --numeric-owner -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
    rm -rf "$dir" "$dir.log"
    # Older tarballs of this name are stale.
    find "$CACHE" -maxdepth 1 -name "$name-$SUITE-*.tar" ! -name "$(basename "$tarball")" -delete
    echo "$tarball"
}

have_image() {  # tag -> 0 when the image exists and was made by this version of the script
    local label
    label=$($ENGINE image inspect --format '{{index .Labels "podkit.base-image.hash"}}' "$1" 2>/dev/null) || return 1
    [ "$label" = "$script_hash" ]
}

import_image() {  # name packages tag [extra --change...]
    local name=$1 packages=$2 tag=$3
    shift 3
    if have_image "$tag"; then
        log "$tag is current"
        return
    fi
    local tarball
    tarball=$(rootfs_tarball "$name" "$packages")
    log "importing $tarball as $tag"
    $ENGINE import --quiet \
        --change "ENV $PATH_ENV" --change "ENV LANG=C.UTF-8" \
        --change "LABEL podkit.base-image.hash=$script_hash" \
        --change "LABEL org.opencontainers.image.description=podkit test image from Debian $SUITE ($packages)" \
        "$@" "$tarball" "$tag" >/dev/null
}

build_base() {
    import_image base "$BASE_PACKAGES" "$BASE_TAG" --change 'CMD ["python3"]'
    import_image base-builder "$BASE_PACKAGES,$BUILDER_PACKAGES" \
        "localhost/podkit-base-builder:$SUITE" --change 'CMD ["python3"]'
    local entry helper
    for entry in "${HELPER_PACKAGES[@]}"; do
        helper=${entry%%=*}
        import_image "base-$helper" "$BASE_PACKAGES,${entry#*=}" \
            "localhost/podkit-base-$helper:$SUITE" --change 'CMD ["python3"]'
    done
}

build_standins() {
    import_image standins "$STANDIN_PACKAGES" "$STANDIN_TAG" --change 'CMD ["sh"]'
    local name
    for name in "${STANDIN_NAMES[@]}"; do
        $ENGINE tag "$STANDIN_TAG" "$name"
    done
    import_image postgres "$POSTGRES_PACKAGES" "$POSTGRES_TAG" \
        --change "ENV $POSTGRES_PATH" --change 'CMD ["sh"]'
    for name in "${POSTGRES_NAMES[@]}"; do
        $ENGINE tag "$POSTGRES_TAG" "$name"
    done
}

case "${1:-base}" in
    base) build_base ;;
    standins) build_standins ;;
    all) build_base; build_standins ;;
    *) echo "usage: $0 base|standins|all" >&2; exit 2 ;;
esac
