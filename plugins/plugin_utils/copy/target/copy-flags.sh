# shellcheck shell=sh
# The words every nix copy of the copy phase passes (plugin_utils/copy/_copy.py
# CopySettings.nix_copy_flags), made this program's positional parameters: the
# program after this file adds its own words and runs nix copy with "$@".
# NIX_COPY_FLAGS: one word a line, each behind a ':' (_copy_send.flag_lines; the
# controller refuses a word holding a line end), read as data: never split
# into words nor evaluated by the shell.
set --
while IFS= read -r flag; do
  case $flag in :*) set -- "$@" "${flag#:}" ;; esac
done <<NIX_COPY_FLAGS
$NIX_COPY_FLAGS
NIX_COPY_FLAGS
