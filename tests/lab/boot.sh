# shellcheck shell=sh
# The NixOS persona's stage 2, shared by every lab host: sourced by
# host_init.sh on plain hosts and, on systemd hosts, by the lab-boot.service
# that nspawn.py installs in the machine (a copy of this file at
# /etc/lab/boot.sh). boot_default is what the boot loader starts;
# boot_activate makes it the booted, active and current system; boot_darwin
# is nix-darwin's boot (no boot loader choice: the system profile).

boot_default() {  # what the boot loader starts: the last boot (or switch) goal
  system=$(cat /nix/var/lab/system/boot 2>/dev/null) || return 0
  if [ -n "${LAB_BOOT_FALLBACK:-}" ]; then
    # the new entry did not boot: the one before it in the system profile
    # (the newest generation of the boot default counts)
    previous=''
    fallback=''
    numbers=$(for link in /nix/var/nix/profiles/system-*-link; do
      number=${link##*/system-}; echo "${number%-link}"; done | sort -n)
    for number in $numbers; do
      target=$(readlink "/nix/var/nix/profiles/system-$number-link") || continue
      [ "$target" = "$system" ] && fallback=$previous
      previous=$target
    done
    [ -n "$fallback" ] && system=$fallback
  fi
  echo "$system"
}

boot_activate() {  # boot_activate LOG: stage 2 activates the boot default
  log=$1
  system=$(boot_default)
  if [ -n "$system" ] && [ -x "$system/activate" ]; then
    ln -sfn "$system" /run/booted-system
    echo "$(date +%s) booting $system" >>"$log"
    "$system/activate" >>"$log" 2>&1 ||
      echo "boot activation of $system failed" >>"$log"
  fi
  return 0
}

boot_darwin() {  # boot_darwin LOG: nix-darwin's activate-system daemon at boot
  # launchd's org.nixos.activate-system (RunAtLoad) makes the system the
  # profile holds the current one (ln -sfn "$(cat $profile/systemConfig)"
  # /run/current-system, then the /etc part of its activation): what boots
  # is the profile, whatever the last activation did or did not finish
  log=$1
  system=$(readlink -f /nix/var/nix/profiles/system 2>/dev/null) || return 0
  [ -n "$system" ] && [ -d "$system" ] || return 0
  ln -sfn "$system" /run/current-system
  # the host's /nix may be full (a fault case): a boot goes on to sshd,
  # whatever it could not write there (host_init.sh runs under set -e)
  { [ -d /nix/var/nix/gcroots ] &&
      ln -sfn /run/current-system /nix/var/nix/gcroots/current-system; } 2>/dev/null || true
  { mkdir -p /nix/var/lab/system &&
      echo "$system" >/nix/var/lab/system/active.tmp &&
      mv /nix/var/lab/system/active.tmp /nix/var/lab/system/active; } 2>/dev/null || true
  echo "$(date +%s) boot-activation $system" >>/nix/var/lab/history-system 2>/dev/null || true
  echo "$(date +%s) booting $system (activate-system)" >>"$log"
  return 0
}
