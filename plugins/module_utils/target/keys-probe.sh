# shellcheck shell=sh
# The nix_keys probe: the facts of each handled key (KEY_PATHS, one a line),
# with PRUNE=1 the manifest's entries not in KEEP. Values: stat_<i> "kind
# listed [sha256 mode owner group uid gid]", stale_<n> "exists path".
emit uid "$(id -u)"
emit hash "$HASH"
i=0
while IFS= read -r p; do
  [ -n "$p" ] || continue
  l=0; listed "$p" && l=1
  if [ -L "$p" ]; then emit "stat_$i" "link $l"
  elif [ -f "$p" ]; then
    h=$(sha "$p"); [ -n "$h" ] || h=-
    f=$(facts "$p") || f='- - - - -'
    emit "stat_$i" "file $l $h $f"
  elif [ -e "$p" ]; then emit "stat_$i" "other $l"
  else emit "stat_$i" "absent $l"; fi
  i=$((i + 1))
done <<KEYS
$KEY_PATHS
KEYS
n=0
if [ "$PRUNE" = 1 ] && [ -f "$MANIFEST" ]; then
  while IFS= read -r p; do
    [ -n "$p" ] || continue
    wanted "$p" && continue
    if [ -e "$p" ] || [ -L "$p" ]; then e=1; else e=0; fi
    emit "stale_$n" "$e $p"
    n=$((n + 1))
  done <"$MANIFEST"
fi
emit probed 1
