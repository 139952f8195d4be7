# shellcheck shell=sh
# The platform's activation command, run as `sh -c PROGRAM activate SYSTEM
# GOAL` by activate-runner.sh (and activate-inspect.sh for a dry run).
# Values, all constants of the platform table (module_utils/_platforms.py):
#   COMMAND        the program below the system's store path, then its
#                  arguments (words without blanks); {goal} is GOAL
#   COMMAND_ENV    NAME=VALUE words set for it, or empty
#   DRIVER_FILE, DRIVER_MIN, DRIVER_ARGS: home-manager's driver protocol:
#                  DRIVER_ARGS are added when SYSTEM/DRIVER_FILE holds a
#                  number >= DRIVER_MIN
system=$1 goal=$2
set -f  # table words split on blanks, never globbed
# shellcheck disable=SC2086  # split on purpose
set -- $COMMAND
program=$system/$1
shift
args=
for word in "$@"; do
  [ "$word" = '{goal}' ] && word=$goal
  args="$args $word"
done
if [ -n "$DRIVER_FILE" ]; then
  version=$(cat "$system/$DRIVER_FILE" 2>/dev/null)
  case $version in ''|*[!0-9]*) version=0 ;; esac
  [ "$version" -ge "$DRIVER_MIN" ] && args="$args $DRIVER_ARGS"
fi
# shellcheck disable=SC2086  # split on purpose: table words and the goal
exec env $COMMAND_ENV "$program" $args
