# shellcheck shell=sh
# shellcheck disable=SC2034,SC2153  # NIX_TOOL: read by the scripts after this; NIX_DIRS, NIX_DIR: set before it
# The library every target script starts with (module_utils/_script.py puts
# it after the quoted values and before the script). POSIX sh only.
#
# Output protocol, read by _script.parse: one value per line,
# "@@nixdeploy key=value"; everything after a line "@@nixdeploy-log" is log
# text (value lines may still follow).

emit() {  # emit KEY VALUE...: one value line (newlines folded to spaces)
  k=$1; shift
  printf '@@nixdeploy %s=%s\n' "$k" "$(printf '%s' "$*" | tr '\n' ' ')"
}
log_section() { echo "@@nixdeploy-log"; }
fail() { emit error "$*"; exit 3; }
nap() { sleep 0.2 2>/dev/null || sleep 1; }

# find_nix TOOL: sets NIX_TOOL to the path of TOOL (nix-env, nix-store, nix)
# from NIX_DIR (remote_nix_dir) if given, else PATH, else the known
# locations NIX_DIRS (one list, from _platforms.KNOWN_NIX_DIRS; words with
# $HOME, $USER and XDG_STATE_HOME expand here). Returns 1 when not found.
find_nix() {
  NIX_TOOL=
  if [ -n "${NIX_DIR:-}" ]; then
    [ -x "$NIX_DIR/$1" ] && NIX_TOOL=$NIX_DIR/$1 && return 0
    return 1
  fi
  NIX_TOOL=$(command -v "$1" 2>/dev/null) && [ -x "$NIX_TOOL" ] && return 0
  NIX_TOOL=
  for dir in $NIX_DIRS; do
    # a constant of the platform table, never task data: expand its $HOME etc.
    dir=$(eval "printf '%s' \"$dir\"")
    [ -x "$dir/$1" ] && NIX_TOOL=$dir/$1 && return 0
  done
  return 1
}
