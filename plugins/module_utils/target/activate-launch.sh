# shellcheck shell=sh
# Starts the runner (value RUNNER, activate-runner.sh rendered) detached:
# systemd-run where systemd runs, else setsid or nohup; then waits until it
# has written its first status. activate-poll.sh follows.
RD=$D/runs/$RUN
mkdir -p "$RD" || fail "cannot create $RD"
# keep the last 20 runs' logs (run names are digits, '-' and hex)
# shellcheck disable=SC2012
ls -1t "$D/runs" 2>/dev/null | tail -n +21 | while read -r old; do rm -rf "$D/runs/$old"; done
emit dir "$D"
emit profile "$PROFILE"
emit nix_env "$NIX_ENV"
how=
if [ "$(id -u)" = 0 ] && [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1 &&
   systemd-run --collect --no-ask-password --quiet --service-type=exec \
     --unit="nixdeploy-activate-$RUN" sh -c "$RUNNER" nixdeploy-activate \
     "$D" "$PROFILE" "$NIX_ENV" "$HOME" "$USER" >>"$RD/log" 2>&1; then
  how=systemd-run
elif command -v setsid >/dev/null 2>&1; then
  setsid sh -c "$RUNNER" nixdeploy-activate "$D" "$PROFILE" "$NIX_ENV" "$HOME" "$USER" \
    </dev/null >>"$RD/log" 2>&1 &
  how=setsid
else
  nohup sh -c "$RUNNER" nixdeploy-activate "$D" "$PROFILE" "$NIX_ENV" "$HOME" "$USER" \
    </dev/null >>"$RD/log" 2>&1 &
  how='nohup'
fi
emit detach "$how"
i=0
while [ ! -f "$RD/status" ] && [ $i -lt 50 ]; do nap; i=$((i + 1)); done
[ -f "$RD/status" ] || fail "the detached activation did not start (see $RD/log)"
