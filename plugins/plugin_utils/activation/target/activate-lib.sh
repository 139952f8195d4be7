# shellcheck shell=sh
# shellcheck disable=SC2034  # PROFILE, PNAME, PDIR: read by the script after this
# Shared by nix_activate's target programs (plugin_utils/activation/_programs.py renders
# them after lib.sh): the profile, the state folder and the generations.
#
# On the target, per user and profile, a state folder D holds:
#   D/lock/{pid,run,boot}  the profile lock (mkdir: atomic everywhere, no flock)
#   D/lock.break           held for moments by whoever breaks a dead owner's lock or
#                          ends a dead run (activate-poll.sh)
#   D/runs/<run>/          status (key=value), log, pid and boot of one detached run
#   D/last                 the run that last held the lock
#   D/canary               exists while a run waits for its confirmation
#   D/rejected.<run>       the canary, claimed by a deployer whose health checks
#                          failed: the watchdog rolls back at once, for the
#                          reason in D/reject-reason.<run>
#   D/active               what this collection last activated (where no link says it)
#   D/reserve              RESERVE_KB of zeros: room the run gives back to itself
#                          when its file system is full (its status, the lock, the
#                          canary, a rollback's profile links); made again by the
#                          next launch, which fails clean when it cannot
# and, per user, BASE/gcroots/<inventory name>: the copy's GC root (copy-probe.sh)

# resolve_profile: PROFILE from PROFILE_CANDIDATES, lines "FOLDER NAME" of the
# platform table (never task data): the first FOLDER that exists wins, as the
# platform's own activation picks it. When the first is missing, nix-env
# PROFILE_PROBE runs first (home-manager's CLI runs `nix-env -q` so that Nix
# creates its own profiles folder). No folder at all is an error: a profile
# the activation would not look at is worse than none. FOLDER's $HOME etc.
# expand here.
first_profile() {  # first_profile [first]: PROFILE in the first existing folder
  PROFILE='' tried=''
  while read -r folder name; do
    [ -n "$folder" ] || continue
    eval "folder=\"$folder\""
    tried="$tried${tried:+, }$folder"
    [ -d "$folder" ] && PROFILE=$folder/$name && return 0
    [ "${1:-}" = first ] && return 1
  done <<CANDIDATES
$PROFILE_CANDIDATES
CANDIDATES
  return 1
}
resolve_profile() {
  [ -n "$PROFILE_CANDIDATES" ] || fail "no profile known for $PLATFORM: set profile"
  first_profile first && return 0
  if [ -n "$PROFILE_PROBE" ]; then
    # shellcheck disable=SC2086  # table words
    "$NIX_ENV" $PROFILE_PROBE >/dev/null 2>&1 || :
  fi
  first_profile && return 0
  fail "no profile folder for $PLATFORM: none of $tried exists (not even after nix-env $PROFILE_PROBE); create one or set profile"
}

# state_dir: D = the state folder of PROFILE below BASE (state_base): the
# profile's path as a file name, every byte but A-Za-z0-9._- made _ (tr), by
# the shell where only a / is to change (every platform's profile path)
state_dir() {
  case $PROFILE in
    *[!ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._/-]*)
      name=$(printf '%s' "$PROFILE" | tr -c 'A-Za-z0-9._-' '_') ;;
    *) name='' rest=$PROFILE
       while :; do
         case $rest in */*) name=$name${rest%%/*}_ rest=${rest#*/} ;; *) name=$name$rest; break ;; esac
       done ;;
  esac
  D=$BASE/$name
}

# Profile generations: PROFILE -> PROFILE-N-link -> /nix/store/...
# The helpers set a variable (a `$(function)` would be a process more than
# the readlink it runs)
generations_of() { PNAME=${PROFILE##*/}; PDIR=${PROFILE%/*}; }
gen_number() {  # gen_number LINK: GEN_N, the N of PNAME-N-link (else status 1, GEN_N empty)
  GEN_N=${1##*/}; GEN_N=${GEN_N#"$PNAME"-}; GEN_N=${GEN_N%-link}
  case $GEN_N in ''|*[!0-9]*) GEN_N=; return 1 ;; esac; }
current_gen() {  # CUR_GEN: the profile's current generation (empty: none)
  CUR_GEN=; t=$(readlink "$PROFILE" 2>/dev/null) || return 0
  gen_number "$t" || return 1; CUR_GEN=$GEN_N; }
gen_path() {  # gen_path N: GEN_PATH, what generation N's link points at (empty: none)
  GEN_PATH=; [ -n "$1" ] && GEN_PATH=$(readlink "$PDIR/$PNAME-$1-link" 2>/dev/null); }
is_gen() { case $1 in ''|*[!0-9]*) return 1 ;; esac; }  # a generation number
switch_back() {  # switch_back PREV MADE: the profile back at generation PREV, MADE dropped
  # Both are read back from this run's own files: anything but a generation
  # number (a corrupted status) never reaches nix-env, where it would be an
  # option. Fails, the profile as it was, when one is not or the switch fails.
  is_gen "$1" && is_gen "$2" || return 1
  "$NIX_ENV" --profile "$PROFILE" --switch-generation "$1" || return 1
  "$NIX_ENV" --profile "$PROFILE" --delete-generations "$2" || :
}
# record_active RECORDS PATH: PATH is what runs now, where no current-system
# link tells (D/active). RECORDS: the goal's RECORDS_ACTIVE (a rollback's
# ROLLBACK_RECORDS_ACTIVE; a dead run's records_active, activate-poll.sh)
record_active() {
  [ "$1" = 1 ] || return 0
  { echo "$2" >"$D/active.tmp" && mv -f "$D/active.tmp" "$D/active"; } 2>/dev/null ||
    { room; echo "$2" >"$D/active.tmp" && mv -f "$D/active.tmp" "$D/active"; }
}
# take_break: hold D/lock.break, which one breaker of a dead owner's lock, or
# one look ending a dead run, holds for moments (status 1: another holds it).
# One older than a minute is a breaker's or a look's that was killed holding
# it: cleared first, or no lock of this profile could be broken again
take_break() {
  find "$D" -name lock.break -mmin +1 -exec rmdir {} \; 2>/dev/null
  mkdir "$D/lock.break" 2>/dev/null
}
drop_canary() {  # drop_canary RUN: D/canary goes where it is RUN's (a run that is over)
  canary=; read -r canary 2>/dev/null <"$D/canary" || :
  [ "$canary" != "$1" ] || rm -f "$D/canary"
}
list_gens() {  # the generations' numbers, one a line, in order
  for l in "$PDIR/$PNAME"-*-link; do [ -L "$l" ] && gen_number "$l" && echo "$GEN_N"; done | sort -n; }
active_path() {  # ACTIVE_PATH: what is active (CURRENT_LINK's target, else D/active)
  ACTIVE_PATH=
  if [ -n "$CURRENT_LINK" ] && [ -e "$CURRENT_LINK" ]; then
    ACTIVE_PATH=$(readlink "$CURRENT_LINK"); return
  fi
  IFS= read -r ACTIVE_PATH 2>/dev/null <"$D/active" || :
}

# room: give the reserve back to the file system (a write failed, or a
# failure path is about to write): what the run still writes fits in it
room() { rm -f "$D/reserve"; }
# full_note: "; no space left on MOUNT (N KB free)" when D's file system has
# less than the reserve free (read before room), else nothing
full_note() {
  df_line "$D"
  # shellcheck disable=SC2086  # the df line's fields
  set -- $DF
  while [ "$#" -gt 1 ]; do
    case $2 in *%) break ;; esac
    shift
  done
  [ "$#" -gt 2 ] && [ "$1" -lt "$RESERVE_KB" ] 2>/dev/null || return 0
  avail=$1; shift 2
  echo "; no space left on $* ($avail KB free)"
}

# the boot id (empty where there is no /proc: macOS): a lock, or a run's pid,
# from another boot is stale whatever process has that pid now
boot_id() { BOOT=; read -r BOOT 2>/dev/null </proc/sys/kernel/random/boot_id || :; }

# lives PID: whether process PID still runs. kill -0 alone also answers yes
# for a process that has ended but that its parent has not yet collected (a
# zombie): a detached runner's parent is then the host's init, which may
# collect late (seconds) or never (a container whose first process is no
# init). Where /proc shows the state, a zombie (Z, or X: being removed) has
# ended. The state is the word after the command's name, which ends at the
# line's last ") " (a name may hold blanks and parentheses itself). A pid
# file that holds no plain number (corrupted) names no process: kill -0 -1
# would answer for every process the user may signal.
lives() {
  case $1 in ''|*[!0-9]*) return 1 ;; esac
  kill -0 "$1" 2>/dev/null || return 1
  LIVES_STAT=
  read -r LIVES_STAT 2>/dev/null <"/proc/$1/stat" || return 0
  case ${LIVES_STAT##*) } in Z*|X*) return 1 ;; esac
  return 0
}
