# shellcheck shell=sh
# Cache mode (module_utils/_copy.py fetch_script): the target fetches
# STORE_PATH's closure from the first of CACHES (one URI a line) that has
# it; the target checks the signatures against its own keys. NIX_DIR: where
# the probe found nix. Each cache's error goes to stderr.
if ! find_nix nix; then
  echo "no nix in $NIX_DIR" >&2
  exit 1
fi
dir=$(mktemp -d) || exit 1
rc=1
while IFS= read -r cache; do
  [ -n "$cache" ] || continue
  if "$NIX_TOOL" --extra-experimental-features nix-command copy --from "$cache" "$STORE_PATH" 2>"$dir/err"; then
    rc=0
    break
  fi
  printf 'from %s:\n' "$cache" >&2
  cat "$dir/err" >&2
done <<CACHES
$CACHES
CACHES
rm -rf "$dir"
exit "$rc"
