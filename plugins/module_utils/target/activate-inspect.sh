# shellcheck shell=sh
# Check mode and dry-activate: read-only, no lock, synchronous. With DRY=1
# and a DRY_PROGRAM (activate-command.sh rendered), runs the dry activation.
PREV_GEN=$(current_gen)
emit dir "$D"
emit profile "$PROFILE"
emit prev_gen "$PREV_GEN"
emit prev_path "$(gen_path "$PREV_GEN")"
emit active "$(active_path)"
emit gens "$(list_gens | tr '\n' ' ')"
if [ -n "$GENERATION" ]; then emit gen_path "$(gen_path "$GENERATION")"; fi
if [ -n "$NEW" ] && [ -e "$NEW" ]; then emit present "1"; else emit present "0"; fi
if [ "$DRY" = 1 ] && [ -n "$NEW" ] && [ -e "$NEW" ] && [ -n "$DRY_PROGRAM" ]; then
  log_section
  sh -c "$DRY_PROGRAM" activate "$NEW" dry-activate 2>&1
  emit dry_rc "$?"
fi
