# shellcheck shell=sh
# The host's boot id: a new one after a reboot.
emit boot_id "$(cat /proc/sys/kernel/random/boot_id)"
