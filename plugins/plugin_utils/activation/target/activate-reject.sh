# shellcheck shell=sh
# The deployer's "no": its health checks failed while run RUN awaited its
# confirmation. The reason (WHY) is written first, then the canary is claimed
# by the same atomic rename a confirmation uses (so exactly one of
# confirmation, rejection and the watchdog's deadline wins); the watchdog,
# finding rejected.<run>, rolls back at once instead of at its deadline.
emit dir "$D"
emit profile "$PROFILE"
printf '%s\n' "$WHY" >"$D/reject-reason.$RUN.tmp" &&
  mv -f "$D/reject-reason.$RUN.tmp" "$D/reject-reason.$RUN"
rejected=0
canary=; IFS= read -r canary 2>/dev/null <"$D/canary" || :
if [ "$canary" = "$RUN" ] && mv "$D/canary" "$D/rejected.$RUN" 2>/dev/null; then
  rejected=1
  # its watchdog rolls back at once (lib.sh's doze)
  case $RUN in ''|.*|*/*) ;; *) wake "$D/runs/$RUN/pid" ;; esac
else
  # not ours to claim (confirmed, expired, or rejected by an earlier try of
  # this same rejection, whose reason the watchdog may not have read yet)
  [ -e "$D/rejected.$RUN" ] || rm -f "$D/reject-reason.$RUN"
fi
emit rejected "$rejected"
