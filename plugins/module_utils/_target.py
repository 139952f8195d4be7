# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The POSIX sh scripts nix_activate runs on a target.

A target needs only sh and Nix: every script here is sent over the Ansible
connection as one command (as ``ansible.builtin.raw`` does). Every value that
comes from a task or the inventory enters a script as a ``shlex.quote``-d
assignment at its top; the script bodies are constants.

On the target, per user and profile, a state folder D holds:
  D/lock/{pid,run}   the profile lock (mkdir: atomic everywhere, no flock needed)
  D/runs/<run>/      status (key=value), log and pid of one detached run
  D/last             the run that last held the lock
  D/canary           exists while a run waits for its confirmation
  D/rejected.<run>   the canary, claimed by a deployer whose health checks failed:
                     the watchdog rolls back at once, for the reason in
                     D/reject-reason.<run>
  D/active           what this collection last activated (where no link says it)
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import shlex

from ansible_collections.nixdeploy.fleet.plugins.module_utils._platforms import known_nix_dirs_sh
from ansible_collections.nixdeploy.fleet.plugins.module_utils._reboot import REFUSAL_MARK

MARK = '@@nixdeploy '
LOG_MARK = '@@nixdeploy-log'

TERMINAL_STATES = ('unchanged', 'done', 'failed', 'rolled_back', 'rollback_failed', 'refused')
# A switch NixOS's pre-switch checks refused (switch inhibitors): nothing was
# activated, the profile is back where it was, there is nothing to roll back.
REFUSED = 'refused'
# A run that waits for its confirmation: the task may stop following it.
AWAITING = 'awaiting_confirmation'

# Shared by every script: environment, nix-env, profile and state folder.
# Expects NIX_DIR, PROFILE, NEEDS_ROOT, PLATFORM and the generated
# resolve_profile function.
_PREAMBLE = r'''
umask 022
fail() { echo "@@nixdeploy error=$*"; exit 3; }
nap() { sleep 0.2 2>/dev/null || sleep 1; }
[ -n "${HOME:-}" ] || HOME=$(cd ~ 2>/dev/null && pwd)
USER=${USER:-$(id -un)}
export HOME USER
if [ "$NEEDS_ROOT" = 1 ] && [ "$(id -u)" != 0 ]; then
  fail "activating a $PLATFORM system needs root, but this runs as $(id -un): connect as root or set become"
fi
NIX_ENV=
for dir in "$NIX_DIR" "" __NIX_ENV_DIRS__; do
  if [ -z "$dir" ]; then cand=$(command -v nix-env 2>/dev/null) || continue
  else cand=$dir/nix-env; fi
  if [ -n "$cand" ] && [ -x "$cand" ]; then NIX_ENV=$cand; break; fi
done
[ -n "$NIX_ENV" ] || fail "nix-env not found on PATH or in the usual places; set remote_nix_dir"
[ -n "$PROFILE" ] || resolve_profile
case $PROFILE in /*) ;; *) fail "profile must be an absolute path, got '$PROFILE'" ;; esac
if [ "$(id -u)" = 0 ]; then BASE=/nix/var/nixdeploy
else BASE=${XDG_STATE_HOME:-$HOME/.local/state}/nixdeploy; fi
D=$BASE/$(printf '%s' "$PROFILE" | tr -c 'A-Za-z0-9._-' '_')
mkdir -p "$D/runs" || fail "cannot create the state folder $D"
'''.replace('__NIX_ENV_DIRS__', known_nix_dirs_sh())

# Profile generations: PROFILE -> PROFILE-N-link -> /nix/store/...
_GENERATIONS = r'''
PNAME=${PROFILE##*/}
PDIR=${PROFILE%/*}
gen_number() { n=${1##*/}; n=${n#"$PNAME"-}; n=${n%-link}
  case $n in ''|*[!0-9]*) return 1 ;; esac; echo "$n"; }
current_gen() { t=$(readlink "$PROFILE" 2>/dev/null) || return 0; gen_number "$t"; }
gen_path() { [ -n "$1" ] && readlink "$PDIR/$PNAME-$1-link" 2>/dev/null; }
list_gens() { for l in "$PDIR/$PNAME"-*-link; do [ -L "$l" ] && gen_number "$l"; done | sort -n; }
active_path() {
  if [ -n "$CURRENT_LINK" ] && [ -e "$CURRENT_LINK" ]; then readlink "$CURRENT_LINK"; return; fi
  cat "$D/active" 2>/dev/null
}
'''

# The detached run: lock, profile, activation, watchdog, rollback.
_RUNNER = r'''
D=$1 PROFILE=$2 NIX_ENV=$3 HOME=$4 USER=$5
export HOME USER
# NixOS's own override of its pre-switch checks (pre_switch_checks=false)
if [ "$NO_CHECK" = 1 ]; then NIXOS_NO_CHECK=1; export NIXOS_NO_CHECK; fi
RD=$D/runs/$RUN
exec </dev/null >>"$RD/log" 2>&1
trap '' HUP
umask 022
echo $$ >"$RD/pid"
nap() { sleep 0.2 2>/dev/null || sleep 1; }
SETSID=; command -v setsid >/dev/null 2>&1 && SETSID=setsid
STATE=starting REASON= PREV_GEN= PREV_PATH= NEW_GEN= ACTIVE_BEFORE= ACTIVATED=0
ROLLED_BACK=0 CONFIRMED=0 RC= LOCKED=0 STARTED=$(date +%s) CAUSE=
__GENERATIONS__
status() {
  STATE=$1; REASON=$(printf '%s' "$2" | tr '\n' ' ')
  { echo "state=$STATE"; echo "reason=$REASON"; echo "run=$RUN"; echo "mode=$MODE"
    echo "profile=$PROFILE"; echo "prev_gen=$PREV_GEN"; echo "prev_path=$PREV_PATH"
    echo "new_gen=$NEW_GEN"; echo "new_path=$NEW"; echo "activated=$ACTIVATED"
    echo "rolled_back=$ROLLED_BACK"; echo "confirmed=$CONFIRMED"; echo "rc=$RC"
    echo "cause=$CAUSE"
    echo "started=$STARTED"; echo "updated=$(date +%s)"
  } >"$RD/status.tmp" && mv -f "$RD/status.tmp" "$RD/status"
  echo "nixdeploy: $(date +%H:%M:%S) $STATE${REASON:+: $REASON}"
}
release() {
  if [ "$LOCKED" = 1 ] && [ "$(cat "$D/lock/pid" 2>/dev/null)" = "$$" ]; then rm -rf "$D/lock"; fi
  LOCKED=0
}
on_exit() {
  case $STATE in unchanged|done|failed|rolled_back|rollback_failed|refused) ;;
    *) [ "$(cat "$D/canary" 2>/dev/null)" = "$RUN" ] && rm -f "$D/canary"
       status failed "the activation run stopped unexpectedly in state $STATE" ;; esac
  release
}
trap on_exit EXIT
trap 'exit 1' TERM INT
break_lock() {  # break_lock DEADPID: one breaker at a time, and only that owner's lock
  if mkdir "$D/lock.break" 2>/dev/null; then
    [ "$(cat "$D/lock/pid" 2>/dev/null)" = "$1" ] && rm -rf "$D/lock"
    rmdir "$D/lock.break"
  else
    # a breaker holds lock.break for an instant; one left behind is from a killed breaker
    find "$D" -name lock.break -mmin +1 -exec rmdir {} \; 2>/dev/null
    nap
  fi
}
BOOT=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)
acquire() {
  t0=$(date +%s) empty_since= told=
  while :; do
    if mkdir "$D/lock" 2>/dev/null; then
      echo "$BOOT" >"$D/lock/boot"; echo $$ >"$D/lock/pid"; echo "$RUN" >"$D/lock/run"
      LOCKED=1; return 0
    fi
    owner=$(cat "$D/lock/pid" 2>/dev/null)
    now=$(date +%s)
    if [ -n "$owner" ]; then
      empty_since=
      if ! kill -0 "$owner" 2>/dev/null; then
        echo "nixdeploy: breaking the stale lock of pid $owner (no longer running)"
        break_lock "$owner"; continue
      fi
      # taken before the host rebooted: that pid is another process now
      lock_boot=$(cat "$D/lock/boot" 2>/dev/null)
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
      LOCK_OWNER=$owner LOCK_RUN=$(cat "$D/lock/run" 2>/dev/null); return 1
    fi
    if [ "$told" != "$owner" ]; then
      told=$owner; status waiting_lock "another activation (pid ${owner:-?}) holds the lock of $PROFILE"
    fi
    nap
  done
}
run_activation() {  # run_activation PATH GOAL [dry]: sets RC, bounded by ACTIVATION_TIMEOUT
  if [ "${3:-}" = dry ]; then snippet=$DRY_SNIPPET; else snippet=$ACTIVATE_SNIPPET; fi
  echo "nixdeploy: $(date +%H:%M:%S) activating $1 ($2)"
  # its own process group (setsid), so a timeout stops the whole activation
  $SETSID sh -c "$snippet" activate "$1" "$2" &
  apid=$! t0=$(date +%s)
  while kill -0 "$apid" 2>/dev/null; do
    if [ $(($(date +%s) - t0)) -ge "$ACTIVATION_TIMEOUT" ]; then
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
  echo "nixdeploy: $(date +%H:%M:%S) activation exited with $RC"
}
failure_reason() {
  case $RC in
    124) echo "the activation timed out after ${ACTIVATION_TIMEOUT}s" ;;
    4) echo "the activation exited with code 4 (some units failed)" ;;
    *) echo "the activation failed with exit code $RC" ;;
  esac
}
record_active() {  # what is running now, where no current-system link tells
  case $1 in test|switch) echo "$2" >"$D/active.tmp" && mv -f "$D/active.tmp" "$D/active" ;; esac
}
rollback() {  # rollback REASON CAUSE: back to the previous generation, drop the failed one
  reason=$1 target=$PREV_PATH CAUSE=$2
  [ "$GOAL" = test ] && target=${ACTIVE_BEFORE:-$PREV_PATH}
  if [ -z "$target" ]; then
    status failed "$reason; there is no previous generation to roll back to"; exit 1
  fi
  status rolling_back "$reason"
  if [ -n "$PREV_GEN" ] && [ "$(current_gen)" != "$PREV_GEN" ]; then
    "$NIX_ENV" --profile "$PROFILE" --switch-generation "$PREV_GEN" || {
      status rollback_failed "$reason; could not switch $PROFILE back to generation $PREV_GEN"; exit 1; }
  fi
  if [ -n "$NEW_GEN" ] && [ "$NEW_GEN" != "$PREV_GEN" ]; then
    "$NIX_ENV" --profile "$PROFILE" --delete-generations "$NEW_GEN" ||
      echo "nixdeploy: could not delete the failed generation $NEW_GEN"
  fi
  run_activation "$target" "$ROLLBACK_GOAL"
  if [ "$RC" = 0 ]; then
    ROLLED_BACK=1; record_active "$ROLLBACK_GOAL" "$target"
    status rolled_back "$reason"
  else
    status rollback_failed "$reason; re-activating the previous system $target failed with exit code $RC"
  fi
  exit 1
}
watchdog() {
  # Armed before the canary exists (the deploy-rs PR 385 race): from the
  # moment it is written, a missing canary can only mean that a confirmation
  # claimed it (rename, atomic); at the deadline the watchdog claims it itself.
  deadline=$(($(date +%s) + CONFIRM_TIMEOUT))
  echo "$RUN" >"$D/canary.tmp" && mv -f "$D/canary.tmp" "$D/canary"
  status awaiting_confirmation "waiting ${CONFIRM_TIMEOUT}s for a confirmation over a new connection"
  while :; do
    if [ ! -e "$D/canary" ]; then
      # claimed: by a confirmation, or by a deployer whose health checks failed
      if [ -e "$D/rejected.$RUN" ]; then
        why=$(cat "$D/reject-reason.$RUN" 2>/dev/null)
        rm -f "$D/rejected.$RUN" "$D/reject-reason.$RUN"
        rollback "${why:-the deployer rejected the new system}" checks
      fi
      CONFIRMED=1; return 0
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      if mv "$D/canary" "$D/canary.expired" 2>/dev/null; then
        rm -f "$D/canary.expired"
        rollback "no confirmation within ${CONFIRM_TIMEOUT}s (is the host still reachable under the new system?)" unconfirmed
      fi
      CONFIRMED=1; return 0
    fi
    nap
  done
}
refused() {
  # NixOS's pre-switch checks said no (switch inhibitors) before changing
  # anything: put the profile back, drop the generation, no re-activation
  if [ "$SET_PROFILE" = 1 ] && [ -n "$NEW_GEN" ] && [ "$NEW_GEN" != "$PREV_GEN" ]; then
    if [ -n "$PREV_GEN" ]; then
      "$NIX_ENV" --profile "$PROFILE" --switch-generation "$PREV_GEN" &&
        "$NIX_ENV" --profile "$PROFILE" --delete-generations "$NEW_GEN" ||
        echo "nixdeploy: could not put $PROFILE back to generation $PREV_GEN"
    fi
  fi
  NEW_GEN= CAUSE=refused
  status refused "the switch was refused by its pre-switch checks; nothing was activated"
  exit 1
}
is_current() {
  case $GOAL in
    test) [ "$ACTIVE_BEFORE" = "$NEW" ] ;;
    boot) [ "$PREV_PATH" = "$NEW" ] ;;
    *) [ "$PREV_PATH" = "$NEW" ] && [ "$ACTIVE_BEFORE" = "$NEW" ] ;;
  esac
}
take_lock() {
  status waiting_lock ""
  acquire || { status failed "timed out after ${LOCK_TIMEOUT}s waiting for the lock of $PROFILE, held by pid ${LOCK_OWNER:-?} (run ${LOCK_RUN:-?})"; exit 1; }
  echo "$RUN" >"$D/last.tmp" && mv -f "$D/last.tmp" "$D/last"
  PREV_GEN=$(current_gen); PREV_PATH=$(gen_path "$PREV_GEN"); ACTIVE_BEFORE=$(active_path)
}
main_activate() {
  take_lock
  if is_current; then status unchanged "$NEW is already the current and active generation"; exit 0; fi
  [ -e "$NEW" ] || { status failed "$NEW is not in the target's store: copy its closure first"; exit 1; }
  status running ""
  if [ "$SET_PROFILE" = 1 ]; then
    "$NIX_ENV" --profile "$PROFILE" --set "$NEW" || { status failed "nix-env --set $PROFILE failed"; exit 1; }
    NEW_GEN=$(current_gen)
  fi
  run_activation "$NEW" "$GOAL"
  [ "$SETS_OWN_PROFILE" = 1 ] && NEW_GEN=$(current_gen) && [ "$NEW_GEN" = "$PREV_GEN" ] && NEW_GEN=
  if [ "$RC" = 1 ] && grep -q "$REFUSAL_MARK" "$RD/log" 2>/dev/null; then refused; fi
  if [ "$RC" != 0 ]; then
    reason=$(failure_reason)
    [ "$AUTO" = 1 ] && rollback "$reason" activation_failed
    ACTIVATED=1; status failed "$reason (auto rollback is off)"; exit 1
  fi
  ACTIVATED=1
  [ "$MAGIC" = 1 ] && watchdog
  record_active "$GOAL" "$NEW"
  status done ""
}
main_rollback() {
  take_lock
  [ -n "$PREV_GEN" ] || { status failed "$PROFILE has no generations to roll back to"; exit 1; }
  target_gen=$GENERATION
  [ -n "$target_gen" ] || target_gen=$(list_gens | awk -v c="$PREV_GEN" '$1 < c' | tail -n 1)
  [ -n "$target_gen" ] || { status failed "$PROFILE has no generation before $PREV_GEN"; exit 1; }
  NEW=$(gen_path "$target_gen")
  if [ -z "$NEW" ] || [ ! -e "$NEW" ]; then
    status failed "generation $target_gen of $PROFILE does not exist (there are: $(list_gens | tr '\n' ' '))"; exit 1
  fi
  if [ "$target_gen" = "$PREV_GEN" ] && [ "$ACTIVE_BEFORE" = "$NEW" ]; then
    status unchanged "generation $target_gen is already current and active"; exit 0
  fi
  status running ""
  if [ "$SETS_OWN_PROFILE" != 1 ]; then
    "$NIX_ENV" --profile "$PROFILE" --switch-generation "$target_gen" || {
      status failed "could not switch $PROFILE to generation $target_gen"; exit 1; }
  fi
  run_activation "$NEW" "$ROLLBACK_GOAL"
  NEW_GEN=$(current_gen)
  if [ "$RC" != 0 ]; then
    reason="activating generation $target_gen failed with exit code $RC"
    if [ "$AUTO" = 1 ]; then
      [ "$(current_gen)" = "$PREV_GEN" ] || "$NIX_ENV" --profile "$PROFILE" --switch-generation "$PREV_GEN"
      run_activation "$PREV_PATH" "$ROLLBACK_GOAL"
      reason="$reason; generation $PREV_GEN re-activated (exit code $RC)"
    fi
    status failed "$reason"; exit 1
  fi
  ACTIVATED=1 ROLLED_BACK=1
  record_active "$ROLLBACK_GOAL" "$NEW"
  # the generation this rollback undoes (a boot default that failed after a reboot)
  if [ -n "$DROP_GEN" ] && [ "$DROP_GEN" != "$target_gen" ]; then
    "$NIX_ENV" --profile "$PROFILE" --delete-generations "$DROP_GEN" ||
      echo "nixdeploy: could not delete generation $DROP_GEN"
  fi
  status done "${WHY:-rolled back to generation $target_gen on request}"
}
case $MODE in
  activate) main_activate ;;
  rollback) main_rollback ;;
esac
'''.replace('__GENERATIONS__', _GENERATIONS)

# Starts the runner detached (systemd-run where systemd runs, else setsid or
# nohup) and waits until it has written its first status.
_LAUNCH = r'''
RD=$D/runs/$RUN
mkdir -p "$RD" || fail "cannot create $RD"
# keep the last 20 runs' logs
ls -1t "$D/runs" 2>/dev/null | tail -n +21 | while read -r old; do rm -rf "$D/runs/$old"; done
echo "@@nixdeploy dir=$D"
echo "@@nixdeploy profile=$PROFILE"
echo "@@nixdeploy nix_env=$NIX_ENV"
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
  how=nohup
fi
echo "@@nixdeploy detach=$how"
i=0
while [ ! -f "$RD/status" ] && [ $i -lt 50 ]; do nap; i=$((i + 1)); done
[ -f "$RD/status" ] || fail "the detached activation did not start (see $RD/log)"
'''

# Waits up to WAIT seconds for the run to end (or, with STOP_AWAITING, to
# await its confirmation), then one look: its status, whether its runner
# lives, its log's tail. Folding the wait into the same session saves the
# controller a round trip per look on fast activations.
_POLL = r'''
RD=$D/runs/$RUN
run_state() { sed -n 's/^state=//p' "$RD/status" 2>/dev/null; }
i=0
while [ "$i" -lt $((WAIT * 5)) ]; do
  st=$(run_state)
  case " $TERMINAL " in *" $st "*) break ;; esac
  [ "$STOP_AWAITING" = 1 ] && [ "$st" = awaiting_confirmation ] && break
  nap; i=$((i + 1))
done
[ -f "$RD/status" ] && sed 's/^/@@nixdeploy /' "$RD/status"
pid=$(cat "$RD/pid" 2>/dev/null)
if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo "@@nixdeploy alive=1"
else echo "@@nixdeploy alive=0"; fi
echo "@@nixdeploy-log"
tail -n "$LOG_LINES" "$RD/log" 2>/dev/null
'''

# The confirmation: claim the canary by renaming it (the watchdog does the
# same at its deadline; rename is atomic, so exactly one of them wins).
_CONFIRM = r'''
echo "@@nixdeploy dir=$D"
echo "@@nixdeploy profile=$PROFILE"
claimed=
if [ "$CLAIM" = 1 ] && mv "$D/canary" "$D/canary.confirm.$$" 2>/dev/null; then
  claimed=$(cat "$D/canary.confirm.$$"); rm -f "$D/canary.confirm.$$"
fi
echo "@@nixdeploy claimed=$claimed"
[ -e "$D/canary" ] && echo "@@nixdeploy pending=$(cat "$D/canary" 2>/dev/null)"
last=$(cat "$D/last" 2>/dev/null)
echo "@@nixdeploy last=$last"
# then wait for the run to record the outcome, in this same session
RUN=${claimed:-${RUN:-$last}}
[ -n "$RUN" ] || exit 0
'''

# The deployer's "no": its health checks failed while run RUN awaited its
# confirmation. The reason is written first, then the canary is claimed by
# the same atomic rename a confirmation uses (so exactly one of confirmation,
# rejection and the watchdog's deadline wins); the watchdog, finding
# rejected.<run>, rolls back at once instead of at its deadline.
_REJECT = r'''
echo "@@nixdeploy dir=$D"
echo "@@nixdeploy profile=$PROFILE"
printf '%s\n' "$WHY" >"$D/reject-reason.$RUN.tmp" &&
  mv -f "$D/reject-reason.$RUN.tmp" "$D/reject-reason.$RUN"
rejected=0
if [ "$(cat "$D/canary" 2>/dev/null)" = "$RUN" ] && mv "$D/canary" "$D/rejected.$RUN" 2>/dev/null; then
  rejected=1
else
  # not ours to claim (confirmed, expired, or rejected by an earlier try of
  # this same rejection, whose reason the watchdog may not have read yet)
  [ -e "$D/rejected.$RUN" ] || rm -f "$D/reject-reason.$RUN"
fi
echo "@@nixdeploy rejected=$rejected"
'''

# Check mode and dry-activate: read-only, no lock, synchronous.
_INSPECT = r'''
__GENERATIONS__
PREV_GEN=$(current_gen)
echo "@@nixdeploy dir=$D"
echo "@@nixdeploy profile=$PROFILE"
echo "@@nixdeploy prev_gen=$PREV_GEN"
echo "@@nixdeploy prev_path=$(gen_path "$PREV_GEN")"
echo "@@nixdeploy active=$(active_path)"
echo "@@nixdeploy gens=$(list_gens | tr '\n' ' ')"
if [ -n "$GENERATION" ]; then echo "@@nixdeploy gen_path=$(gen_path "$GENERATION")"; fi
if [ -n "$NEW" ] && [ -e "$NEW" ]; then echo "@@nixdeploy present=1"; else echo "@@nixdeploy present=0"; fi
if [ "$DRY" = 1 ] && [ -n "$NEW" ] && [ -e "$NEW" ] && [ -n "$DRY_SNIPPET" ]; then
  echo "@@nixdeploy-log"
  sh -c "$DRY_SNIPPET" activate "$NEW" dry-activate 2>&1
  echo "@@nixdeploy dry_rc=$?"
fi
'''.replace('__GENERATIONS__', _GENERATIONS)


def q(value):
    """One sh word for ``value`` (None -> empty)."""
    return shlex.quote('' if value is None else str(value))


def _assign(values):
    return ''.join('%s=%s\n' % (name, q(value)) for name, value in values)


def command_snippet(activation, command, env=None):
    """An ``sh -c`` body running ``command`` (argv below the system path
    ``$1``; '{goal}' is ``$2``), with home-manager's driver arguments."""
    words = []
    for name, value in sorted((env or {}).items()):
        words.append('%s=%s' % (name, q(value)))
    if words:
        words.insert(0, 'env')
    first = True
    for part in command:
        if first:
            words.append('"$1"/%s' % q(part))
            first = False
        elif part == '{goal}':
            words.append('"$2"')
        else:
            words.append(q(part))
    line = ' '.join(words)
    driver = activation.get('driver')
    if not driver:
        return 'exec %s' % line
    driver_file = '"$1"/%s' % q(driver['file'])
    return ('v=$(cat %s 2>/dev/null); case $v in ""|*[!0-9]*) v=0 ;; esac\n'
            'if [ "$v" -ge %d ]; then exec %s %s; else exec %s; fi'
            % (driver_file, int(driver['min']), line, ' '.join(q(a) for a in driver['args']), line))


def resolve_profile_function(spec):
    """sh function setting PROFILE from the platform's table row."""
    if spec.get('profile'):
        return 'resolve_profile() { PROFILE=%s; }\n' % q(spec['profile'])
    candidates = spec['activation'].get('profile_candidates') or []
    if not candidates:
        return 'resolve_profile() { fail "no profile known for $PLATFORM: set profile"; }\n'
    lines = ['resolve_profile() {']
    for folder, name in candidates[:-1]:
        # folder: a constant of the platform table with sh expansions, never
        # task or inventory data
        lines.append('  if [ -d "%s" ]; then PROFILE="%s"/%s; return; fi' % (folder, folder, q(name)))
    folder, name = candidates[-1]
    lines.append('  PROFILE="%s"/%s' % (folder, q(name)))
    lines.append('}')
    return '\n'.join(lines) + '\n'


def _head(platform, spec, profile, remote_nix_dir):
    return (_assign([('PLATFORM', platform), ('PROFILE', profile or ''),
                     ('NIX_DIR', remote_nix_dir or ''),
                     ('NEEDS_ROOT', '1' if spec.get('needs_root') else '0')])
            + resolve_profile_function(spec) + _PREAMBLE)


def snippets(spec):
    activation = spec['activation']
    activate = command_snippet(activation, activation['command'])
    dry = activation.get('dry_run')
    dry_snippet = command_snippet({}, dry['command'], dry.get('env')) if dry else ''
    return activate, dry_snippet


def _waiting(wait, stop_awaiting, log_lines=40):
    return _assign([('WAIT', int(wait)), ('STOP_AWAITING', '1' if stop_awaiting else '0'),
                    ('TERMINAL', ' '.join(TERMINAL_STATES)), ('LOG_LINES', int(log_lines))])


def launch_script(platform, spec, run, mode, path='', goal='switch', profile=None,
                  remote_nix_dir=None, magic=True, auto=True, confirm_timeout=30,
                  activation_timeout=240, lock_timeout=60, generation=None, wait=0,
                  no_check=False, drop_generation=None, why=None):
    """Start a detached activation (mode 'activate') or rollback (mode
    'rollback'); then, like ``poll_script``, wait up to ``wait`` seconds for
    it to end (or to await its confirmation) and report it.

    ``no_check`` sets NIXOS_NO_CHECK=1 for the activation (NixOS's override
    of its pre-switch checks). A rollback deletes ``drop_generation`` once it
    succeeded and records ``why`` as its reason."""
    activation = spec['activation']
    activate, dry = snippets(spec)
    rollback_goal = goal if goal in ('test', 'boot') else 'switch'
    runner = (_assign([
        ('RUN', run), ('MODE', mode), ('NEW', path or ''), ('GOAL', goal),
        ('ROLLBACK_GOAL', rollback_goal),
        ('MAGIC', '1' if magic else '0'), ('AUTO', '1' if auto else '0'),
        ('CONFIRM_TIMEOUT', int(confirm_timeout)),
        ('ACTIVATION_TIMEOUT', int(activation_timeout)),
        ('LOCK_TIMEOUT', int(lock_timeout)),
        ('GENERATION', '' if generation is None else int(generation)),
        ('SET_PROFILE', '1' if goal in activation['profile_goals'] else '0'),
        ('SETS_OWN_PROFILE', '1' if activation.get('sets_own_profile') else '0'),
        ('CURRENT_LINK', activation.get('current_link') or ''),
        ('ACTIVATE_SNIPPET', activate), ('DRY_SNIPPET', dry),
        ('NO_CHECK', '1' if no_check else '0'), ('REFUSAL_MARK', REFUSAL_MARK),
        ('DROP_GEN', '' if drop_generation is None else int(drop_generation)),
        ('WHY', why or ''),
    ]) + _RUNNER)
    return (_head(platform, spec, profile, remote_nix_dir)
            + _assign([('RUN', run), ('RUNNER', runner)]) + _LAUNCH
            + _waiting(wait, magic) + _POLL)


def poll_script(platform, spec, run, profile=None, remote_nix_dir=None, wait=0,
                stop_awaiting=True):
    """Wait up to ``wait`` seconds for run ``run`` to end, then report it.
    The state folder is found again on the target, so a task that lost the
    launch's answer (a host whose network went down) can follow its run."""
    return (_head(platform, spec, profile, remote_nix_dir) + _assign([('RUN', run)])
            + _waiting(wait, stop_awaiting) + _POLL)


def confirm_script(platform, spec, profile=None, remote_nix_dir=None, claim=True, run=None,
                   wait=0):
    """Claim the canary (the confirmation), then wait up to ``wait`` seconds
    for the run (``run``, or the one that was claimed) to record its end."""
    return (_head(platform, spec, profile, remote_nix_dir)
            + _assign([('CLAIM', '1' if claim else '0'), ('RUN', run or '')]) + _CONFIRM
            + _waiting(wait, False) + _POLL)


def reject_script(platform, spec, run, why, profile=None, remote_nix_dir=None, wait=0):
    """Reject run ``run`` (its health checks failed): its watchdog rolls it
    back at once with ``why``; then wait up to ``wait`` seconds for the run
    to record its end, and report it."""
    return (_head(platform, spec, profile, remote_nix_dir)
            + _assign([('RUN', run), ('WHY', why.replace('\n', ' '))]) + _REJECT
            + _waiting(wait, False) + _POLL)


def inspect_script(platform, spec, path='', profile=None, remote_nix_dir=None, dry=False,
                   generation=None):
    _activate, dry_snippet = snippets(spec)
    return (_head(platform, spec, profile, remote_nix_dir)
            + _assign([('NEW', path or ''), ('DRY', '1' if dry else '0'),
                       ('DRY_SNIPPET', dry_snippet),
                       ('GENERATION', '' if generation is None else int(generation)),
                       ('CURRENT_LINK', spec['activation'].get('current_link') or '')])
            + _INSPECT)


def parse(output):
    """(values, log): ``@@nixdeploy key=value`` lines and the text after the log mark."""
    values, log, in_log = {}, [], False
    for line in output.splitlines():
        if in_log:
            if line.startswith(MARK):
                key, _sep, value = line[len(MARK):].partition('=')
                values[key.strip()] = value
            else:
                log.append(line)
        elif line.startswith(LOG_MARK):
            in_log = True
        elif line.startswith(MARK):
            key, _sep, value = line[len(MARK):].partition('=')
            values[key.strip()] = value
    return values, '\n'.join(log)
