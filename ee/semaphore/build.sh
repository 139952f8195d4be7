#!/bin/sh
# Build Semaphore UI's image with what nixdeploy.fleet needs (ee/semaphore/Containerfile,
# docs/semaphore.md) where no registry can be reached.
#
#   ee/semaphore/build.sh [IMAGE]     default localhost/nixdeploy-semaphore:test
#
# SEMAPHORE_IMAGE names the image to start from. Unset, it is a stand-in made here
# (ee/semaphore/standin.Containerfile, localhost/nixdeploy-semaphore-standin:test) on the
# EE's Debian base (localhost/nixdeploy-ee-base:trixie, made by `make ee`), which is what
# tests/integration/test_semaphore.py runs. ansible-core is the EE's pin
# (execution-environment.yml) unless ANSIBLE_CORE says otherwise.
#
# As ee/build.sh: the package registries only (--network=host), this machine's pip.conf
# bound read-only for the RUN steps (never in a layer), one build at a time (flock), and
# nothing rebuilt while the inputs are the same (a label with their hash; podman's layer
# cache keeps the steps before a change). Knobs: NIXDEPLOY_EE_STATE, PODMAN,
# CONTAINERS_CONF.
set -eu

HERE=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=${1:-localhost/nixdeploy-semaphore:test}
STATE=${NIXDEPLOY_EE_STATE:-/var/lib/nixdeploy-ee}
PODMAN=${PODMAN:-podman}
BASE=${NIXDEPLOY_EE_BASE:-localhost/nixdeploy-ee-base:trixie}
STANDIN=localhost/nixdeploy-semaphore-standin:test
LABEL=org.nixdeploy.semaphore.inputs
CONTAINERS_CONF=${CONTAINERS_CONF:-$HERE/containers.conf}
export CONTAINERS_CONF

pin=$(sed -n 's/^ *package_pip: *\(ansible-core==[^ ]*\).*/\1/p' "$HERE/../execution-environment.yml")
ANSIBLE_CORE=${ANSIBLE_CORE:-$pin}
[ -n "$ANSIBLE_CORE" ] || { echo "build.sh: no ansible-core pin in execution-environment.yml" >&2; exit 1; }

mkdir -p "$STATE"
exec 9>"$STATE/semaphore.lock"
flock 9

id_of() { $PODMAN image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }
label_of() { $PODMAN image inspect --format "{{ index .Labels \"$LABEL\" }}" "$1" 2>/dev/null || true; }

pip_dir=$STATE/semaphore-pip
rm -rf "$pip_dir"
mkdir -m 0700 "$pip_dir"
if [ -f /etc/pip.conf ]; then cp /etc/pip.conf "$pip_dir/pip.conf"; fi

# build NAME CONTAINERFILE INPUTS BUILD-ARGS...: unless NAME carries INPUTS already
build() {
    name=$1 file=$2 inputs=$3
    shift 3
    if [ "$(label_of "$name")" = "$inputs" ]; then
        echo "semaphore: $name is up to date ($inputs)"
        return 0
    fi
    echo "semaphore: podman build $name ($inputs)"
    old=$(id_of "$name")
    $PODMAN build --layers --network=host --label "$LABEL=$inputs" \
        --volume "$pip_dir:/run/nixdeploy-build:ro" "$@" \
        -f "$file" -t "$name" "$HERE" >"$STATE/semaphore-build.log" 2>&1 || {
        tail -n 40 "$STATE/semaphore-build.log" >&2
        echo "semaphore: podman build failed; the whole log: $STATE/semaphore-build.log" >&2
        exit 1; }
    new=$(id_of "$name")
    if [ -n "$old" ] && [ "$old" != "$new" ]; then $PODMAN rmi "$old" >/dev/null 2>&1 || true; fi
}

from=${SEMAPHORE_IMAGE:-}
if [ -z "$from" ]; then
    base_id=$(id_of "$BASE")
    [ -n "$base_id" ] || { echo "build.sh: $BASE is missing: run \`make ee\` first" >&2; exit 1; }
    standin=$( { cat "$HERE/semaphore/standin.Containerfile"; echo "$base_id"; } |
               sha256sum | cut -c1-16)
    build "$STANDIN" "$HERE/semaphore/standin.Containerfile" "$standin" --build-arg "BASE=$BASE"
    from=$STANDIN
fi

inputs=$( { cat "$HERE/semaphore/Containerfile" "$HERE/semaphore/install.sh" "$HERE/nix.conf"
            echo "$ANSIBLE_CORE"; id_of "$from"; } | sha256sum | cut -c1-16)
build "$IMAGE" "$HERE/semaphore/Containerfile" "$inputs" \
    --build-arg "SEMAPHORE_IMAGE=$from" --build-arg "ANSIBLE_CORE=$ANSIBLE_CORE"
