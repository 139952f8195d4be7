# shellcheck shell=sh
# One try of a health check (plugin_utils/activation/_health_checks.py): CHECK run by sh in its
# own process group, stopped after TICKS fifths of a second (napped), its output kept in a
# private temporary file; then its rc and whether it timed out, and the
# output's end as the log. POSIX sh only: no `timeout` (macOS has none),
# mktemp where it exists.
PATH=${PATH:-/usr/bin:/bin}:/run/current-system/sw/bin:/usr/bin:/bin:/usr/sbin:/sbin
export PATH
dir=${TMPDIR:-/tmp}
{ [ -d "$dir" ] && [ -w "$dir" ]; } || dir=$HOME
out=$(mktemp "$dir/nixdeploy-check.XXXXXX" 2>/dev/null) || {
  private=$dir/nixdeploy-check.$$
  # mkdir fails on anything already there: never write through a planted link
  mkdir -m 700 "$private" 2>/dev/null || {
    emit rc 125; emit timed_out 0; log_section
    echo "cannot create a private temporary file in $dir"; exit 0; }
  out=$private/out
}
trap 'rm -f "$out"; [ -n "${private:-}" ] && rmdir "$private" 2>/dev/null' EXIT
SETSID=
command -v setsid >/dev/null 2>&1 && SETSID=setsid
$SETSID sh -c "$CHECK" </dev/null >"$out" 2>&1 &
pid=$!
nap_start
timed_out=0
while kill -0 "$pid" 2>/dev/null; do
  if [ "$NAPPED" -ge $((TICKS * 4)) ]; then
    timed_out=1
    if [ -n "$SETSID" ]; then kill -TERM "-$pid" 2>/dev/null; fi
    kill -TERM "$pid" 2>/dev/null
    sleep 1
    if [ -n "$SETSID" ]; then kill -KILL "-$pid" 2>/dev/null; fi
    kill -KILL "$pid" 2>/dev/null
    break
  fi
  nap
done
wait "$pid"
rc=$?
emit rc "$rc"
emit timed_out "$timed_out"
log_section
tail -c 4000 "$out" 2>/dev/null
