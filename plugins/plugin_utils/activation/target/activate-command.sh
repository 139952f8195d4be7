# shellcheck shell=sh
# The platform's activation command, run as `sh -c PROGRAM activate SYSTEM
# STEP INVOKER` by activate-runner.sh, once for each step of the goal's row
# (and by activate-inspect.sh for a dry run, with no step). SYSTEM is a
# store path or a profile's generation link.
# Values, all constants of the platform table (module_utils/_platforms.py):
#   COMMAND        the program below the system's store path, then its
#                  arguments (words without blanks); {step} is STEP
#   COMMAND_ENV    NAME=VALUE words set for it, or empty
#   DRIVER_FILE, DRIVER_MIN, DRIVER_ARGS: home-manager's driver protocol:
#                  DRIVER_ARGS are added when SYSTEM/DRIVER_FILE holds a
#                  number >= DRIVER_MIN
#   PRE_FILE, PRE_AS_INVOKER, PRE_SKIP_MARK: a program below the system run
#                  first (nix-darwin's activate-user), as INVOKER (the user
#                  who logged in) when PRE_AS_INVOKER=1, unless it holds the
#                  line PRE_SKIP_MARK
system=$1 step=$2 invoker=${3:-}
set -f  # table words split on blanks, never globbed
if [ -n "$PRE_FILE" ] && [ -x "$system/$PRE_FILE" ] &&
   { [ -z "$PRE_SKIP_MARK" ] || ! grep -qxF -e "$PRE_SKIP_MARK" "$system/$PRE_FILE"; }; then
  pre=$system/$PRE_FILE
  echo "nixdeploy: running $PRE_FILE${invoker:+ as $invoker}"
  if [ "$PRE_AS_INVOKER" != 1 ] || [ -z "$invoker" ] || [ "$invoker" = "$(id -un)" ]; then
    "$pre" || exit
  elif [ "$(id -u)" = 0 ] && command -v sudo >/dev/null 2>&1; then
    # shellcheck disable=SC2086  # split on purpose: table words
    sudo -n -H -u "$invoker" -- env $COMMAND_ENV "$pre" || exit
  else
    echo "nixdeploy: cannot run $PRE_FILE as $invoker (not root, or no sudo)" >&2
    exit 1
  fi
fi
# shellcheck disable=SC2086  # split on purpose
set -- $COMMAND
program=$system/$1
shift
args=
for word in "$@"; do
  [ "$word" = '{step}' ] && word=$step
  args="$args $word"
done
if [ -n "$DRIVER_FILE" ]; then
  version=$(cat "$system/$DRIVER_FILE" 2>/dev/null)
  case $version in ''|*[!0-9]*) version=0 ;; esac
  [ "$version" -ge "$DRIVER_MIN" ] && args="$args $DRIVER_ARGS"
fi
# shellcheck disable=SC2086  # split on purpose: table words and the step
exec env $COMMAND_ENV "$program" $args
