# shellcheck shell=sh
# shellcheck disable=SC2034  # PROFILE, PNAME, PDIR: read by the script after this
# Shared by nix_activate's target programs (module_utils/_target.py renders
# them after lib.sh): the profile, the state folder and the generations.
#
# On the target, per user and profile, a state folder D holds:
#   D/lock/{pid,run,boot}  the profile lock (mkdir: atomic everywhere, no flock)
#   D/runs/<run>/          status (key=value), log and pid of one detached run
#   D/last                 the run that last held the lock
#   D/canary               exists while a run waits for its confirmation
#   D/rejected.<run>       the canary, claimed by a deployer whose health checks
#                          failed: the watchdog rolls back at once, for the
#                          reason in D/reject-reason.<run>
#   D/active               what this collection last activated (where no link says it)

# resolve_profile: PROFILE from PROFILE_CANDIDATES, lines "FOLDER NAME" of the
# platform table (never task data): the first FOLDER that exists wins, the
# last line is the fallback. FOLDER's $HOME etc. expand here.
resolve_profile() {
  [ -n "$PROFILE_CANDIDATES" ] || fail "no profile known for $PLATFORM: set profile"
  PROFILE=
  while read -r folder name; do
    [ -n "$folder" ] || continue
    folder=$(eval "printf '%s' \"$folder\"")
    PROFILE=$folder/$name
    [ -d "$folder" ] && return 0
  done <<CANDIDATES
$PROFILE_CANDIDATES
CANDIDATES
}

# Profile generations: PROFILE -> PROFILE-N-link -> /nix/store/...
generations_of() { PNAME=${PROFILE##*/}; PDIR=${PROFILE%/*}; }
gen_number() { n=${1##*/}; n=${n#"$PNAME"-}; n=${n%-link}
  case $n in ''|*[!0-9]*) return 1 ;; esac; echo "$n"; }
current_gen() { t=$(readlink "$PROFILE" 2>/dev/null) || return 0; gen_number "$t"; }
gen_path() { [ -n "$1" ] && readlink "$PDIR/$PNAME-$1-link" 2>/dev/null; }
list_gens() { for l in "$PDIR/$PNAME"-*-link; do [ -L "$l" ] && gen_number "$l"; done | sort -n; }
active_path() {
  if [ -n "$CURRENT_LINK" ] && [ -e "$CURRENT_LINK" ]; then readlink "$CURRENT_LINK"; return; fi
  cat "$D/active" 2>/dev/null
}
