# shellcheck shell=sh
# Waits up to WAIT seconds for run RUN to end (a state in TERMINAL; or, with
# STOP_AWAITING=1, to await its confirmation; or to wait for a lock for
# another reason, waiting_for, than SEEN_WAITING, what the controller last
# saw: its progress lines then say so at once), woken by the runner's every
# new state (its waiter file holds this session's pid), then one look: its
# status, whether its runner lives (one that died before its end is ended
# here: end_dead_run), its log's last LOG_LINES lines. Folding the wait into
# the same session saves the controller a round trip per look.
RD=$D/runs/$RUN
run_state() {  # st, wf: the run's state and waiting_for (read by the shell: no process five times a second)
  st='' wf=''
  [ -f "$RD/status" ] || return 0
  while IFS= read -r line; do
    case $line in state=*) st=${line#state=} ;; waiting_for=*) wf=${line#waiting_for=} ;; esac
  done <"$RD/status"
}
# A run that died before its end (SIGKILLed: a shutdown's KILL after its
# grace, a power cut, the OOM killer) ran no exit: its lock stays, its status
# says it is under way, and its profile may hold a generation it made but
# never activated. The look that finds it dead ends it as its exit would
# have (activate-runner.sh's on_exit): the profile back where nothing was
# activated or where what was activated awaited a confirmation that would
# have made it the boot default (NixOS: the host boots the previous system),
# elsewhere a system activated and awaiting its confirmation recorded as
# what runs; its canary gone, the state failed, the lock freed. Only while
# the lock is still that run's (no later run has touched the profile since;
# the pid may be a later run's in a new boot), and with lock.break held: no
# run's acquire breaks the lock meanwhile.
end_dead_run() {
  [ -n "$pid" ] || return 0
  [ -f "$RD/status" ] || { end_unstarted_run; return 0; }
  st='' mode='' prev_gen='' new_path='' activated='' records='' boot_later='' cause=''
  while IFS= read -r line || [ -n "$line" ]; do
    case $line in
      state=*) st=${line#state=} ;; mode=*) mode=${line#mode=} ;;
      prev_gen=*) prev_gen=${line#prev_gen=} ;; new_path=*) new_path=${line#new_path=} ;;
      activated=*) activated=${line#activated=} ;; records_active=*) records=${line#records_active=} ;;
      boot_when_confirmed=*) boot_later=${line#boot_when_confirmed=} ;;
    esac
  done <"$RD/status"
  case " $TERMINAL " in *" $st "*) return 0 ;; esac
  take_break || return 0
  lock_pid=; read -r lock_pid 2>/dev/null <"$D/lock/pid" || :
  lock_run=; read -r lock_run 2>/dev/null <"$D/lock/run" || :
  if [ "$lock_pid" = "$pid" ] && [ "$lock_run" = "$RUN" ]; then
    back=
    # the generation it made (nix-env --set, under its lock), never activated
    # (what runs is not it), or activated and awaiting the confirmation that
    # would have made it the boot default (nix-on-droid's activation sets
    # its profile itself)
    unconfirmed=0
    [ "$st" = awaiting_confirmation ] && [ "$activated" = 1 ] && [ "$boot_later" = 1 ] &&
      unconfirmed=1
    if { [ "$unconfirmed" = 1 ] || { [ "$st" = running ] && [ "$activated" != 1 ]; }; } &&
       [ "$mode" = activate ] &&
       [ "$SETS_OWN_PROFILE" != 1 ] && is_gen "$prev_gen" && [ -n "$new_path" ] &&
       current_gen && [ -n "$CUR_GEN" ] && [ "$CUR_GEN" != "$prev_gen" ]; then
      made=$CUR_GEN; gen_path "$made"; active_path
      if [ "$GEN_PATH" = "$new_path" ] &&
         { [ "$unconfirmed" = 1 ] || [ "$ACTIVE_PATH" != "$new_path" ]; }; then
        # a profile that cannot go back now (nix-env failed, or was stopped):
        # the run stays as it is, for the next look to end
        switch_back "$prev_gen" "$made" >>"$RD/log" 2>&1 || {
          rmdir "$D/lock.break"; return 0; }
        back="; $PROFILE is back at generation $prev_gen"
        # what runs may still be the new system (killed without a reboot):
        # the task that reads this rolls back
        [ "$unconfirmed" != 1 ] || cause=ended_unconfirmed
      fi
    fi
    # died awaiting its confirmation: the new system's activation ran and
    # nothing rolled it back (the watchdog died with the run). Unless its
    # profile went back above, what runs is recorded as the runner's exit
    # records it (activate-runner.sh's on_exit), or the next deploy of that
    # system would activate it again as a change. Only a store path: the
    # status may be corrupted
    if [ "$st" = awaiting_confirmation ] && [ "$activated" = 1 ]; then
      if [ "$unconfirmed" != 1 ]; then
        case $new_path in /*/store/?*) record_active "$records" "$new_path" ;; esac
      fi
      # its canary, or the rejection that claimed it after the run died (a
      # deployer whose checks failed as the host went down): no later
      # confirmation may claim a run that is over
      drop_canary "$RUN"
      rm -f "$D/rejected.$RUN" "$D/reject-reason.$RUN"
    fi
    one_line "the activation run died in state $st (killed, or its host went down without a shutdown)$back"
    { while IFS= read -r line || [ -n "$line" ]; do
        case $line in
          state=*) echo state=failed ;; reason=*) printf 'reason=%s\n' "$ONE_LINE" ;;
          cause=*) printf 'cause=%s\n' "${cause:-${line#cause=}}" ;;
          *) printf '%s\n' "$line" ;;
        esac
      done <"$RD/status" >"$RD/status.tmp" && mv -f "$RD/status.tmp" "$RD/status"; } 2>/dev/null
    { printf 'nixdeploy: %s\n' "$ONE_LINE" >>"$RD/log"; } 2>/dev/null
    rm -rf "$D/lock"
  fi
  rmdir "$D/lock.break"
}
# A run that died between taking its lock and writing its first status (the
# runner writes "running" before it moves the profile): a reboot whose KILL
# came before its exit had run. Nothing but the next run's wait for the
# lock would free that lock, and nothing would say the run ended: the look
# that finds it dead frees its own lock (under lock.break, as above) and
# writes the status its exit would have.
end_unstarted_run() {
  take_break || return 0
  lock_pid=; read -r lock_pid 2>/dev/null <"$D/lock/pid" || :
  lock_run=; read -r lock_run 2>/dev/null <"$D/lock/run" || :
  if [ "$lock_pid" = "$pid" ] && [ "$lock_run" = "$RUN" ]; then
    # each value on one line, as the runner's own status; started: the
    # run's name begins with the time it was launched
    one_line "$PROFILE"; profile_line=$ONE_LINE
    began=${RUN%%-*}; case $began in ''|*[!0-9]*) began= ;; esac
    one_line "the activation run died before its first status (killed, or its host went down without a shutdown)"
    { printf 'state=failed\nreason=%s\nrun=%s\nprofile=%s\nstarted=%s\nupdated=%s\n' \
        "$ONE_LINE" "$RUN" "$profile_line" "$began" "$(date +%s)" \
        >"$RD/status.tmp" && mv -f "$RD/status.tmp" "$RD/status"; } 2>/dev/null
    { printf 'nixdeploy: %s\n' "$ONE_LINE" >>"$RD/log"; } 2>/dev/null
    rm -rf "$D/lock"
  fi
  rmdir "$D/lock.break"
}
# the runner wakes this session at each state it writes (lib.sh's doze)
doze_start
{ echo $$ >"$RD/waiter"; } 2>/dev/null
while [ "$NAPPED" -lt $((WAIT * 20)) ]; do
  run_state
  case " $TERMINAL " in *" $st "*) break ;; esac
  [ "$STOP_AWAITING" = 1 ] && [ "$st" = awaiting_confirmation ] && break
  [ "$st" = waiting_lock ] && [ -n "$wf" ] && [ "$wf" != "$SEEN_WAITING" ] && break
  doze
done
doze_end
waiting=; read -r waiting 2>/dev/null <"$RD/waiter" || :
[ "$waiting" != $$ ] || : 2>/dev/null >"$RD/waiter"
# whether the runner lives: its pid does, in the boot it started in (after a
# reboot that pid may be another process's). Looked at before the status:
# a runner that ended wrote its last status first
pid=; read -r pid 2>/dev/null <"$RD/pid" || :
run_boot=; read -r run_boot 2>/dev/null <"$RD/boot" || :
boot_id
alive=0
if [ -n "$pid" ] && lives "$pid" &&
   { [ -z "$run_boot" ] || [ -z "$BOOT" ] || [ "$run_boot" = "$BOOT" ]; }; then
  alive=1
fi
[ "$alive" = 1 ] || end_dead_run
# the status (key=value lines the runner writes, each value on one line) as
# values, then whether the runner lives: every value before the log, which
# is the activation's own output and never read as one
if [ -f "$RD/status" ]; then
  while IFS= read -r line || [ -n "$line" ]; do
    case $line in [a-z]*=*) emit "${line%%=*}" "${line#*=}" ;; esac
  done <"$RD/status"
fi
emit alive "$alive"
log_section
tail -n "$LOG_LINES" "$RD/log" 2>/dev/null
