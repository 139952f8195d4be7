# shellcheck shell=sh
# shellcheck disable=SC2154  # OUT, PLATFORM, NAME, VERSION, BEHAVIOUR, SLOW_SECONDS, HOME_FILE: set by the entry script
# The fake activation every lab system runs (sourced by its entry script).
# It records on the host, under /nix/var/lab/<key>/, which system is active
# and which is the boot default, so tests read the truth from the host.
#
# It enforces what the platforms' real tools demand of their caller
# (docs/lab.md, "Rules of the real tools"), so a caller that gets
# one wrong fails here as on a real host:
# - NixOS switch-to-configuration: takes /run/nixos/switch-to-configuration.lock
#   without waiting ("Could not acquire lock", exit 1, nothing changed);
#   runs the pre-switch checks for every goal but boot (NIXOS_NO_CHECK=1
#   skips them); records NIXOS_INSTALL_BOOTLOADER, which nixos-rebuild
#   always passes (0 or 1).
# - nix-darwin: activate as root only; a system built before 2025 has
#   activate-user, which must have run (as the user, not root) before
#   activate, unless it is marked '# nix-darwin: deprecated' (then running
#   it fails); checkActivation=1 is a dry run; a finished activate links
#   /run/current-system to its system, and a boot links it to the system
#   profile's (tests/lab/boot.sh), not to what last ran.
# - nix-on-droid: activate's last step switches the profile to generation N
#   when run through nix-on-droid-N-link, else makes a NEW generation.
# - home-manager: activate takes nix-env from PATH; its profile folder is
#   the XDG one if it exists, else the per-user one if THAT exists, else an
#   error; with the driver protocol the caller must have set the profile
#   there; a file in the way of one it manages (home_file) aborts unless
#   HOME_MANAGER_BACKUP_EXT moves it aside; DRY_RUN=1 is a dry run.

lab_key() {
  case "$PLATFORM" in
    nixos|darwin) echo system ;;
    nix-on-droid) echo nix-on-droid ;;
    home-manager) echo "home-manager-$(id -un)" ;;
  esac
}

lab_record() {  # lab_record FIELD: FIELD now names this system (fails as a write fails)
  dir=/nix/var/lab/$(lab_key)
  mkdir -p "$dir" && echo "$OUT" >"$dir/$1.tmp" && mv "$dir/$1.tmp" "$dir/$1" && return 0
  rm -f "$dir/$1.tmp"
  return 1
}

lab_nix_env() {
  for candidate in "$(command -v nix-env 2>/dev/null)" "$HOME/.nix-profile/bin/nix-env" \
      /nix/var/nix/profiles/default/bin/nix-env /usr/bin/nix-env; do
    [ -n "$candidate" ] && [ -x "$candidate" ] && { echo "$candidate"; return; }
  done
  echo nix-env
}

lab_http() {  # NixOS as root: the system's own busybox httpd, if it has one
  if [ -f /run/lab-httpd.pid ]; then
    old=$(cat /run/lab-httpd.pid)
    kill "$old" 2>/dev/null || true
    # gone before the next one binds the port
    tries=0
    while kill -0 "$old" 2>/dev/null && [ "$tries" -lt 50 ]; do
      sleep 0.1; tries=$((tries + 1))
    done
    rm -f /run/lab-httpd.pid
  fi
  [ -f "$OUT/lib/lab-http-port" ] || return 0
  if [ -d /run/systemd/system ] && [ -n "${INVOCATION_ID:-}" ]; then
    # activated from a systemd unit, whose processes end with it: a service
    # of its own, as the real system's services are
    systemctl stop lab-httpd.service 2>/dev/null || true
    systemd-run --unit=lab-httpd --collect --quiet httpd -f \
      -p "$(cat "$OUT/lib/lab-http-port")" -h "$OUT/www" || true
    return 0
  fi
  # its own session and no inherited output: it outlives this activation
  # (and a collection's timeout of it); the lab stops it by pid at down
  # (not holding switch-to-configuration's lock, fd 9)
  setsid httpd -f -p "$(cat "$OUT/lib/lab-http-port")" -h "$OUT/www" \
    </dev/null >/dev/null 2>&1 9>&- &
  echo $! >/run/lab-httpd.pid
}

lab_unit_name() {  # "x" and "x.service" name one unit, as for systemctl
  case "$1" in *.*) echo "$1" ;; *) echo "$1.service" ;; esac
}

lab_start_unit() {  # lab_start_unit UNIT COMMAND...: a transient service, queued now
  start_unit=$1
  shift
  start_tries=0
  # the unit's previous run may not be collected yet: ask again
  until systemd-run --quiet --no-block --unit="$start_unit" \
      --description="lab $NAME $VERSION: $start_unit" "$@" </dev/null 2>/dev/null; do
    start_tries=$((start_tries + 1))
    if [ "$start_tries" -ge 50 ]; then
      echo "lab: could not start $start_unit" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "$start_unit" >>/run/lab-units
}

lab_wait_unit() {  # lab_wait_unit UNIT is-active|is-failed: at most 10 s
  wait_tries=0
  until systemctl "$2" --quiet -- "$1" </dev/null || [ "$wait_tries" -ge 100 ]; do
    sleep 0.1; wait_tries=$((wait_tries + 1))
  done
}

lab_units() {
  # On a host where systemd runs (a systemd lab host) the system's units are
  # real ones: its own service lab-$NAME.service runs, and each unit of the
  # failed_units knob is a service that fails (systemd-run ... false, not
  # collected: `systemctl is-active` says failed, `systemctl --failed` lists
  # it) by the time the activation returns. A switch or test first stops
  # the units the previous activation started and forgets their failure (as
  # switch-to-configuration's `systemctl reset-failed` and its restarts do),
  # so a good system clears them; a reboot starts with none. Plain lab hosts
  # have no systemd: the lab's systemctl answers from lib/lab-failed-units.
  [ -d /run/systemd/system ] || return 0
  if [ -f /run/lab-units ]; then
    # shellcheck disable=SC2013  # unit names are words, one a line
    for unit in $(cat /run/lab-units); do
      systemctl stop -- "$unit" </dev/null 2>/dev/null
      systemctl reset-failed -- "$unit" </dev/null 2>/dev/null
    done
    rm -f /run/lab-units
  fi
  own=lab-$NAME.service
  failing=
  # shellcheck disable=SC2013  # unit names are words, one a line
  for unit in $(cat "$OUT/lib/lab-failed-units" 2>/dev/null); do
    unit=$(lab_unit_name "$unit")
    case "$unit" in
      *.service) lab_start_unit "$unit" false && failing="$failing $unit" ;;
      *) echo "lab: $unit: only services can fail in the lab" >&2 ;;
    esac
  done
  case " $failing " in
    *" $own "*) ;;
    *) lab_start_unit "$own" "$(command -v sleep)" 2147483647 && lab_wait_unit "$own" is-active ;;
  esac
  for unit in $failing; do lab_wait_unit "$unit" is-failed; done
  return 0
}

lab_running() {  # NixOS: what runs now is the current system (/run is per host)
  if [ "$PLATFORM" = nixos ] && [ "$(id -u)" = 0 ] && [ -d /run/lab-power ]; then
    ln -sfn "$OUT" /run/current-system
    lab_http
    lab_units
  fi
}

lab_darwin_current() {
  # nix-darwin's activate, as its last step (set -e: only when every step
  # before it succeeded): this system is the current one, and a GC root
  [ "$PLATFORM" = darwin ] && [ -d /run/lab-power ] || return 0
  ln -sfn "$OUT" /run/current-system
  [ -d /nix/var/nix/gcroots ] && ln -sfn /run/current-system /nix/var/nix/gcroots/current-system
  return 0
}

lab_switch_lock() {
  # switch-to-configuration's own lock, as on NixOS: never waited for
  [ "$(id -u)" = 0 ] && [ -d /run/lab-power ] || return 0
  mkdir -p /run/nixos
  exec 9>>/run/nixos/switch-to-configuration.lock
  if ! flock -n 9; then
    echo "Could not acquire lock" >&2
    exit 1
  fi
}

lab_hm_profile_dir() {  # home-manager's setupVars: where its profile lives
  state_home=${XDG_STATE_HOME:-$HOME/.local/state}
  global=/nix/var/nix/profiles/per-user/$USER
  if [ -d "$state_home/nix/profiles" ]; then
    echo "$state_home/nix/profiles"
  elif [ -d "$global" ]; then
    echo "$global"
  else
    echo "Could not find suitable profile directory, tried $state_home/nix/profiles and $global" >&2
    return 1
  fi
}

lab_hm_checks() {  # home-manager's activate, before it changes anything
  if ! command -v nix-env >/dev/null 2>&1; then
    # activate runs `nix-env` (and nix-build) from PATH under set -eu
    echo "$0: line 1: nix-env: command not found (home-manager's activate takes Nix from PATH: $PATH)" >&2
    exit 127
  fi
  HM_PROFILE_DIR=$(lab_hm_profile_dir) || exit 1
  [ -n "${HOME_FILE:-}" ] || return 0
  target=$HOME/$HOME_FILE
  if [ -e "$target" ] && ! { [ -L "$target" ] && case $(readlink "$target") in /nix/store/*) true ;; *) false ;; esac; }; then
    if [ -n "${HOME_MANAGER_BACKUP_EXT:-}" ]; then
      if [ -e "$target.$HOME_MANAGER_BACKUP_EXT" ]; then
        echo "Existing file '$target.$HOME_MANAGER_BACKUP_EXT' would be clobbered by backing up '$target'" >&2
        exit 1
      fi
      [ "$goal" = dry-activate ] || mv "$target" "$target.$HOME_MANAGER_BACKUP_EXT"
      echo "Existing file '$target' is in the way of '$OUT/lab-info', will be moved to '$target.$HOME_MANAGER_BACKUP_EXT'"
    else
      echo "Existing file '$target' is in the way of '$OUT/lab-info'" >&2
      echo "Please do one of the following:" >&2
      echo "- Move or remove the above files and try again." >&2
      echo "- In standalone mode, use 'home-manager switch -b backup' to back up files automatically." >&2
      exit 1
    fi
  fi
}

lab_darwin_activate_user() {  # nix-darwin before 2025: run by darwin-rebuild as the user
  if [ "$(id -u)" = 0 ]; then
    echo "lab: activate-user must run as the user who deploys, not as root" >&2
    exit 1
  fi
  echo "$OUT $(id -un)" >"/nix/var/lab/darwin-activate-user.tmp.$$" &&
    mv -f "/nix/var/lab/darwin-activate-user.tmp.$$" /nix/var/lab/darwin-activate-user
  echo "activating the user settings of $NAME $VERSION as $(id -un)"
}

lab_darwin_checks() {  # activate: root, and activate-user first where it is not deprecated
  if [ "$(id -u)" != 0 ]; then
    echo "$0: activation must be run as root (uid 0), not $(id -un)" >&2
    exit 2
  fi
  # darwin-rebuild check runs activate alone
  [ "$goal" != dry-activate ] && [ -x "$OUT/activate-user" ] || return 0
  grep -qxF '# nix-darwin: deprecated' "$OUT/activate-user" && return 0
  ran=$(cat /nix/var/lab/darwin-activate-user 2>/dev/null)
  if [ "${ran%% *}" != "$OUT" ]; then
    echo "lab: $OUT/activate-user did not run before activate (darwin-rebuild runs it as the user first)" >&2
    exit 1
  fi
}

lab_pre_switch_checks() {
  # NixOS 25.11's switchInhibitors check, with its real messages: a switch
  # (or test) into a system whose inhibitors differ from the running one's
  # is refused and changes nothing; NIXOS_NO_CHECK=1 overrides
  [ "${NIXOS_NO_CHECK:-}" = 1 ] && return 0
  current=/run/current-system/lib/lab-inhibitors
  [ -f "$current" ] || return 0
  printf 'Checking switch inhibitors...' >&2
  changes=$(awk -F '\t' 'NR == FNR { if ($1 != "") old[$1] = $2; next }
    ($1 in old) && old[$1] != $2 { print $1 " : " old[$1] " -> " $2 }' \
    "$current" "$OUT/lib/lab-inhibitors")
  if [ -z "$changes" ]; then
    echo " done" >&2
    return 0
  fi
  {
    echo
    echo "There are changes to critical components of the system:"
    echo
    echo "$changes"
    echo
    echo "Switching into this system is not recommended."
    echo "You probably want to run 'nixos-rebuild boot' and reboot your system instead."
    echo
    echo "If you really want to switch into this configuration directly, then"
    echo "you can set NIXOS_NO_CHECK=1 to ignore pre-switch checks."
    echo
    echo "WARNING: doing so might cause the switch to fail or your system to become unstable."
    echo
    echo "Pre-switch check 'switchInhibitors' failed"
    echo "Pre-switch checks failed"
  } >&2
  exit 1
}

lab_boot() {
  # NixOS stage 2: the lab's boot (host_init.sh) has set /run/booted-system
  # and runs this; the booted system becomes the active one
  echo "activating $NAME $VERSION at boot"
  echo "$(date +%s) boot-activation $OUT" >>"/nix/var/lab/history-$(lab_key)" 2>/dev/null || true
  lab_record active
  lab_running
  if [ "$BEHAVIOUR" = break-network ]; then
    echo "lab: $NAME takes the network down at boot"
    ip link set eth0 down
  fi
  return 0
}

lab_main() {
  entry=$1
  shift
  driver=
  case "$PLATFORM" in
    nixos)
      if [ "$entry" = activate ]; then lab_boot; return 0; fi
      goal=${1:-}
      case "$goal" in
        switch|boot|test|dry-activate) ;;
        *) echo "Usage: switch-to-configuration [switch|boot|test|dry-activate]" >&2; exit 1 ;;
      esac
      lab_switch_lock
      # every goal but boot, dry-activate included
      case "$goal" in switch|test|dry-activate) lab_pre_switch_checks ;; esac
      ;;
    darwin)
      if [ "$entry" = activate-user ]; then lab_darwin_activate_user; return 0; fi
      goal=switch
      [ "${checkActivation:-}" = 1 ] && goal=dry-activate
      lab_darwin_checks
      ;;
    *)
      goal=switch
      [ "${1:-}" = --driver-version ] && driver=${2:-}
      [ -n "${DRY_RUN:-}" ] && goal=dry-activate
      [ "$PLATFORM" = home-manager ] && lab_hm_checks
      ;;
  esac

  if [ "$goal" = dry-activate ]; then
    echo "would activate $NAME $VERSION ($OUT)"
    echo "would restart the following units: lab-$NAME.service"
    return 0
  fi
  echo "activating $NAME $VERSION on $PLATFORM ($goal)"
  extra=
  # nixos-rebuild always passes it, 0 or 1
  [ "$PLATFORM" = nixos ] && extra=" install-bootloader=${NIXOS_INSTALL_BOOTLOADER-unset}"
  echo "$(date +%s) $goal $OUT$extra" >>"/nix/var/lab/history-$(lab_key)" 2>/dev/null || true

  case "$BEHAVIOUR" in
    fail)
      echo "lab: activation of $NAME $VERSION failed on purpose" >&2
      exit 1
      ;;
    hang)
      echo "lab: activation of $NAME hangs on purpose"
      while :; do sleep 3600; done
      ;;
    slow)
      # slow but fine: time to cut an ssh session mid-activation, or an
      # activation longer than a confirmation window (slow_seconds, default 6)
      echo "lab: activation of $NAME is slow on purpose (${SLOW_SECONDS:-6}s)"
      sleep "${SLOW_SECONDS:-6}"
      ;;
  esac

  # a system that cannot write its state (a full /nix) fails, as a real
  # activation that cannot write its files does: never a switch that says done
  case "$goal" in
    switch) lab_record active && lab_record boot ;;
    boot) lab_record boot ;;
    test) lab_record active ;;
  esac || { echo "lab: activation of $NAME $VERSION could not record its state" >&2; exit 1; }

  case "$PLATFORM" in
    nix-on-droid)
      # nix-on-droid's activate sets its own profile as its last step: back
      # to generation N when run through nix-on-droid-N-link, else a NEW one
      link=$(dirname "$0")
      case ${link##*/} in
        nix-on-droid-*-link)
          number=${link##*/nix-on-droid-}; number=${number%-link}
          "$(lab_nix_env)" --profile /nix/var/nix/profiles/nix-on-droid \
            --switch-generation "$number" || exit 1
          ;;
        *)
          "$(lab_nix_env)" --profile /nix/var/nix/profiles/nix-on-droid --set "$OUT" || exit 1
          ;;
      esac
      ;;
    home-manager)
      if [ -z "$driver" ]; then
        # without the driver protocol, home-manager's activate sets the profile
        nix-env --profile "$HM_PROFILE_DIR/home-manager" --set "$OUT" || exit 1
      elif [ "$(readlink -f "$HM_PROFILE_DIR/home-manager")" != "$OUT" ]; then
        echo "lab: the caller did not set $HM_PROFILE_DIR/home-manager to $OUT (the driver protocol leaves that to it)" >&2
        exit 1
      fi
      if [ -n "${HOME_FILE:-}" ]; then ln -sfn "$OUT/lab-info" "$HOME/$HOME_FILE"; fi
      ;;
  esac

  if [ "$goal" != boot ]; then lab_running; fi
  if [ "$(id -u)" = 0 ] && [ "$goal" != boot ]; then
    case "$BEHAVIOUR" in
      break-network)
        echo "lab: $NAME takes the network down"
        ip link set eth0 down
        ;;
      *)
        # a good system has a working network: bring it back if it was cut
        ip link set eth0 up 2>/dev/null || true
        ;;
    esac
  fi
  # the configuration's on_activate knob: a test's own sh
  # shellcheck disable=SC1091  # written by build-system.sh
  . "$OUT/lib/on-activate.sh" || exit 1
  if [ "$BEHAVIOUR" = fail-units ] || { [ "$BEHAVIOUR" = fail-units-once ] &&
       mkdir "/nix/var/lab/units-failed-${OUT##*/}" 2>/dev/null; }; then
    # fail-units-once: only the first activation (a restart repairs the unit)
    echo "warning: the following units failed: lab-$NAME.service" >&2
    [ "$PLATFORM" = nixos ] && exit 4
    exit 1
  fi
  lab_darwin_current
  return 0
}
