# shellcheck shell=sh
# The detached run of nix_activate (started by activate-launch.sh from the
# file runs/<run>/runner.sh, rendered after lib.sh and activate-lib.sh, and
# before activate-lock.sh, its locks, and activate-modes.sh, which runs its
# MODE): status, profile, activation, watchdog, rollback. Arguments: state folder,
# profile, nix-env, HOME, USER, the launching session's PATH and the user
# who logged in. Its values (RUN, MODE, NEW, STEPS, ...) are the fields of
# one object, each described there: plugin_utils/activation/_runner_values.py
# (RunnerValues), set in one block at the program's top.
D=$1 PROFILE=$2 NIX_ENV=$3 HOME=$4 USER=$5 SESSION_PATH=$6 INVOKER=${7:-}
# its own PATH: a systemd unit starts with systemd's (on NixOS only systemd's
# bin). What the session had, the folder nix-env is in, then the usual ones.
PATH=${NIX_ENV%/*}:${SESSION_PATH:-/usr/bin:/bin}:/run/current-system/sw/bin:/usr/bin:/bin:/usr/sbin:/sbin
export HOME USER PATH
# home-manager's -b: a file in the way is moved aside, not fatal
if [ -n "$BACKUP_ENV" ] && [ -n "$BACKUP_EXT" ]; then export "$BACKUP_ENV=$BACKUP_EXT"; fi
RD=$D/runs/$RUN
# under systemd, status lines also go to the unit's journal (fd 3)
if [ -n "${INVOCATION_ID:-}" ]; then exec 3>&1; else exec 3>/dev/null; fi
exec </dev/null >>"$RD/log" 2>&1
trap '' HUP
umask 022
echo $$ >"$RD/pid"
# the boot beside the pid: after a reboot that pid may be another process's
# (activate-poll.sh tells a run that died with its host by it); no /proc
# (macOS): none, the pid alone
boot_id; { echo "$BOOT" >"$RD/boot"; } 2>/dev/null || :
SETSID=; command -v setsid >/dev/null 2>&1 && SETSID=setsid
# its loops look at the time five times a second: lib.sh's clock, no process a look
clock_init
STATE=starting REASON='' PREV_GEN='' PREV_PATH='' NEW_GEN='' ACTIVE_BEFORE='' ACTIVATED=0
ROLLED_BACK=0 CONFIRMED=0 RC='' LOCKED=0 STARTED=$EPOCH CAUSE='' WAITING_FOR=''
# the new system becomes the boot default only once it is confirmed (its
# CONFIRMED_STEPS): until then what boots is the previous one
BOOT_WHEN_CONFIRMED=0; [ -z "$CONFIRMED_STEPS" ] || BOOT_WHEN_CONFIRMED=1
BUSY=0 LOG_AT=0 STEPS_DONE=0
generations_of
status() {  # status STATE REASON [later]
  STATE=$1; one_line "$2"; REASON=$ONE_LINE; stamp
  # a run's end frees the profile first: whoever reads that it ended (now
  # at once, see wake) finds the lock free for the next run
  case " $TERMINAL " in *" $STATE "*) release ;; esac
  # a full file system: the reserve makes room for it (and what follows).
  # `later`: the log lines only; the status file gets the next state, which
  # follows within moments (each write is a mv: a process)
  if [ "${3:-}" != later ]; then write_status 2>/dev/null || { room; write_status; }; fi
  printf '%s\n' "nixdeploy: $HMS $STATE${REASON:+: $REASON}"
  printf '%s\n' "nixdeploy run $RUN: $STATE${REASON:+: $REASON}" >&3
  # the session that follows this run looks at once (activate-poll.sh)
  [ "${3:-}" = later ] || wake "$RD/waiter"
}
# The status file: one key=value line each, read by activate-poll.sh as the
# run's values. printf, not echo (dash's echo turns a "\n" in a reason into a
# line of its own), and every value on one line (a reason carries what a
# command or a health check said), so no value can add a line.
field() { one_line "$2"; printf '%s=%s\n' "$1" "$ONE_LINE"; }
write_status() {
  { field state "$STATE"; field reason "$REASON"; field run "$RUN"; field mode "$MODE"
    field profile "$PROFILE"; field prev_gen "$PREV_GEN"; field prev_path "$PREV_PATH"
    field new_gen "$NEW_GEN"; field new_path "$NEW"; field activated "$ACTIVATED"
    field rolled_back "$ROLLED_BACK"; field confirmed "$CONFIRMED"; field rc "$RC"
    field cause "$CAUSE"; field records_active "$RECORDS_ACTIVE"
    field boot_when_confirmed "$BOOT_WHEN_CONFIRMED"
    field started "$STARTED"; field updated "$EPOCH"; field waiting_for "$WAITING_FOR"
  } >"$RD/status.tmp" && mv -f "$RD/status.tmp" "$RD/status"
}
release() {
  if [ "$LOCKED" = 1 ]; then
    lock_pid=; read -r lock_pid 2>/dev/null <"$D/lock/pid" || :
    [ "$lock_pid" != "$$" ] || rm -rf "$D/lock"
  fi
  LOCKED=0
}
on_exit() {
  case " $TERMINAL " in *" $STATE "*) ;;
    *) # stopped (a SIGTERM: the host shutting down, the unit stopped) after
       # moving the profile, with NEW's activation not started or failed (an
       # exit code of its own, not a signal's: it changed nothing the runner
       # would not roll back): the profile goes back as when nothing was
       # activated (put_back), so the host neither keeps nor boots a
       # generation that never ran. The shutdown's next signals must not
       # stop this.
       trap '' TERM INT HUP
       back=
       [ -z "$RC" ] && [ -n "${apid:-}" ] && settle_activation
       undo=0
       if [ -z "${apid:-}" ]; then undo=1
       else
         case $RC in
           0) ;;
           [1-9]|[1-9][0-9]|1[01][0-9]|12[0-7]) undo=1 ;;
           # stopped by a signal (the shutdown's) or still under way. Where
           # no link names what runs (home-manager, nix-on-droid), what runs
           # is this runner's record (D/active), written only by a run that
           # ended well, and no boot activates the profile: undone, as not
           # started. Where a link names it (NixOS, nix-darwin), an
           # activation still under way is left to finish; one the signal
           # stopped is undone unless the link names NEW (it took effect):
           # nix-darwin's boot activates the profile, so a profile left on
           # NEW would boot a generation that never ran. Where NEW is not
           # the boot default before its confirmation (NixOS), the profile
           # goes back to what boots either way, as for a run stopped
           # awaiting its confirmation below: the shutdown boots the
           # previous system, whatever this boot's link names (seed 515628
           # round 1: a NixOS host rebooted while its activation ran)
           '') if [ -z "$CURRENT_LINK" ] || [ "$BOOT_WHEN_CONFIRMED" = 1 ]; then undo=1; fi ;;
           *) if [ -z "$CURRENT_LINK" ] || [ "$BOOT_WHEN_CONFIRMED" = 1 ]; then undo=1
              else active_path; [ "$ACTIVE_PATH" = "$NEW" ] || undo=1; fi ;;
         esac
       fi
       if [ "$MODE" = activate ] && [ "$ACTIVATED" = 0 ] && [ "$undo" = 1 ]; then
         # stopped while nix-env --set ran: the generation it made is NEW's
         if [ -z "$NEW_GEN" ] && [ "$SET_PROFILE" = 1 ] && [ "$STATE" = running ]; then
           current_gen; gen_path "$CUR_GEN"
           [ "$CUR_GEN" != "$PREV_GEN" ] && [ "$GEN_PATH" = "$NEW" ] && NEW_GEN=$CUR_GEN
         fi
         if [ -n "$NEW_GEN" ]; then
           put_back; current_gen; back="; $PROFILE is back at generation ${CUR_GEN:-none}"
         fi
       fi
       # stopped while awaiting its confirmation: NEW's activation ran and
       # nothing rolled it back. Where NEW is not the boot default before
       # its confirmation (NixOS), the profile goes back to what boots: the
       # shutdown that stopped this boots the previous system, and neither
       # the profile nor a later boot loader install may make NEW, never
       # confirmed, its default. Elsewhere, where no link names what runs,
       # this run's record is what does: left on the old system, the next
       # run would activate NEW again as a change (seed 7311 round 22: a
       # home-manager host rebooted then)
       if [ "$STATE" = awaiting_confirmation ] && [ "$ACTIVATED" = 1 ]; then
         if [ "$BOOT_WHEN_CONFIRMED" = 1 ] && [ -n "$NEW_GEN" ]; then
           put_back; current_gen; CAUSE=ended_unconfirmed
           back="; $PROFILE is back at generation ${CUR_GEN:-none}, which the host boots"
         else
           record_active "$RECORDS_ACTIVE" "$NEW"
         fi
       fi
       drop_canary "$RUN"
       status failed "the activation run stopped unexpectedly in state $STATE$back" ;; esac
  release
}
settle_activation() {  # RC of the activation apid, stopped with this run
  # the shutdown's SIGTERM reached it too: a moment to end. Where no link
  # names what runs, one that goes on is stopped (its group, as a timeout
  # does): nothing would record what it did
  nap_start; n=0
  while kill -0 "$apid" 2>/dev/null && [ "$n" -lt 40 ]; do nap; n=$((n + 1)); done
  if kill -0 "$apid" 2>/dev/null; then
    [ -z "$CURRENT_LINK" ] || return 0
    if [ -n "$SETSID" ]; then kill -KILL "-$apid" 2>/dev/null; fi
    kill -KILL "$apid" 2>/dev/null
  fi
  wait "$apid" 2>/dev/null; RC=$?
}
trap on_exit EXIT
trap 'exit 1' TERM INT
via() {  # via GEN PATH: what to activate to go to generation GEN (THROUGH_LINK: its link)
  if [ "$THROUGH_LINK" = 1 ] && [ -n "$1" ] && [ -e "$PDIR/$PNAME-$1-link" ]; then
    echo "$PDIR/$PNAME-$1-link"
  else
    echo "$2"
  fi
}
busy() {  # whether the last activation met another switch's lock (it changed nothing)
  [ -n "$BUSY_MARK" ] && [ "$RC" != 0 ] && [ "$RC" != 124 ] &&
    tail -c +"$((LOG_AT + 1))" "$RD/log" 2>/dev/null | grep -qF -e "$BUSY_MARK"
}
run_activation() {  # run_activation PATH STEPS: each step in turn, until one fails
  # sets RC, STEPS_DONE (the steps that ended well) and BUSY: the first
  # step met another switch's lock, so nothing at all was activated. Step
  # words are [a-z0-9-] (_programs.py): split, never globbed.
  BUSY=0 STEPS_DONE=0
  for step in $2; do
    run_step "$1" "$step"
    [ "$RC" = 0 ] || return 0
    STEPS_DONE=$((STEPS_DONE + 1))
  done
}
run_step() {  # run_step PATH STEP: sets RC, each run bounded by ACTIVATION_TIMEOUT
  nap_start
  while :; do
    run_once "$1" "$2"
    busy || return 0
    # another switch held the platform's lock: this step activated nothing
    echo "nixdeploy: another switch holds $SWITCH_LOCK: waiting for it, then again"
    if ! wait_switch_lock || { clock; [ "$NOW" -ge "$SWITCH_UNTIL" ]; }; then
      # after a step that ended well, the system did change: a failure
      [ "$STEPS_DONE" != 0 ] || BUSY=1
      return 0
    fi
    nap
  done
}
run_once() {
  stamp; echo "nixdeploy: $HMS activating $1 ($2)"
  # its digits (macOS's wc pads them with blanks), by the shell
  LOG_AT=$(wc -c <"$RD/log" 2>/dev/null); LOG_AT=${LOG_AT#"${LOG_AT%%[0-9]*}"}
  LOG_AT=${LOG_AT%%[!0-9]*}; LOG_AT=${LOG_AT:-0}
  # its own process group (setsid), so a timeout stops the whole activation
  RC=''  # until this step ends (a stopped run reads it: settle_activation)
  $SETSID sh -c "$ACTIVATE_PROGRAM" activate "$1" "$2" "$INVOKER" &
  apid=$!; clock; t0=$NOW
  nap_start
  while kill -0 "$apid" 2>/dev/null; do
    clock
    if [ $((NOW - t0)) -ge "$ACTIVATION_TIMEOUT" ]; then
      echo "nixdeploy: the activation ran longer than ${ACTIVATION_TIMEOUT}s: stopping it"
      if [ -n "$SETSID" ]; then kill -TERM "-$apid" 2>/dev/null; fi
      kill -TERM "$apid" 2>/dev/null; sleep 2
      if [ -n "$SETSID" ]; then kill -KILL "-$apid" 2>/dev/null; fi
      kill -KILL "$apid" 2>/dev/null
      wait "$apid" 2>/dev/null; RC=124; return
    fi
    nap
  done
  wait "$apid"; RC=$?
  stamp; echo "nixdeploy: $HMS activation exited with $RC"
}
failure_reason() {
  if [ "$BUSY" = 1 ]; then
    echo "another switch held $SWITCH_LOCK for more than ${LOCK_TIMEOUT}s (an auto-upgrade?)"; return
  fi
  case $RC in
    124) echo "the activation timed out after ${ACTIVATION_TIMEOUT}s" ;;
    4) echo "the activation exited with code 4 (some units failed)" ;;
    *) echo "the activation failed with exit code $RC" ;;
  esac
}
rollback() {  # rollback REASON CAUSE: back to the previous generation, drop the failed one
  reason=$1 target=$PREV_PATH CAUSE=$2
  # a goal that left the profile alone (test) is undone by the profile's
  # current generation; the profile and the boot entries stay as they are
  [ -z "$target" ] && [ "$CURRENT_WHEN" = active ] && target=$ACTIVE_BEFORE
  if [ -z "$target" ]; then
    status failed "$reason; there is no previous generation to roll back to"; exit 1
  fi
  # a rollback writes (status, profile links): the reserve's room first
  room
  status rolling_back "$reason"
  # only a profile this run moved (itself, or through the activation) goes back
  if [ -n "$PREV_GEN" ] && { [ "$SET_PROFILE" = 1 ] || [ "$SETS_OWN_PROFILE" = 1 ]; } &&
     { current_gen; [ "$CUR_GEN" != "$PREV_GEN" ]; }; then
    "$NIX_ENV" --profile "$PROFILE" --switch-generation "$PREV_GEN" || {
      status rollback_failed "$reason; could not switch $PROFILE back to generation $PREV_GEN"; exit 1; }
  fi
  if [ -n "$NEW_GEN" ] && [ "$NEW_GEN" != "$PREV_GEN" ]; then
    "$NIX_ENV" --profile "$PROFILE" --delete-generations "$NEW_GEN" ||
      echo "nixdeploy: could not delete the failed generation $NEW_GEN"
  fi
  run_activation "$(via "$PREV_GEN" "$target")" "$ROLLBACK_STEPS"
  if [ "$RC" = 0 ]; then
    ROLLED_BACK=1; record_active "$ROLLBACK_RECORDS_ACTIVE" "$target"
    status rolled_back "$reason"
  else
    status rollback_failed "$reason; re-activating the previous system $target failed: $(failure_reason)"
  fi
  exit 1
}
watchdog() {
  # Armed before the canary exists (the deploy-rs PR 385 race): from the
  # moment it is written, a missing canary can only mean that a confirmation
  # claimed it (rename, atomic); at the deadline the watchdog claims it itself.
  clock; deadline=$((NOW + CONFIRM_TIMEOUT))
  # a canary that could not be written would read as a confirmation
  if ! { echo "$RUN" >"$D/canary.tmp" && mv -f "$D/canary.tmp" "$D/canary"; } 2>/dev/null; then
    room
    { echo "$RUN" >"$D/canary.tmp" && mv -f "$D/canary.tmp" "$D/canary"; } 2>/dev/null ||
      rollback "cannot write the canary $D/canary$(full_note)" activation_failed
  fi
  # a confirmation or a rejection wakes this (lib.sh's doze) when it claims
  # the canary: the trap is set before the state that lets them come
  doze_start
  status awaiting_confirmation "waiting ${CONFIRM_TIMEOUT}s for a confirmation over a new connection"
  while :; do
    if [ ! -e "$D/canary" ]; then
      doze_end
      # claimed: by a confirmation, or by a deployer whose health checks failed
      if [ -e "$D/rejected.$RUN" ]; then
        why=; IFS= read -r why 2>/dev/null <"$D/reject-reason.$RUN" || :
        rm -f "$D/rejected.$RUN" "$D/reject-reason.$RUN"
        rollback "${why:-the deployer rejected the new system}" checks
      fi
      CONFIRMED=1; return 0
    fi
    clock
    if [ "$NOW" -ge "$deadline" ]; then
      doze_end
      if mv "$D/canary" "$D/canary.expired" 2>/dev/null; then
        rm -f "$D/canary.expired"
        rollback "no confirmation within ${CONFIRM_TIMEOUT}s (is the host still reachable under the new system?)" unconfirmed
      fi
      CONFIRMED=1; return 0
    fi
    doze
  done
}
put_back() {  # nothing was activated: the profile back where it was, our generation dropped
  if [ "$SET_PROFILE" = 1 ] && [ -n "$NEW_GEN" ] && [ "$NEW_GEN" != "$PREV_GEN" ] &&
     { current_gen; [ "$CUR_GEN" = "$NEW_GEN" ]; }; then
    if [ -n "$PREV_GEN" ]; then
      switch_back "$PREV_GEN" "$NEW_GEN" ||
        echo "nixdeploy: could not put $PROFILE back to generation $PREV_GEN"
    fi
  fi
  NEW_GEN=''
}
refused() {
  # NixOS's pre-switch checks said no (switch inhibitors) before changing
  # anything: put the profile back, drop the generation, no re-activation
  put_back
  CAUSE=refused
  status refused "the switch was refused by its pre-switch checks; nothing was activated"
  exit 1
}
switch_busy() {
  # the platform's own switch lock stayed taken (a concurrent auto-upgrade):
  # nothing of this run was activated, so nothing is rolled back or deleted
  # but the generation this run made
  put_back
  CAUSE=switch_locked
  current_gen
  status failed "$(failure_reason): nothing was activated, $PROFILE is left at generation $CUR_GEN"
  exit 1
}
release_root() {  # release_root [HELD]: HELD, what the profile holds, just read under the lock
  # The copy's GC root of NEW (copy-probe.sh) once the profile holds NEW: the
  # copying user's BASE/gcroots/ROOT_KEY, in this user's state folder or,
  # under sudo, in the default one of the user who logged in. Pointed at
  # /dev/null (it stays registered for the next copy); removed when it is
  # another user's. Left alone when it roots another system (a later copy).
  [ -n "$ROOT_KEY" ] || return 0
  if [ -n "${1:-}" ]; then held=$1; else current_gen; gen_path "$CUR_GEN"; held=$GEN_PATH; fi
  [ "$held" = "$NEW" ] || return 0
  link=${D%/*}/gcroots/$ROOT_KEY
  [ "$(readlink "$link" 2>/dev/null)" != "$NEW" ] || swap_link /dev/null "$link" ||
    echo "nixdeploy: could not release the GC root $link: $SWAP_ERR"
  [ -n "$INVOKER" ] && [ "$INVOKER" != "$USER" ] || return 0
  case $INVOKER in *[!A-Za-z0-9._-]*|-*) return 0 ;; esac
  if [ "$INVOKER" = root ]; then link=$ROOT_STATE/gcroots/$ROOT_KEY
  else home=; eval "home=~$INVOKER"; link=$home/.local/state/nixdeploy/gcroots/$ROOT_KEY; fi
  [ "$(readlink "$link" 2>/dev/null)" != "$NEW" ] || rm -f "$link"
}
