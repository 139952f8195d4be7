# shellcheck shell=sh
# The reboot request. systemctl returns once the reboot is queued; the
# session may still be cut by it, which the caller accepts. Its words (a
# refusal's reason) are the log, after its exit code (nothing after the log
# is a value).
PATH=${PATH:-/usr/bin:/bin}:/run/current-system/sw/bin:/usr/bin:/bin:/usr/sbin:/sbin
export PATH
said=$(systemctl reboot 2>&1)
emit reboot_rc "$?"
log_section
printf '%s\n' "$said"
