#!/bin/sh
# `make ee`: build the execution environment localhost/nixdeploy-fleet-ee:latest from this
# checkout, reaching nothing but the package registries (docs/execution-environment.md).
#
#  1. podman and runc (Debian's), debootstrap: installed when missing
#  2. the base image, made here (ee/base.sh): Debian trixie, no registry needed
#  3. the collection tarball (ansible-galaxy collection build --output-path dist/ of the
#     files git tracks: tests/galaxy/pack.py)
#  4. ansible-builder create from execution-environment.yml, then podman build of its
#     context with --build-arg EE_BASE_IMAGE=<the base> and the host's network, and this
#     machine's /etc/pip.conf bound read-only for the RUN steps only (never in a layer)
#
# Nothing is rebuilt while the inputs are the same: the image carries a label with a hash of
# execution-environment.yml, ee/, the collection's files (the checksums ansible-galaxy puts
# in the tarball), the base image and ansible-builder's version. podman's layer cache keeps
# the steps before a change.
#
# Knobs: NIXDEPLOY_EE_IMAGE, NIXDEPLOY_EE_SUITE (trixie), NIXDEPLOY_EE_STATE
# (/var/lib/nixdeploy-ee: the base tree and the build context), VENV (.venv), PODMAN.
set -eu

HERE=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=${NIXDEPLOY_EE_IMAGE:-localhost/nixdeploy-fleet-ee:latest}
SUITE=${NIXDEPLOY_EE_SUITE:-trixie}
STATE=${NIXDEPLOY_EE_STATE:-/var/lib/nixdeploy-ee}
VENV=${VENV:-$HERE/.venv}
PODMAN=${PODMAN:-podman}
BASE=localhost/nixdeploy-ee-base:$SUITE
LABEL=org.nixdeploy.ee.inputs
# the two podman settings this machine needs, without touching /etc
CONTAINERS_CONF=${CONTAINERS_CONF:-$HERE/ee/containers.conf}
NIXDEPLOY_EE_SUITE=$SUITE NIXDEPLOY_EE_STATE=$STATE
export CONTAINERS_CONF NIXDEPLOY_EE_SUITE NIXDEPLOY_EE_STATE PODMAN

missing=""
for pkg in podman runc debootstrap; do
    dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null | grep -qx installed ||
        missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    echo "ee: apt-get install$missing"
    # shellcheck disable=SC2086  # a list of package names
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null ||
        { apt-get update -q >/dev/null &&
          DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null; }
fi

mkdir -p "$STATE"
# one build at a time (a second `make ee` waits, then finds the image up to date)
exec 9>"$STATE/lock"
flock 9

"$HERE/ee/base.sh" "$BASE"

# The collection as users install it: its built tarball.
# FILES.json's checksum covers every file of the collection (the tarball's own bytes differ
# at each build: mtimes). The tarball in dist/ is replaced only when that changes, so podman's
# layers after its COPY stay cached.
files_sum() {
    tar -xzOf "$1" MANIFEST.json | "$VENV/bin/python" -c \
        'import json, sys; print(json.load(sys.stdin)["file_manifest_file"]["chksum_sha256"])'
}
fresh=$(mktemp -d)
trap 'rm -rf "$fresh"' EXIT
# from the files git tracks, never the checkout's others (tests/galaxy/pack.py)
"$VENV/bin/python" "$HERE/tests/galaxy/pack.py" build "$fresh" >/dev/null
new=$(ls "$fresh"/nixdeploy-fleet-*.tar.gz)
old_tarball=$(ls "$HERE"/dist/nixdeploy-fleet-*.tar.gz 2>/dev/null || true)
if [ "$(echo "$old_tarball" | wc -w)" -ne 1 ] || [ "$(basename "$old_tarball")" != "$(basename "$new")" ] ||
        [ "$(files_sum "$old_tarball")" != "$(files_sum "$new")" ]; then
    mkdir -p "$HERE/dist"
    rm -f "$HERE"/dist/nixdeploy-fleet-*.tar.gz
    mv "$new" "$HERE/dist/"
fi
tarball=$(ls "$HERE"/dist/nixdeploy-fleet-*.tar.gz)

inputs=$( {
    files_sum "$tarball"
    # the EE's own files (ee/semaphore/ is another image's)
    find "$HERE/ee" -maxdepth 1 -type f -print0 | sort -z | xargs -0 cat "$HERE/execution-environment.yml"
    $PODMAN image inspect --format '{{.Id}}' "$BASE"
    "$VENV/bin/ansible-builder" --version
} | sha256sum | cut -c1-16)

have=$($PODMAN image inspect --format "{{ index .Labels \"$LABEL\" }}" "$IMAGE" 2>/dev/null || true)
if [ "$have" = "$inputs" ]; then
    echo "ee: $IMAGE is up to date ($inputs)"
    exit 0
fi
old=$($PODMAN image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)

echo "ee: ansible-builder create, podman build $IMAGE ($inputs)"
rm -rf "$STATE/context"
"$VENV/bin/ansible-builder" create -f "$HERE/execution-environment.yml" -c "$STATE/context" \
    --output-filename Containerfile >/dev/null
# pip's configuration of this machine (an index, a proxy's CA; it may hold an index's
# credentials) for the build only: a private copy bound read-only at /run/nixdeploy-build,
# where the base's /etc/pip.conf links to (ee/base.sh). A bind mount of `podman build
# --volume` is there during RUN steps and in no layer: the image never carries it.
pip_dir=$STATE/pip
rm -rf "$pip_dir"
mkdir -m 0700 "$pip_dir"
if [ -f /etc/pip.conf ]; then cp /etc/pip.conf "$pip_dir/pip.conf"; fi
# --network=host: apt and pip reach the registries as this machine does
build() {
    $PODMAN build --network=host --build-arg "EE_BASE_IMAGE=$BASE" --label "$LABEL=$inputs" \
        --volume "$pip_dir:/run/nixdeploy-build:ro" \
        -f "$STATE/context/Containerfile" -t "$IMAGE" "$@" "$STATE/context" >"$STATE/build.log" 2>&1
}
if ! build --layers; then
    # a cached `apt-get update` layer older than the mirror's packages (a point release
    # removed what it lists): once more without the cache
    if grep -q -E '404 +Not Found|Unable to fetch some archives' "$STATE/build.log"; then
        echo "ee: apt's cached package lists are stale; building again without the layer cache"
        build --no-cache || true
    fi
    if ! $PODMAN image inspect --format "{{ index .Labels \"$LABEL\" }}" "$IMAGE" 2>/dev/null |
            grep -qx "$inputs"; then
        tail -n 60 "$STATE/build.log" >&2
        echo "ee: podman build failed; the whole log: $STATE/build.log" >&2
        exit 1
    fi
fi
# What earlier builds left: the image this one replaced and their untagged stage images
# (all carry the label), unless a container still uses one. This build's stay: the cache.
for id in $old $($PODMAN images -q --filter dangling=true --filter "label=$LABEL"); do
    [ "$($PODMAN image inspect --format "{{ index .Labels \"$LABEL\" }}" "$id" 2>/dev/null)" = "$inputs" ] ||
        $PODMAN rmi "$id" >/dev/null 2>&1 || true
done
$PODMAN image inspect --format "ee: $IMAGE {{.Id}} {{.Size}} bytes" "$IMAGE" | cut -c1-200
