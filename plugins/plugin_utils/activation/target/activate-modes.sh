# shellcheck shell=sh
# shellcheck disable=SC2034  # ACTIVATED, ROLLED_BACK, CAUSE: written by activate-runner.sh's status
# The detached run's two modes (rendered after activate-runner.sh, which sets
# up the run, its status, lock, activation, watchdog and rollback): MODE
# activate takes the lock, sets the profile, activates and keeps the watchdog
# until the confirmation; MODE rollback goes back to a generation on request.
# Values: RunnerValues (plugin_utils/activation/_runner_values.py), as for
# activate-runner.sh.
is_current() {  # what the goal needs to be NEW already (CURRENT_WHEN, from the goals table)
  case $CURRENT_WHEN in
    active) [ "$ACTIVE_BEFORE" = "$NEW" ] ;;
    profile) [ "$PREV_PATH" = "$NEW" ] ;;
    *) [ "$PREV_PATH" = "$NEW" ] && [ "$ACTIVE_BEFORE" = "$NEW" ] ;;
  esac
}
take_lock() {
  # the lock is mostly free: the state that says so goes to the log, the
  # status file gets the next one (acquire writes it when the lock is taken)
  status waiting_lock "" later
  acquire || { status failed "timed out after ${LOCK_TIMEOUT}s waiting for the lock of $PROFILE, held by pid ${LOCK_OWNER:-?} (run ${LOCK_RUN:-?}${WAITING_FOR:+, at its $WAITING_FOR}): wait for that run to end, or raise nix_lock_timeout"; exit 1; }
  echo "$RUN" >"$D/last.tmp" && mv -f "$D/last.tmp" "$D/last"
  # another switch of the platform's own (an auto-upgrade) first: before the
  # profile is read or moved
  wait_switch_lock || { CAUSE=switch_locked; status failed "another switch held $SWITCH_LOCK for more than ${LOCK_TIMEOUT}s (an auto-upgrade?): nothing was changed"; exit 1; }
  current_gen; PREV_GEN=$CUR_GEN; gen_path "$PREV_GEN"; PREV_PATH=$GEN_PATH
  active_path; ACTIVE_BEFORE=$ACTIVE_PATH
}
reactivate() {
  # asked to run the activation of the current system again (deploy-rs and
  # colmena always do: it restarts failed units, reinstalls the boot
  # loader); there is nothing else to roll back to
  status running "re-activating $NEW (already current)"
  run_activation "$(via "$PREV_GEN" "$NEW")" "$STEPS $CONFIRMED_STEPS"
  ACTIVATED=1
  if [ "$RC" != 0 ]; then
    [ "$BUSY" = 1 ] && ACTIVATED=0 CAUSE=switch_locked
    status failed "re-activating the current system $NEW: $(failure_reason) (nothing else to roll back to)"
    exit 1
  fi
  record_active "$RECORDS_ACTIVE" "$NEW"
  release_root
  status "done" "re-activated $NEW (it was already current)"
  exit 0
}
main_activate() {
  take_lock
  if is_current; then
    [ "$REACTIVATE" = 1 ] && reactivate
    # the profile as take_lock just read it, under the lock
    release_root "$PREV_PATH"
    status unchanged "$NEW is already the current and active generation"; exit 0
  fi
  [ -e "$NEW" ] || { status failed "$NEW is not in the target's store: copy its closure first"; exit 1; }
  status running ""
  if [ "$SET_PROFILE" = 1 ]; then
    if ! out=$("$NIX_ENV" --profile "$PROFILE" --set "$NEW" 2>&1); then
      # nothing was activated; a generation nix-env made but could not switch to is not current
      note=$(full_note); room; one_line "$out"
      current_gen
      status failed "nix-env --set $PROFILE failed: $ONE_LINE$note (nothing was activated, $PROFILE is left at generation ${CUR_GEN:-none})"
      exit 1
    fi
    [ -z "$out" ] || printf '%s\n' "$out"
    current_gen; NEW_GEN=$CUR_GEN
  fi
  run_activation "$NEW" "$STEPS"
  if [ "$SETS_OWN_PROFILE" = 1 ]; then current_gen; NEW_GEN=$CUR_GEN; [ "$NEW_GEN" != "$PREV_GEN" ] || NEW_GEN=; fi
  # refused in the first step: nothing was activated (a later step's
  # refusal follows an activation, and is a failure like any other)
  if [ "$RC" = 1 ] && [ "$STEPS_DONE" = 0 ] &&
     tail -c +"$((LOG_AT + 1))" "$RD/log" | grep -qF -e "$REFUSAL_MARK"; then
    refused
  fi
  [ "$BUSY" = 1 ] && switch_busy
  if [ "$RC" != 0 ]; then
    reason=$(failure_reason)$(full_note)
    [ "$AUTO" = 1 ] && rollback "$reason" activation_failed
    ACTIVATED=1; status failed "$reason (auto rollback is off)"; exit 1
  fi
  ACTIVATED=1
  [ "$MAGIC" = 1 ] && watchdog
  [ -z "$CONFIRMED_STEPS" ] || after_confirmation
  record_active "$RECORDS_ACTIVE" "$NEW"
  release_root
  status "done" ""
}
after_confirmation() {
  # NEW runs and is confirmed: the steps that make it the boot default.
  # One that fails leaves a host that runs NEW but boots the previous
  # system: rolled back (the previous system again, and its boot default),
  # or with auto rollback off reported as it is
  status running "confirmed: making $NEW the boot default"
  run_activation "$NEW" "$CONFIRMED_STEPS"
  [ "$RC" = 0 ] && return 0
  reason="$NEW was confirmed, but making it the boot default failed: $(failure_reason)$(full_note)"
  [ "$AUTO" = 1 ] && rollback "$reason" activation_failed
  status failed "$reason (auto rollback is off: $NEW runs, the host boots the previous system)"
  exit 1
}
main_rollback() {
  # what the host ran when the rollback was asked: another run holding the
  # lock (an interrupted deploy's watchdog) may move it while this one waits
  current_gen; ASKED_GEN=$CUR_GEN
  take_lock
  [ -n "$PREV_GEN" ] || { status failed "$PROFILE has no generations to roll back to"; exit 1; }
  target_gen=$GENERATION
  # "one generation back" meant from what the host ran then: once another
  # run has moved it, a second step back is not what was asked
  if [ -z "$target_gen" ] && [ -n "$ASKED_GEN" ] && [ "$ASKED_GEN" != "$PREV_GEN" ]; then
    status unchanged "while this rollback waited for the lock, another run (an interrupted deploy's watchdog, or a deploy) moved $PROFILE from generation $ASKED_GEN to $PREV_GEN: left there, not rolled back further (run the rollback again to go one more generation back)"
    exit 0
  fi
  # a goal that leaves the profile alone (test): a test activation in effect
  # is undone by the profile's current generation, the profile never moves
  if [ -z "$target_gen" ] && [ "$ROLLBACK_MOVES" != 1 ] && [ -n "$ACTIVE_BEFORE" ] &&
     [ "$ACTIVE_BEFORE" != "$PREV_PATH" ]; then
    target_gen=$PREV_GEN
  fi
  [ -n "$target_gen" ] || target_gen=$(list_gens | awk -v c="$PREV_GEN" '$1 < c' | tail -n 1)
  [ -n "$target_gen" ] || { status failed "$PROFILE has no generation before $PREV_GEN"; exit 1; }
  gen_path "$target_gen"; NEW=$GEN_PATH
  if [ -z "$NEW" ] || [ ! -e "$NEW" ]; then
    status failed "generation $target_gen of $PROFILE does not exist (there are: $(list_gens | tr '\n' ' '))"; exit 1
  fi
  if [ "$target_gen" = "$PREV_GEN" ] && [ "$ACTIVE_BEFORE" = "$NEW" ]; then
    status unchanged "generation $target_gen is already current and active"; exit 0
  fi
  status running ""
  if [ "$SETS_OWN_PROFILE" != 1 ] && [ "$ROLLBACK_MOVES" = 1 ]; then
    "$NIX_ENV" --profile "$PROFILE" --switch-generation "$target_gen" || {
      status failed "could not switch $PROFILE to generation $target_gen"; exit 1; }
  fi
  run_activation "$(via "$target_gen" "$NEW")" "$ROLLBACK_STEPS"
  NEW_GEN=$target_gen
  if [ "$RC" != 0 ]; then
    reason="activating generation $target_gen failed: $(failure_reason)"
    if [ "$AUTO" = 1 ] && [ "$BUSY" != 1 ]; then
      back=$PREV_PATH
      [ "$ROLLBACK_MOVES" = 1 ] || back=${ACTIVE_BEFORE:-$PREV_PATH}
      current_gen; [ "$CUR_GEN" = "$PREV_GEN" ] || "$NIX_ENV" --profile "$PROFILE" --switch-generation "$PREV_GEN"
      run_activation "$(via "$PREV_GEN" "$back")" "$ROLLBACK_STEPS"
      reason="$reason; $back re-activated (exit code $RC)"
    elif [ "$BUSY" = 1 ]; then
      current_gen; [ "$CUR_GEN" = "$PREV_GEN" ] || "$NIX_ENV" --profile "$PROFILE" --switch-generation "$PREV_GEN"
      CAUSE=switch_locked reason="$reason: nothing was activated, $PROFILE is back at generation $PREV_GEN"
    fi
    status failed "$reason"; exit 1
  fi
  ACTIVATED=1 ROLLED_BACK=1
  record_active "$ROLLBACK_RECORDS_ACTIVE" "$NEW"
  # the generation this rollback undoes (a boot default that failed after a reboot)
  if [ -n "$DROP_GEN" ] && [ "$DROP_GEN" != "$target_gen" ]; then
    "$NIX_ENV" --profile "$PROFILE" --delete-generations "$DROP_GEN" ||
      echo "nixdeploy: could not delete generation $DROP_GEN"
  fi
  status "done" "${WHY:-rolled back to generation $target_gen on request}"
}
case $MODE in
  activate) main_activate ;;
  rollback) main_rollback ;;
esac
