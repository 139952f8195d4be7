# shellcheck shell=sh
# nix_status's one look at a host (_programs.py's status_script renders it
# after lib.sh and activate-lib.sh): what runs, what booted, the profile's
# current generation and the runs nix_activate keeps in its state folder
# (activate-lib.sh describes it). Read-only: it writes nothing,
# creates no folder, takes no lock and runs no nix command, so a login that
# may only read is enough.
# Values: PROFILE (empty: the first of PROFILE_CANDIDATES that exists),
# CURRENT_LINK, BOOTED_LINK and BOOT_PARTS (empty where the platform boots
# no system of its own), ROOT_STATE and ROOT_OWNED (1: the state folder is
# root's whoever reads it, as the platform's activation runs as root).
[ -n "${HOME:-}" ] || HOME=$(cd ~ 2>/dev/null && pwd)
ids
USER=${USER:-$ME}
if [ -z "$PROFILE" ]; then
  # no profile folder at all: nothing was ever activated here
  first_profile || PROFILE=
fi
emit profile "$PROFILE"
if [ -n "$PROFILE" ]; then
  generations_of
  # the profile's current generation and the system its link names: what
  # the platform activates at boot (NixOS, nix-darwin) or runs (the others)
  if current_gen && [ -n "$CUR_GEN" ]; then
    emit generation "$CUR_GEN"
    gen_path "$CUR_GEN"; emit generation_path "$GEN_PATH"
  fi
fi
if [ -n "$CURRENT_LINK" ]; then
  emit current "$(readlink "$CURRENT_LINK" 2>/dev/null)"
fi
if [ -n "$BOOTED_LINK" ]; then
  emit booted "$(readlink "$BOOTED_LINK" 2>/dev/null)"
  # what only a boot loads, in the booted system, the running one and the
  # boot default (readlink -f: each part is a link into its package)
  for part in $BOOT_PARTS; do
    emit "booted_$part" "$(readlink -f "$BOOTED_LINK/$part" 2>/dev/null)"
    [ -z "$CURRENT_LINK" ] || emit "current_$part" "$(readlink -f "$CURRENT_LINK/$part" 2>/dev/null)"
  done
fi
[ -n "$PROFILE" ] || exit 0
# shellcheck disable=SC2034  # BASE: read by state_dir (activate-lib.sh)
if [ "$ROOT_OWNED" = 1 ]; then BASE=$ROOT_STATE; else state_base "$ROOT_STATE"; fi
state_dir
emit dir "$D"
last=; read -r last 2>/dev/null <"$D/last" || :
emit last "$last"
# each run kept (the last 20): one line of words, '-' for an empty one:
# state mode new_path prev_path rolled_back activated started updated
for status in "$D"/runs/*/status; do
  [ -f "$status" ] || continue
  run=${status%/status}; run=${run##*/}
  case $run in ''|.*|*[!0-9a-f-]*) continue ;; esac
  st='-' mode='-' new='-' prev='-' back='-' act='-' started='-' updated='-'
  while IFS= read -r line || [ -n "$line" ]; do
    case $line in
      state=?*) st=${line#state=} ;; mode=?*) mode=${line#mode=} ;;
      new_path=?*) new=${line#new_path=} ;; prev_path=?*) prev=${line#prev_path=} ;;
      rolled_back=?*) back=${line#rolled_back=} ;; activated=?*) act=${line#activated=} ;;
      started=?*) started=${line#started=} ;; updated=?*) updated=${line#updated=} ;;
    esac
  done <"$status"
  emit "run_$run" "$st $mode $new $prev $back $act $started $updated"
done
