#!/bin/sh
# A lab host's boot. Runs as root inside the host's network namespace and a
# fresh private mount namespace (one per boot): gives the host its own /nix,
# /home, /root and /etc/nix, a fresh tmpfs /run, this boot's id over
# /proc/sys/kernel/random/boot_id and the lab's systemctl over the machine's;
# starts its nix-daemon (multi-user personas); on the NixOS persona activates
# the boot default as stage 2 does, on nix-darwin makes the system profile's
# system current as its activate-system daemon does; then becomes the host's
# sshd. A host given the other stack's Nix gets it over this userland's nix
# binary first. The lab (or its supervisor, after a reboot) records this
# process's pid in run/host.pid and enters the host through it.
set -eu
hostdir=$1
persona=${2:-nixos}
tools=$3
mount --bind "$hostdir/nix" /nix
mount --bind "$hostdir/home" /home
mount --bind "$hostdir/root" /root
mount --bind "$hostdir/etc-nix" /etc/nix
# /run is empty at every boot, as a tmpfs is; sshd needs its privsep folder
mount -t tmpfs -o mode=0755,size=16m lab-run /run
mkdir -m 0755 /run/sshd
# the host's one way to ask the lab for a reboot (root only, see systemctl.sh)
mkdir -m 0700 /run/lab-power
mount --bind "$hostdir/power" /run/lab-power
mount --bind "$hostdir/boot_id" /proc/sys/kernel/random/boot_id
# reboot, poweroff, halt and shutdown are links to systemctl on the machine
mount --bind "$tools/systemctl" /usr/bin/systemctl
# a host on the other stack's Nix (lab.py wrote other-nix): it stands in for
# this userland's nix binary, which every nix-* name here links to, so nothing
# on the host (PATH, hidden nix dirs, sudo, the lab's nsenter) reaches this one
if [ -e "$hostdir/other-nix" ]; then
  mount --bind "$hostdir/other-nix" "$(readlink -f /usr/bin/nix)"
fi
# target faults a reboot keeps (tests/lab/target_faults.py: a sudo that asks)
if [ -e "$hostdir/faults/boot.sh" ]; then
  # shellcheck disable=SC1091  # written by target_faults.py
  . "$hostdir/faults/boot.sh"
fi
ip link set lo up
# a boot brings the link up, whatever the last system did to it
ip link set eth0 up
if [ -e "$hostdir/multi-user" ]; then
  # setsid: the daemon must not share sshd's session or die with a client.
  setsid nix-daemon </dev/null >>"$hostdir/log/nix-daemon.log" 2>&1 &
  echo $! >"$hostdir/run/nix-daemon.pid"
fi

# the boot loader's choice and stage 2's activation (shared with systemd hosts)
# shellcheck source=tests/lab/boot.sh
. "$(dirname "$0")/boot.sh"
case "$persona" in
  nixos) boot_activate "$hostdir/log/boot.log" ;;
  darwin) boot_darwin "$hostdir/log/boot.log" ;;
esac
exec /usr/sbin/sshd -D -e -f "$hostdir/sshd_config" 2>>"$hostdir/log/sshd.log"
