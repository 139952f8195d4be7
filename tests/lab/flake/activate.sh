# shellcheck shell=sh
# shellcheck disable=SC2154  # OUT, PLATFORM, NAME, VERSION, BEHAVIOUR, SLOW_SECONDS: set by the entry script
# The fake activation every lab system runs (sourced by its entry script).
# It records on the host, under /nix/var/lab/<key>/, which system is active
# and which is the boot default, so tests read the truth from the host.

lab_key() {
  case "$PLATFORM" in
    nixos|darwin) echo system ;;
    nix-on-droid) echo nix-on-droid ;;
    home-manager) echo "home-manager-$(id -un)" ;;
  esac
}

lab_record() {  # lab_record FIELD: FIELD now names this system
  dir=/nix/var/lab/$(lab_key)
  mkdir -p "$dir"
  echo "$OUT" >"$dir/$1.tmp" && mv "$dir/$1.tmp" "$dir/$1"
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
  # its own session and no inherited output: it outlives this activation
  # (and a collection's timeout of it); the lab stops it by pid at down
  setsid httpd -f -p "$(cat "$OUT/lib/lab-http-port")" -h "$OUT/www" \
    </dev/null >/dev/null 2>&1 &
  echo $! >/run/lab-httpd.pid
}

lab_running() {  # NixOS: what runs now is the current system (/run is per host)
  if [ "$PLATFORM" = nixos ] && [ "$(id -u)" = 0 ] && [ -d /run/lab-power ]; then
    ln -sfn "$OUT" /run/current-system
    lab_http
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
      case "$goal" in switch|test) lab_pre_switch_checks ;; esac
      ;;
    darwin)
      if [ "$(id -u)" != 0 ]; then
        echo "$0: activation must be run as root (uid 0), not $(id -un)" >&2
        exit 2
      fi
      goal=switch
      ;;
    *)
      goal=switch
      [ "${1:-}" = --driver-version ] && driver=${2:-}
      [ -n "${DRY_RUN:-}" ] && goal=dry-activate
      ;;
  esac

  if [ "$goal" = dry-activate ]; then
    echo "would activate $NAME $VERSION ($OUT)"
    echo "would restart the following units: lab-$NAME.service"
    return 0
  fi
  echo "activating $NAME $VERSION on $PLATFORM ($goal)"
  echo "$(date +%s) $goal $OUT" >>"/nix/var/lab/history-$(lab_key)" 2>/dev/null || true

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

  case "$goal" in
    switch) lab_record active; lab_record boot ;;
    boot) lab_record boot ;;
    test) lab_record active ;;
  esac

  case "$PLATFORM" in
    nix-on-droid)
      # nix-on-droid's activate sets its own profile as its last step
      "$(lab_nix_env)" --profile /nix/var/nix/profiles/nix-on-droid --set "$OUT" || exit 1
      ;;
    home-manager)
      # without the driver protocol, home-manager's activate sets the profile
      if [ -z "$driver" ]; then
        "$(lab_nix_env)" --profile "/nix/var/nix/profiles/per-user/$(id -un)/home-manager" \
          --set "$OUT" || exit 1
      fi
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
  if [ "$BEHAVIOUR" = fail-units ]; then
    echo "warning: the following units failed: lab-$NAME.service" >&2
    [ "$PLATFORM" = nixos ] && exit 4
    exit 1
  fi
  return 0
}
