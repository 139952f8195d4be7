#!/bin/sh
# The lab's systemctl, bind-mounted over /usr/bin/systemctl inside every lab
# host's mount namespace, so the machine's own is never reached from a host.
# The machine's reboot, poweroff, halt and shutdown are links to systemctl:
# they land here too. A power request goes to the lab's supervisor through
# /run/lab-power (tests/lab/supervisor.py), which takes the host down and
# boots it again; `is-active` answers from the running system's
# failed_units knob (/run/current-system/lib/lab-failed-units). Systemd lab
# hosts (tests/lab/nspawn.py) have systemd's own systemctl instead; there the
# fixture's activation makes those units real failed ones (flake/activate.sh).
set -uf  # no globbing: unit names are words, not patterns

power() {  # power reboot|poweroff
  if [ "$(id -u)" != 0 ]; then
    echo "Failed to $1 system via logind: Access denied" >&2
    exit 1
  fi
  echo "$1" >/run/lab-power/request.tmp && mv -f /run/lab-power/request.tmp /run/lab-power/request
  exit 0
}

unit_state() {  # unit_state UNIT: active, or failed when the system says so
  failed=/run/current-system/lib/lab-failed-units
  name=$1
  case "$name" in *.*) ;; *) name=$name.service ;; esac
  # "x" and "x.service" name one unit, in the knob as on the command line
  if [ -f "$failed" ] && grep -qxF -e "$name" -e "${name%.service}" "$failed"; then
    echo failed
  else
    echo active
  fi
}

case "${0##*/}" in
  reboot) power reboot ;;
  poweroff | halt) power poweroff ;;
  shutdown)
    case " $* " in *" -r "* | *" --reboot "*) power reboot ;; esac
    power poweroff
    ;;
esac

quiet=0
command=
units=
for arg in "$@"; do
  case "$arg" in
    -q | --quiet) quiet=1 ;;
    --) ;;
    -*) ;;
    *) if [ -z "$command" ]; then command=$arg; else units="$units $arg"; fi ;;
  esac
done

case "$command" in
  reboot | kexec | soft-reboot) power reboot ;;
  poweroff | halt) power poweroff ;;
  is-active)
    rc=0
    for unit in $units; do
      state=$(unit_state "$unit")
      [ "$quiet" = 1 ] || echo "$state"
      [ "$state" = active ] || rc=3
    done
    exit "$rc"
    ;;
  is-failed)
    rc=1
    for unit in $units; do
      state=$(unit_state "$unit")
      [ "$quiet" = 1 ] || echo "$state"
      [ "$state" = failed ] && rc=0
    done
    exit "$rc"
    ;;
  *)
    echo "lab systemctl: '$command' is not simulated in the lab" >&2
    exit 1
    ;;
esac
