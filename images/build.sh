#!/usr/bin/env bash
# Build every podkit helper image (or the ones named) with podman or docker.
#
#   images/build.sh [render | helper...]
#
#   ENGINE      podman or docker (default: whichever is installed, podman first)
#   REGISTRY    where the images go (default images/render.py's, ghcr.io/podkit-project):
#               tags REGISTRY/podkit-<helper>:<version> and :<major>.<minor>
#   PUSH        1: push both tags (the whole manifest list with PLATFORMS) and print
#               REGISTRY/podkit-<helper>@<digest> lines instead of the tags built
#   PUSH_OPTS   extra options of the push, e.g. --tls-verify=false for a plain-HTTP registry
#   BASE_IMAGE  the Python base image (default the Containerfile's python:3.12-slim);
#               without a registry: tests/e2e/base-image.sh base, then
#               BASE_IMAGE=localhost/podkit-base:bookworm
#   BUILDER_IMAGE  the builder stage of a helper that compiles part of itself
#               (Helper.image_build: pg-ambassador): the base's Python at the same path,
#               with a C compiler and the Python headers (default the Containerfile's
#               python:3.12, or BASE-builder:TAG when it exists: tests/e2e/base-image.sh)
#   PLATFORMS   e.g. linux/amd64,linux/arm64 for a multi-arch manifest (see images/README.md)
#   PYTHON      a Python with podkit's dependencies (default .venv/bin/python, ./dev setup)
#   SOURCE_HASH labels the images io.podkit.source-hash (the e2e tests' build cache)
#
# Wheels are made here on the host, for the base image's Python version and every target
# architecture, and are the whole build context: the image build needs no network.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
REGISTRY=${REGISTRY:-}
PUSH=${PUSH:-}
read -ra push_opts <<<"${PUSH_OPTS:-}"
BASE_IMAGE=${BASE_IMAGE:-}
PLATFORMS=${PLATFORMS:-}
CONTEXT=${CONTEXT:-build/images}
if [ -z "${ENGINE:-}" ]; then
    ENGINE=$(command -v podman || command -v docker || true)
    [ -n "$ENGINE" ] || { echo "build.sh: neither podman nor docker is installed" >&2; exit 1; }
    ENGINE=$(basename "$ENGINE")
fi

log() { echo "build.sh: $*" >&2; }

"$PYTHON" images/render.py
[ "${1:-}" = render ] && exit 0

[ -n "$REGISTRY" ] || REGISTRY=$("$PYTHON" images/render.py --registry)
VERSION=$("$PYTHON" -c 'import podkit; print(podkit.__version__)')
MINOR=$(echo "$VERSION" | cut -d. -f1,2)
REVISION=$(git rev-parse --short HEAD 2>/dev/null || true)
mapfile -t SPECS < <("$PYTHON" images/render.py --list)
WANTED=("$@")

base_args=()
[ -n "$BASE_IMAGE" ] && base_args=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
# SOURCE_HASH (set by the e2e tests) labels the images so an unchanged tree is not rebuilt.
[ -n "${SOURCE_HASH:-}" ] && base_args+=(--label "io.podkit.source-hash=$SOURCE_HASH")
base_ref=${BASE_IMAGE:-$(sed -n 's/^ARG BASE_IMAGE=//p' images/Containerfile.in)}

# The wheels must match the base image's Python (X.Y.Z: markers such as redis's
# `python_full_version < "3.11.3"` need the micro version) and each target's architecture.
PYTHON_VERSION=${PYTHON_VERSION:-$($ENGINE run --rm --entrypoint python3 "$base_ref" \
    -c 'import sys; print(".".join(map(str, sys.version_info[:3])))')}
machines=()
if [ -n "$PLATFORMS" ]; then
    IFS=, read -ra plats <<<"$PLATFORMS"
    for p in "${plats[@]}"; do
        case "$p" in
            linux/amd64) machines+=(x86_64) ;;
            linux/arm64 | linux/arm64/v8) machines+=(aarch64) ;;
            *) log "unsupported platform $p"; exit 2 ;;
        esac
    done
else
    machines=("$(uname -m)")
fi

rm -rf "$CONTEXT"
mkdir -p "$CONTEXT/wheels/src"
log "building the podkit wheel (version $VERSION)"
# setuptools packs whatever its build/lib holds: files left there by an older layout (the
# dev kit was once in this wheel) would ride along into every image.
rm -rf build/lib build/bdist.*
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$CONTEXT/wheels/src" . 2>/dev/null \
    || "$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$CONTEXT/wheels/src" .
all_extras=$(printf '%s\n' "${SPECS[@]}" | awk '$2 != "-" {print $2}' | paste -sd, -)
# What the helpers' build steps need (Helper.image_build_requires: Cython, ...), as wheels
# in wheels/<machine>/build/: installed beside the venv in the builder stage only.
read -ra build_requires <<<"$(printf '%s\n' "${SPECS[@]}" | awk '$5 != "-" {print $5}' \
    | tr ',' '\n' | sort -u | paste -sd' ' -)"
for machine in "${machines[@]}"; do
    log "collecting wheels for CPython $PYTHON_VERSION on $machine"
    # Up to manylinux_2_36: glibc of Debian bookworm, which both default bases are built on.
    platforms=()
    for glibc in $(seq 36 -1 17); do platforms+=(--platform "manylinux_2_${glibc}_$machine"); done
    platforms+=(--platform "manylinux2014_$machine")
    "$PYTHON" -m pip download --quiet --only-binary=:all: --dest "$CONTEXT/wheels/$machine" \
        --implementation cp --python-version "$PYTHON_VERSION" "${platforms[@]}" \
        --find-links "$CONTEXT/wheels/src" \
        "podkit${all_extras:+[$all_extras]}==$VERSION" 2> >(grep -v "^WARNING: Location" >&2)
    # pip evaluates markers for the host's Python; fetch what the target's Python needs too.
    for _round in 1 2 3 4 5; do
        mapfile -t unmet < <("$PYTHON" images/missing_wheels.py "$CONTEXT/wheels/$machine" \
            "$PYTHON_VERSION" "$machine" "podkit${all_extras:+[$all_extras]}==$VERSION")
        [ ${#unmet[@]} -eq 0 ] && break
        log "also for CPython $PYTHON_VERSION: ${unmet[*]}"
        "$PYTHON" -m pip download --quiet --only-binary=:all: --no-deps \
            --dest "$CONTEXT/wheels/$machine" --implementation cp \
            --python-version "$PYTHON_VERSION" "${platforms[@]}" "${unmet[@]}" \
            2> >(grep -v "^WARNING: Location" >&2)
    done
    # Symbols and C sources are most of the binary wheels' size (STRIP: a cross strip).
    strip=${STRIP:-strip}
    [ "$machine" = "$(uname -m)" ] || strip=${STRIP:-$machine-linux-gnu-strip}
    "$PYTHON" images/slim_wheels.py --strip "$strip" "$CONTEXT/wheels/$machine"
    if [ ${#build_requires[@]} -gt 0 ]; then
        log "collecting the build steps' wheels for CPython $PYTHON_VERSION on $machine: ${build_requires[*]}"
        "$PYTHON" -m pip download --quiet --only-binary=:all: \
            --dest "$CONTEXT/wheels/$machine/build" --implementation cp \
            --python-version "$PYTHON_VERSION" "${platforms[@]}" "${build_requires[@]}" \
            2> >(grep -v "^WARNING: Location" >&2)
    fi
done
rm -rf "$CONTEXT/wheels/src"

built=()
for line in "${SPECS[@]}"; do
    read -r helper _extras _port build _requires <<<"$line"
    if [ ${#WANTED[@]} -gt 0 ] && [[ ! " ${WANTED[*]} " == *" $helper "* ]]; then
        continue
    fi
    image="$REGISTRY/podkit-$helper"
    log "building $image:$VERSION"
    # A base of the helper's own (tests/e2e/base-image.sh: BASE-HELPER:TAG, with the Debian
    # packages it runs) is where those packages are taken from when it exists; the image
    # itself stays on the shared base and gets only the files of them the helper runs.
    helper_base=()
    if [ -n "$BASE_IMAGE" ] && $ENGINE image inspect "${BASE_IMAGE%:*}-$helper:${BASE_IMAGE##*:}" >/dev/null 2>&1; then
        helper_base=(--build-arg "PACKAGES_IMAGE=${BASE_IMAGE%:*}-$helper:${BASE_IMAGE##*:}")
    fi
    # A helper that compiles part of itself builds on BUILDER_IMAGE, or on the base's
    # builder (BASE-builder:TAG, tests/e2e/base-image.sh) when there is one.
    if [ "$build" != - ]; then
        builder=${BUILDER_IMAGE:-}
        if [ -z "$builder" ] && [ -n "$BASE_IMAGE" ] \
            && $ENGINE image inspect "${BASE_IMAGE%:*}-builder:${BASE_IMAGE##*:}" >/dev/null 2>&1; then
            builder=${BASE_IMAGE%:*}-builder:${BASE_IMAGE##*:}
        fi
        [ -n "$builder" ] && helper_base+=(--build-arg "BUILDER_IMAGE=$builder")
    fi
    if [ -n "$PLATFORMS" ]; then
        # One manifest list with an image per platform (needs qemu-user-static or buildx).
        $ENGINE manifest rm "$image:$VERSION" >/dev/null 2>&1 || true
        $ENGINE build --platform "$PLATFORMS" --manifest "$image:$VERSION" \
            "${base_args[@]}" "${helper_base[@]}" --build-arg "VERSION=$VERSION" \
            --build-arg "REVISION=$REVISION" -f "images/$helper.Containerfile" "$CONTEXT"
    else
        $ENGINE build --quiet "${base_args[@]}" "${helper_base[@]}" \
            --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" \
            -t "$image:$VERSION" -t "$image:$MINOR" \
            -f "images/$helper.Containerfile" "$CONTEXT" >/dev/null
    fi
    if [ -z "$PUSH" ]; then
        built+=("$image:$VERSION")
        continue
    fi
    digestfile=$(mktemp)
    for tag in "$VERSION" "$MINOR"; do
        log "pushing $image:$tag"
        if [ -n "$PLATFORMS" ]; then
            $ENGINE manifest push --all "${push_opts[@]}" --digestfile "$digestfile" \
                "$image:$VERSION" "docker://$image:$tag"
        else
            $ENGINE push "${push_opts[@]}" --digestfile "$digestfile" "$image:$VERSION" \
                "docker://$image:$tag"
        fi
    done
    built+=("$image@$(cat "$digestfile")")
    rm -f "$digestfile"
done
printf '%s\n' "${built[@]}"
