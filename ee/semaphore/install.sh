#!/bin/sh
# What Semaphore UI's image lacks to run nixdeploy.fleet (docs/semaphore.md), added as root
# by ee/semaphore/Containerfile: the same steps as the execution environment's
# (execution-environment.yml, ee/nix.conf), for Semaphore's user instead of AWX's group 0.
#
#  1. Nix, the ssh client, git and Python's venv: apk on Alpine (semaphoreui/semaphore),
#     apt-get on Debian (the stand-in the tests build from the EE's base)
#  2. ansible-core (ANSIBLE_CORE, the EE's pin) in a venv of its own (VENV): the image's
#     ansible (its own venv, below 2.19) stays, later on PATH
#  3. a single-user Nix store at /nix owned by Semaphore's UID (SEMAPHORE_UID): no daemon,
#     no build users; ee/nix.conf (copied after this script) says so to Nix
#  4. Semaphore's /etc/ansible/ansible.cfg names `stdout_callback = yaml`, a callback
#     ansible-core no longer ships: the same output through the default callback
#
# Knobs (build arguments): SEMAPHORE_UID (1001), ANSIBLE_CORE, VENV.
set -eu

: "${SEMAPHORE_UID:?}" "${ANSIBLE_CORE:?}" "${VENV:?}"

if command -v apk >/dev/null 2>&1; then
    # Alpine's community repository has Nix; openssh-client-default is the image's ssh
    apk add --no-cache nix openssh-client-default git python3
elif command -v apt-get >/dev/null 2>&1; then
    # the EE's packages (the collection's bindep.txt), and Debian's venv module
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        ca-certificates nix-bin openssh-client git python3-venv
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
else
    echo "install.sh: neither apk nor apt-get in this image" >&2
    exit 1
fi

# Semaphore's image has its user (semaphore, 1001, group root); a base without one gets it
if ! awk -F: -v uid="$SEMAPHORE_UID" '$3 == uid { found = 1 } END { exit !found }' /etc/passwd; then
    if command -v useradd >/dev/null 2>&1; then
        useradd -u "$SEMAPHORE_UID" -g 0 -m -d /home/semaphore semaphore
    else
        adduser -D -u "$SEMAPHORE_UID" -G root semaphore
    fi
fi

python3 -m venv "$VENV"
"$VENV/bin/pip" install --no-cache-dir --disable-pip-version-check -q "$ANSIBLE_CORE"
find "$VENV" -name __pycache__ -prune -exec rm -rf {} +

# The store, initialised as root, then handed to the one user that writes it: Nix makes
# its folders 0755 and its paths read-only, and only their owner may add to them or
# collect garbage (the EE gives group 0 the same rights instead: any UID of AWX's)
mkdir -p /nix
nix-store --init
chown -R "$SEMAPHORE_UID:0" /nix

if [ -f /etc/ansible/ansible.cfg ] && grep -q '^stdout_callback *= *yaml' /etc/ansible/ansible.cfg; then
    sed -i 's/^stdout_callback *= *yaml.*/callback_result_format = yaml/' /etc/ansible/ansible.cfg
fi

# The base `make ee` makes links /etc/pip.conf to where the build binds this machine's
# (ee/base.sh): the link goes, no image keeps a pip configuration of the build machine
if [ "$(readlink /etc/pip.conf 2>/dev/null || true)" = /run/nixdeploy-build/pip.conf ]; then
    rm -f /etc/pip.conf
fi

nix --version
ssh -V
"$VENV/bin/ansible" --version | head -n 1
