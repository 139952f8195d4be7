# shellcheck shell=sh
# Cache mode (plugin_utils/copy/_copy.py fetch_script): the target fetches
# STORE_PATH's closure from the first of CACHES that has it; the target
# checks the signatures against its own keys. CACHES: one cache a line,
# "<1 when it needs the netrc> <URI>". NIX_DIR: where the probe found nix.
# "$@": the copy's shared nix copy words (copy-flags.sh, rendered before this
# file). Each cache's error goes to stderr.
#
# NETRC=1: stdin holds the netrc with the caches' logins. This program's text
# is in ssh's and sh's argv, which ps shows every account, so the logins come
# on stdin only: into a file of a private folder (umask 077, mktemp -d), named
# to nix by the netrc-file setting in NIX_CONFIG, in the environment of the
# nix that opens such a cache and of no other process; the folder goes when
# the program ends, however it ends.
if ! find_nix nix; then
  echo "no nix in $NIX_DIR" >&2
  exit 1
fi
umask 077
dir=$(mktemp -d) || exit 1
trap 'rm -rf "$dir"' EXIT
trap 'exit 1' HUP INT TERM
# the folder's name must stay one NIX_CONFIG value ('#' starts a comment there)
case $dir in
  *[!A-Za-z0-9_./+-]*) echo "the temporary folder $dir cannot be named in NIX_CONFIG" >&2; exit 1 ;;
esac
with_netrc=${NIX_CONFIG:-}
if [ "$NETRC" = 1 ]; then
  cat >"$dir/netrc" || exit 1
  with_netrc="${NIX_CONFIG:+$NIX_CONFIG
}netrc-file = $dir/netrc"
fi
rc=1
while read -r login cache; do
  [ -n "$cache" ] || continue
  config=${NIX_CONFIG:-}
  [ "$login" = 1 ] && config=$with_netrc
  if NIX_CONFIG=$config "$NIX_TOOL" --extra-experimental-features nix-command copy --from "$cache" "$@" "$STORE_PATH" 2>"$dir/err"; then
    rc=0
    break
  fi
  printf 'from %s:\n' "$cache" >&2
  cat "$dir/err" >&2
done <<CACHES
$CACHES
CACHES
exit "$rc"
