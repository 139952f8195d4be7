# shellcheck shell=sh
# One look at the host (plugin_utils/activation/_reboot_rules.py): its boot id, what it
# booted and runs, and for each part only a boot loads the booted and the
# new system's target (value NEW, the new system, may be empty).
emit boot_id "$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)"
emit booted "$(readlink -f /run/booted-system 2>/dev/null)"
emit current "$(readlink -f /run/current-system 2>/dev/null)"
for part in $BOOT_PARTS; do
  emit "booted_$part" "$(readlink -f "/run/booted-system/$part" 2>/dev/null)"
  if [ -n "$NEW" ]; then
    emit "new_$part" "$(readlink -f "$NEW/$part" 2>/dev/null)"
  fi
done
