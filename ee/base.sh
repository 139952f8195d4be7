#!/bin/sh
# The base image of the execution environment where no registry can be reached: a Debian
# tree made by debootstrap from the mirror this machine's apt uses, imported into podman.
#
#   base.sh IMAGE     make IMAGE (e.g. localhost/nixdeploy-ee-base:trixie) unless it
#                     exists with this recipe's label
#
# It holds what docker.io/library/debian:SUITE holds (a minbase system) plus this machine's
# extra CA certificates (apt and pip behind a TLS-inspecting proxy need them; ca-certificates,
# installed by the EE's first step, takes them in) and /etc/pip.conf as a symlink to
# /run/nixdeploy-build/pip.conf: ee/build.sh binds this machine's pip.conf there for the
# build's RUN steps only, so pip finds it while no layer of any image holds it (a pip.conf
# may carry an index's credentials); the EE's last step removes the link. The tree stays in
# $NIXDEPLOY_EE_STATE (default /var/lib/nixdeploy-ee) so the image is re-imported in seconds.
# Knobs: NIXDEPLOY_EE_SUITE (trixie), PODMAN (podman).
set -eu

IMAGE=${1:?usage: base.sh IMAGE}
SUITE=${NIXDEPLOY_EE_SUITE:-trixie}
STATE=${NIXDEPLOY_EE_STATE:-/var/lib/nixdeploy-ee}
PODMAN=${PODMAN:-podman}
TREE=$STATE/$SUITE
HERE=$(cd "$(dirname "$0")" && pwd)
LABEL=org.nixdeploy.ee.base

# The mirror this machine's apt already uses (never a hard-coded host): the one reader,
# tests/stack/tree.sh's.
url=$("$HERE/../tests/stack/tree.sh" mirror)
[ -n "$url" ] || { echo "base.sh: no Debian mirror in this machine's apt sources" >&2; exit 1; }

# What the base is made of: this recipe, the suite, the mirror, the extra CAs.
# shellcheck disable=SC2046  # the CA files are words on purpose (none: an empty list)
recipe=$( { cat "$HERE/base.sh"; echo "$SUITE $url"
            cat /dev/null $(ls /usr/local/share/ca-certificates/*.crt 2>/dev/null)
          } | sha256sum | cut -c1-16)

have=$($PODMAN image inspect --format "{{ index .Labels \"$LABEL\" }}" "$IMAGE" 2>/dev/null || true)
if [ "$have" = "$recipe" ]; then
    echo "base.sh: $IMAGE is up to date ($recipe)"
    exit 0
fi

if [ ! -f "$TREE.ready" ] || [ "$(cat "$TREE.ready")" != "$recipe" ]; then
    echo "base.sh: debootstrap --variant=minbase $SUITE ($url) into $TREE"
    rm -rf "$TREE" "$TREE.ready"
    mkdir -p "$TREE"
    debootstrap --variant=minbase "$SUITE" "$TREE" "$url" >"$TREE.debootstrap.log" 2>&1 || {
        tail -n 30 "$TREE.debootstrap.log" >&2; exit 1; }
    # the mirror may serve Release files past their Valid-Until (as tests/stack/tree.sh)
    echo 'Acquire::Check-Valid-Until "false";' >"$TREE/etc/apt/apt.conf.d/99no-valid-until"
    mkdir -p "$TREE/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$TREE/usr/local/share/ca-certificates/" 2>/dev/null || true
    # never the file itself: only where the build binds it (above)
    rm -f "$TREE/etc/pip.conf"
    ln -s /run/nixdeploy-build/pip.conf "$TREE/etc/pip.conf"
    # what a registry's Debian image leaves out too: caches, lists, logs
    rm -rf "$TREE"/var/cache/apt/archives/*.deb "$TREE"/var/cache/apt/*.bin \
        "$TREE"/var/lib/apt/lists/* "$TREE"/var/log/*.log "$TREE"/var/log/apt/*
    echo "$recipe" >"$TREE.ready"
fi

echo "base.sh: podman import $TREE as $IMAGE"
tar -C "$TREE" --numeric-owner -c . | $PODMAN import --quiet \
    --change 'CMD ["/bin/bash"]' --change "LABEL $LABEL=$recipe" - "$IMAGE" >/dev/null
