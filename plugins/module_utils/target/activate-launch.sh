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
mkdir -p "$RD" || fail "cannot create $RD"
# keep the last 20 runs' logs (run names are digits, '-' and hex): counting
# them takes no process, sorting them by age (ls) only when there are more
set -- "$D/runs"/*
if [ "$#" -gt 20 ]; then
  # shellcheck disable=SC2012
  ls -1t "$D/runs" 2>/dev/null | tail -n +21 | while read -r old; do rm -rf "$D/runs/$old"; done
fi
emit dir "$D"
emit profile "$PROFILE"
emit nix_env "$NIX_ENV"
printf '%s\n' "$RUNNER" >"$RD/runner.sh" || fail "cannot write $RD/runner.sh"
SH=$(command -v sh) || SH=/bin/sh
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
if [ "$(id -u)" = 0 ] && [ -d "$SYSTEMD_DIR" ] && command -v systemd-run >/dev/null 2>&1 &&
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
nap_start  # up to 10 s (200 x 0.05 s)
while [ ! -f "$RD/status" ] && [ "$NAPPED" -lt 200 ]; do nap; done
[ -f "$RD/status" ] || fail "the detached activation did not start (see $RD/log)"
