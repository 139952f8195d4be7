#!/bin/sh
# A current stack on this Debian 12 machine: a Debian testing/unstable tree entered as its
# own mount namespace (pivot_root, not chroot: `ip netns exec` needs / to be a mount point
# and `nsenter -m` would escape a chroot). What runs there: README.md (`make test`) and
# docs/lab.md.
#
#   tree.sh ensure          make the tree once (debootstrap + apt), a stamp marks it done
#   tree.sh run CMD...      run CMD inside it, in this checkout (bound at the same path)
#   tree.sh mirror          print the Debian mirror this machine's apt uses
#
# Every mount lives in a throwaway namespace: nothing stays mounted after `run` returns.
# /run/netns is bound so the lab's namespaces are the same on both sides. This machine's
# /usr is bound read-only at /opt/nixdeploy-machine/usr, so a lab inside can give a host
# this machine's Nix through its own loader (tests/lab/lab.py, `'nix': 'other'`).
set -eu

TREE=${NIXDEPLOY_TREE:-/var/lib/nixdeploy-stack/${NIXDEPLOY_SUITE:-sid}}
SUITE=${NIXDEPLOY_SUITE:-sid}
STAMP=$TREE/.nixdeploy-tree-ready
# What the tree needs beyond the Makefile's own APT_PACKAGES (installed by `make deps`
# inside): only what `make` itself and apt over https need before that.
BOOT_PACKAGES="make ca-certificates python3 python3-venv"
HERE=$(cd "$(dirname "$0")/../.." && pwd)
# where the inside sees this machine's /usr (read-only): the other stack's Nix for the lab
MACHINE_USR=/opt/nixdeploy-machine/usr

# The mirror this machine's apt already uses (never a hard-coded host).
mirror() {
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' "$f" | grep -v security | head -n 1
    done | head -n 1
    if [ -f /etc/apt/sources.list ]; then
        awk '$1 == "deb" && $2 !~ /^\[/ && $3 !~ /security/ {print $2; exit}' /etc/apt/sources.list
    fi
}

enter() {
    # $1 = directory to start in; the rest is the command. Environment is rebuilt, passing
    # on only what pip and TLS need on this machine and the suite's own knobs.
    dir=$1; shift
    passenv=""
    for v in PIP_CERT PIP_FIND_LINKS PIP_DEFAULT_TIMEOUT PIP_DISABLE_PIP_VERSION_CHECK \
             SSL_CERT_FILE SSL_CERT_DIR REQUESTS_CA_BUNDLE CI PYTEST_ADDOPTS NIXDEPLOY_STACK; do
        eval "val=\${$v-}"
        [ -n "$val" ] && passenv="$passenv $v=$val"
    done
    mkdir -p "$TREE$HERE" "$TREE/run/netns" /run/netns "$TREE$MACHINE_USR"
    export TREE HERE MACHINE_USR
    # the inner script expands its own variables (SC2016); $passenv is a list of
    # VAR=value words (SC2086)
    # shellcheck disable=SC2086,SC2016
    exec unshare --mount --propagation unchanged -- /bin/sh -euc '
R=$TREE; mount --make-private /; mount --bind "$R" "$R"; mount --make-private "$R"
# /sys with its cgroup mounts, and a tmpfs /run: systemd-nspawn (the lab systemd
# hosts) needs both as on a booted machine
mount --bind /proc "$R/proc"; mount --rbind /sys "$R/sys"; mount --bind /dev "$R/dev"
mount --bind /dev/pts "$R/dev/pts"; mount -t tmpfs -o mode=1777 shm "$R/dev/shm"
mount -t tmpfs -o mode=0755 tree-run "$R/run"; mkdir -p "$R/run/netns"
mount --bind /run/netns "$R/run/netns"
mount --bind "$HERE" "$R$HERE"
mount --bind /usr "$R$MACHINE_USR"; mount -o remount,bind,ro "$R$MACHINE_USR"
for d in /opt/wheels /opt/pypi /opt/pypi-more; do   # local indexes named by pip.conf
    [ -d "$d" ] && mkdir -p "$R$d" && mount --bind "$d" "$R$d"; done
cd "$R"; mkdir -p .oldroot; pivot_root . .oldroot; cd /
mount --make-rprivate /.oldroot; umount -l /.oldroot
dir=$1; shift
cd "$dir"
exec /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 '"$passenv"' "$@"' x "$dir" "$@"
}

ensure() {
    [ -f "$STAMP" ] && return 0
    # one maker at a time: a second caller waits, then finds the stamp
    mkdir -p "$(dirname "$TREE")"
    exec 9>"$TREE.lock"
    flock 9
    [ -f "$STAMP" ] && return 0
    command -v debootstrap >/dev/null || {
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap; }
    url=$(mirror)
    [ -n "$url" ] || { echo "tree.sh: no Debian mirror in this machine's apt sources" >&2; exit 1; }
    rm -rf "$TREE"; mkdir -p "$TREE"
    echo "tree.sh: debootstrap $SUITE into $TREE"
    debootstrap --variant=minbase "$SUITE" "$TREE" "$url" >"$TREE.debootstrap.log" 2>&1 || {
        tail -n 30 "$TREE.debootstrap.log" >&2; exit 1; }
    echo 'Acquire::Check-Valid-Until "false";' >"$TREE/etc/apt/apt.conf.d/99no-valid-until"
    mkdir -p "$TREE/usr/local/share/ca-certificates"
    cp /usr/local/share/ca-certificates/*.crt "$TREE/usr/local/share/ca-certificates/" 2>/dev/null || true
    [ -f /etc/pip.conf ] && cp /etc/pip.conf "$TREE/etc/pip.conf"
    cp /etc/resolv.conf "$TREE/etc/" 2>/dev/null || true
    # enter ends in exec: a subshell keeps this script going
    (enter / /bin/sh -ec "export DEBIAN_FRONTEND=noninteractive; apt-get update -q;
        apt-get install -y -q --no-install-recommends $BOOT_PACKAGES; update-ca-certificates")
    touch "$STAMP"
}

case ${1:-} in
    ensure) ensure ;;
    run) shift; ensure; enter "$HERE" "$@" ;;
    # the one reader of the mirror (ee/base.sh asks here too)
    mirror) mirror | head -n 1 ;;
    *) echo "usage: tree.sh ensure | run CMD... | mirror" >&2; exit 2 ;;
esac
