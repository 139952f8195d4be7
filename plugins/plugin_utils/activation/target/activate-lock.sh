# shellcheck shell=sh
# shellcheck disable=SC2034  # LOCK_OWNER, LOCK_RUN: read by activate-modes.sh after this; WAITING_FOR: by status
# The detached run's locks (rendered after activate-runner.sh, before
# activate-modes.sh, which takes them): the collection's own lock of the
# profile, a folder $D/lock holding the owner's pid, boot and run (a stale
# one, whose owner is gone or was taken before a reboot, is broken), and
# the platform's own switch lock (SWITCH_LOCK, a flock), each waited for at
# most LOCK_TIMEOUT seconds. Values: RunnerValues
# (plugin_utils/activation/_runner_values.py), as for activate-runner.sh.
break_lock() {  # break_lock DEADPID: one breaker at a time, and only that owner's lock
  if take_break; then
    lock_pid=; read -r lock_pid 2>/dev/null <"$D/lock/pid" || :
    [ "$lock_pid" = "$1" ] && rm -rf "$D/lock"
    rmdir "$D/lock.break"
  else
    nap
  fi
}
holder_step() {  # WAITING_FOR: what the run that holds the lock is at, read by the shell
  # (no process each nap): activation, confirmation (awaits it; unconfirmed,
  # its watchdog rolls back) or rollback; the run's name is checked first
  WAITING_FOR=activation holder=
  read -r holder 2>/dev/null <"$D/lock/run" || :
  case $holder in ''|*[!0-9a-f-]*) return 0 ;; esac
  [ -f "$D/runs/$holder/status" ] || return 0
  while IFS= read -r hline; do
    case $hline in
      state=awaiting_confirmation) WAITING_FOR=confirmation ;;
      state=rolling_back) WAITING_FOR=rollback ;;
    esac
  done <"$D/runs/$holder/status"
}
acquire() {
  clock; t0=$NOW empty_since='' told=''
  nap_start
  while :; do
    if lock_err=$(mkdir "$D/lock" 2>&1); then
      # the owner's pid is what keeps others from breaking the lock: a
      # full file system gets the reserve's room, else no lock stays behind
      lock_files 2>/dev/null || { room; lock_files 2>/dev/null; } || {
        rm -rf "$D/lock"
        status failed "cannot write the lock $D/lock$(full_note): nothing was changed"; exit 1; }
      LOCKED=1 WAITING_FOR=; return 0
    fi
    # not another run's lock but a folder that cannot be made (a full or
    # read-only file system): failing now, not after LOCK_TIMEOUT
    if [ ! -d "$D/lock" ]; then
      room
      mkdir "$D/lock" 2>/dev/null && { rmdir "$D/lock"; continue; }
      [ -d "$D/lock" ] && continue
      status failed "cannot take the lock $D/lock: $lock_err$(full_note): nothing was changed"; exit 1
    fi
    owner=; read -r owner 2>/dev/null <"$D/lock/pid" || :
    clock; now=$NOW
    if [ -n "$owner" ]; then
      empty_since=
      if ! lives "$owner"; then
        echo "nixdeploy: breaking the stale lock of pid $owner (no longer running)"
        break_lock "$owner"; continue
      fi
      # taken before the host rebooted: that pid is another process now
      lock_boot=; read -r lock_boot 2>/dev/null <"$D/lock/boot" || :
      if [ -n "$BOOT" ] && [ -n "$lock_boot" ] && [ "$lock_boot" != "$BOOT" ]; then
        echo "nixdeploy: breaking the stale lock of pid $owner (taken before a reboot)"
        break_lock "$owner"; continue
      fi
    else
      # the owner writes its pid right after mkdir; empty for long = it died in between
      [ -n "$empty_since" ] || empty_since=$now
      if [ $((now - empty_since)) -ge 5 ]; then break_lock ""; empty_since=; continue; fi
    fi
    if [ $((now - t0)) -ge "$LOCK_TIMEOUT" ]; then
      LOCK_OWNER=$owner LOCK_RUN=; read -r LOCK_RUN 2>/dev/null <"$D/lock/run" || :; return 1
    fi
    holder_step
    if [ "$told" != "$owner $WAITING_FOR" ]; then
      told="$owner $WAITING_FOR"
      status waiting_lock "another activation (pid ${owner:-?}, $WAITING_FOR) holds the lock of $PROFILE"
    fi
    nap
  done
}
lock_files() {
  echo "$BOOT" >"$D/lock/boot" && echo $$ >"$D/lock/pid" && echo "$RUN" >"$D/lock/run"
}
SWITCH_UNTIL=''
switch_lock_free() {  # whether no other switch holds SWITCH_LOCK (unknown: free)
  [ -n "$SWITCH_LOCK" ] && [ -e "$SWITCH_LOCK" ] && command -v flock >/dev/null 2>&1 || return 0
  flock -n "$SWITCH_LOCK" true 2>/dev/null
}
wait_switch_lock() {  # wait (until SWITCH_UNTIL) for the platform's own switch lock
  [ -n "$SWITCH_LOCK" ] || return 0
  clock; [ -n "$SWITCH_UNTIL" ] || SWITCH_UNTIL=$((NOW + LOCK_TIMEOUT))
  told=
  nap_start
  until switch_lock_free; do
    clock; [ "$NOW" -lt "$SWITCH_UNTIL" ] || return 1
    [ -n "$told" ] || { told=1 WAITING_FOR=switch
      status waiting_lock "another switch holds $SWITCH_LOCK (an auto-upgrade?): waiting"; }
    nap
  done
  WAITING_FOR=
}
