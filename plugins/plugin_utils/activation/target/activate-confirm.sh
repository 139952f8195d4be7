# shellcheck shell=sh
# The confirmation: claim the canary by renaming it (the watchdog does the
# same at its deadline; rename is atomic, so exactly one of them wins).
# activate-poll.sh follows, for the claimed run (or RUN, or the last one).
emit dir "$D"
emit profile "$PROFILE"
claimed=
if [ "$CLAIM" = 1 ] && mv "$D/canary" "$D/canary.confirm.$$" 2>/dev/null; then
  read -r claimed 2>/dev/null <"$D/canary.confirm.$$" || :
  rm -f "$D/canary.confirm.$$"
  # its watchdog looks at once (lib.sh's doze); a run's name is a file name
  case $claimed in ''|.*|*/*) ;; *) wake "$D/runs/$claimed/pid" ;; esac
fi
emit claimed "$claimed"
# one-line files, read by the shell (cat is a process)
if [ -e "$D/canary" ]; then
  pending=; IFS= read -r pending 2>/dev/null <"$D/canary" || :; emit pending "$pending"
fi
last=; IFS= read -r last 2>/dev/null <"$D/last" || :
emit last "$last"
# then wait for the run to record the outcome, in this same session
RUN=${claimed:-${RUN:-$last}}
[ -n "$RUN" ] || exit 0
