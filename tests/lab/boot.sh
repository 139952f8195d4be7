# shellcheck shell=sh
# The NixOS persona's stage 2, shared by every lab host: sourced by
# host_init.sh on plain hosts and, on systemd hosts, by the lab-boot.service
# that nspawn.py installs in the machine (a copy of this file at
# /etc/lab/boot.sh). boot_default is what the boot loader starts;
# boot_activate makes it the booted, active and current system.

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
