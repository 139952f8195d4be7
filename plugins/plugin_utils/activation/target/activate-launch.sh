# shellcheck shell=sh
# Starts the runner (value RUNNER, activate-runner.sh rendered) detached,
# then waits until it has written its first status. activate-poll.sh follows.
#
# The runner is written to the run's folder and started as `sh FILE ARGS`:
# as the systemd unit UNIT_PREFIX<run> where systemd runs (SYSTEMD_DIR) and
# this is root, so that neither a lost ssh session nor a restarted sshd stops
# it; else in its own session (setsid, else nohup). systemd expands $VAR and
# ${VAR} in a unit's command line and turns $$ into $, so no program goes
# through it and every $ of an argument is doubled (systemd-run
# --expand-environment=no needs systemd 254). The runner sets its own PATH
# from the one given here: a unit gets systemd's, which on NixOS holds only
# systemd's own tools.
RD=$D/runs/$RUN
# A full file system fails the activation here, before the runner starts:
# no lock taken, the profile untouched. The run keeps RESERVE_KB of room
# (D/reserve, made once and kept; a run that needed it gives it back and the
# next launch makes it again) for what it writes when the disk fills while
# it runs.
no_room() {  # no_room WHAT ERROR: fail, saying how much is free (dash says only "I/O error")
  fail "cannot write $1 ($2)$(full_note): the activation keeps ${RESERVE_KB} KB for its state and a rollback; nothing was changed"
}
if [ ! -f "$D/reserve" ]; then
  # one process: head alone in the `$(...)`, its stderr (and the shell's
  # word for a file it cannot create) taken before its stdout goes to the
  # file; a { ...; } 2>&1 there is a subshell more that runs head
  if ! err=$(head -c "$((RESERVE_KB * 1024))" /dev/zero 2>&1 >"$D/reserve.tmp") ||
     ! err=$(mv -f "$D/reserve.tmp" "$D/reserve" 2>&1); then
    rm -f "$D/reserve.tmp"; no_room "$D/reserve" "$err"
  fi
fi
err=$(mkdir -p "$RD" 2>&1) || fail "cannot create $RD: $err"
# the runner wakes this session (lib.sh's doze) at every state it writes
{ echo $$ >"$RD/waiter"; } 2>/dev/null
# keep the last 20 runs' logs (run names are digits, '-' and hex): counting
# them takes no process, sorting them by age (ls) only when there are more
set -- "$D/runs"/*
if [ "$#" -gt 20 ]; then
  # newest first, one a line (as `ls | tail | while read` took them: two
  # processes, ls and one rm, not four)
  IFS=$NL; set -f
  # shellcheck disable=SC2012,SC2046
  set -- $(ls -1t "$D/runs" 2>/dev/null)
  set +f; unset IFS
  if [ "$#" -gt 20 ]; then
    shift 20; n=$#
    for old; do set -- "$@" "$D/runs/$old"; done
    shift "$n"; rm -rf "$@"
  fi
fi
emit dir "$D"
emit profile "$PROFILE"
emit nix_env "$NIX_ENV"
# in this shell (a `$(...)` for the error is a process): the error is asked
# for again only when the write failed
if ! { printf '%s\n' "$RUNNER" >"$RD/runner.sh"; } 2>/dev/null; then
  err=$( { printf '%s\n' "$RUNNER" >"$RD/runner.sh"; } 2>&1 ) || no_room "$RD/runner.sh" "$err"
fi
if on_path sh; then SH=$FOUND; else SH=/bin/sh; fi
UNIT=$UNIT_PREFIX$RUN

unit_word() {  # unit_word TEXT: TEXT with every $ doubled (systemd's escape)
  printf '%sx' "$1" | sed 's/\$/$$/g'
}
as_unit() {  # as_unit ARG...: run `sh ARG...` as the transient unit UNIT
  n=$#
  for arg in "$@"; do
    word=$(unit_word "$arg"); set -- "$@" "${word%x}"
  done
  shift "$n"
  # as nixos-rebuild passes it (an environment value: not expanded by systemd)
  locale=${LOCALE_ARCHIVE:+"--setenv=LOCALE_ARCHIVE=$LOCALE_ARCHIVE"}
  systemd-run --unit="$UNIT" --description="nixdeploy.fleet activation" --collect \
    --no-ask-password --quiet --service-type=exec ${locale:+"$locale"} \
    "$SH" "$@"
}

set -- "$RD/runner.sh" "$D" "$PROFILE" "$NIX_ENV" "$HOME" "$USER" "$PATH" "$INVOKER"
how=
if [ "$MY_UID" = 0 ] && [ -d "$SYSTEMD_DIR" ] && command -v systemd-run >/dev/null 2>&1 &&
   as_unit "$@" >>"$RD/log" 2>&1; then
  how=systemd-run
  emit unit "$UNIT"
elif command -v setsid >/dev/null 2>&1; then
  setsid "$SH" "$@" </dev/null >>"$RD/log" 2>&1 &
  how=setsid
else
  nohup "$SH" "$@" </dev/null >>"$RD/log" 2>&1 &
  how='nohup'
fi
emit detach "$how"
# up to 10 s, woken by the runner's first status (activate-poll.sh waits on)
doze_start
while [ ! -f "$RD/status" ] && [ "$NAPPED" -lt 200 ]; do doze; done
[ -f "$RD/status" ] || fail "the detached activation did not start (see $RD/log)"
