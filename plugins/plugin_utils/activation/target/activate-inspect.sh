# shellcheck shell=sh
# Check mode and dry-activate: read-only, no lock, synchronous. With DRY=1
# and a DRY_PROGRAM (activate-command.sh rendered), runs the platform's own
# dry activation (switch-to-configuration dry-activate, darwin's
# checkActivation=1, home-manager's and nix-on-droid's DRY_RUN=1).
current_gen; PREV_GEN=$CUR_GEN
emit dir "$D"
emit profile "$PROFILE"
emit prev_gen "$PREV_GEN"
gen_path "$PREV_GEN"; emit prev_path "$GEN_PATH"
active_path; emit active "$ACTIVE_PATH"
emit gens "$(list_gens | tr '\n' ' ')"
if [ -n "$GENERATION" ]; then gen_path "$GENERATION"; emit gen_path "$GEN_PATH"; fi
if [ -n "$NEW" ] && [ -e "$NEW" ]; then emit present "1"; else emit present "0"; fi
if [ "$DRY" = 1 ] && [ -n "$NEW" ] && [ -e "$NEW" ] && [ -n "$DRY_PROGRAM" ]; then
  # home-manager's -b, as the activation would have it
  if [ -n "$BACKUP_ENV" ] && [ -n "$BACKUP_EXT" ]; then export "$BACKUP_ENV=$BACKUP_EXT"; fi
  # its output is carried text: kept until its exit code is a value, then the log
  # the dry run is the platform's own, whatever the goal: no step
  dry_out=$(sh -c "$DRY_PROGRAM" activate "$NEW" '' "$INVOKER" 2>&1)
  emit dry_rc "$?"
  log_section
  printf '%s\n' "$dry_out"
fi
