# shellcheck shell=sh
# Prune stale keys (REMOVE, one path a line) and record existing keys not
# listed yet (ADD). Values: removed_<n>, remove_failed_<n>, kept_<n>.
n=0
while IFS= read -r p; do
  [ -n "$p" ] || continue
  n=$((n + 1))
  if [ -d "$p" ] && [ ! -L "$p" ]; then emit "kept_$n" "$p is a folder now; not removed"; continue; fi
  if [ -e "$p" ] || [ -L "$p" ]; then
    if err=$(rm -f -- "$p" 2>&1); then emit "removed_$n" "$p"
    else emit "remove_failed_$n" "$p: $err"; fi
  fi
done <<REMOVE
$REMOVE
REMOVE
(umask 022 && mkdir -p -- "$MB") || fail "cannot create $MB"
{
  if [ -f "$MANIFEST" ]; then
    while IFS= read -r p; do
      [ -n "$p" ] || continue
      if printf '%s\n' "$REMOVE" | grep -Fxq -- "$p" && [ ! -e "$p" ] && [ ! -L "$p" ]; then continue; fi
      printf '%s\n' "$p"
    done <"$MANIFEST"
  fi
  printf '%s\n' "$ADD" | while IFS= read -r p; do
    [ -n "$p" ] && ! listed "$p" && printf '%s\n' "$p"
  done
} | awk '!seen[$0]++' >"$MANIFEST.tmp.$$" || fail "cannot write $MANIFEST.tmp.$$"
mv -f -- "$MANIFEST.tmp.$$" "$MANIFEST" || fail "cannot update $MANIFEST"
emit finished 1
