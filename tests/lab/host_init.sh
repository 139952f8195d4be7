#!/bin/sh
# Runs as root inside a lab host's network namespace and a fresh private mount
# namespace: give the host its own /nix, /home, /root and /etc/nix, start its
# nix-daemon (multi-user personas) and become its sshd. The lab records the
# pid of this process (sshd after the exec) and enters the host through it.
set -eu
hostdir=$1
mount --bind "$hostdir/nix" /nix
mount --bind "$hostdir/home" /home
mount --bind "$hostdir/root" /root
mount --bind "$hostdir/etc-nix" /etc/nix
ip link set lo up
if [ -e "$hostdir/multi-user" ]; then
  # setsid: the daemon must not share sshd's session or die with a client.
  setsid nix-daemon </dev/null >>"$hostdir/log/nix-daemon.log" 2>&1 &
  echo $! >"$hostdir/run/nix-daemon.pid"
fi
exec /usr/sbin/sshd -D -e -f "$hostdir/sshd_config" 2>>"$hostdir/log/sshd.log"
