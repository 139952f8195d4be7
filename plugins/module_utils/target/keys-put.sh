# shellcheck shell=sh
# One key (nix_keys put): stdin is "<sha256>\n<content>" (WRITE=1) or empty
# (owner and mode only). Values: P, DIR, NAME, KUSER, KGROUP, MODE, WRITE,
# REQUIRE_OWNER.
owner_missing() {  # the user or group does not exist (yet)
  id -u -- "$KUSER" >/dev/null 2>&1 || return 0
  case $KGROUP in *[!0-9]*) ;; *) return 1 ;; esac
  if command -v getent >/dev/null 2>&1; then getent group "$KGROUP" >/dev/null 2>&1 || return 0
  elif command -v dscl >/dev/null 2>&1; then dscl . -read "/Groups/$KGROUP" >/dev/null 2>&1 || return 0
  fi
  return 1
}
set_owner() {  # set_owner FILE: chown, or (pre-activation) leave it to the uploader
  err=$(chown -- "$KUSER:$KGROUP" "$1" 2>&1) && return 0
  if [ "$REQUIRE_OWNER" != 1 ] && owner_missing; then
    emit owner_unset "$KUSER:$KGROUP does not exist yet on this host, so $P stays owned by $(id -un); the next run sets it"
    return 0
  fi
  fail "cannot give the key to $KUSER:$KGROUP: $err"
}
if [ ! -d "$DIR" ]; then
  [ -e "$DIR" ] && fail "$DIR exists and is not a folder"
  # every folder made here (parents too: the umask) lets others reach their
  # own key by name but list nothing: 0711, whichever key happened to come first
  # shellcheck disable=SC2174
  err=$( (umask 066 && mkdir -p -m 0711 -- "$DIR") 2>&1) || fail "cannot create the folder $DIR: $err"
  emit dir_created "$DIR"
fi
if [ "$WRITE" = 1 ]; then
  IFS= read -r EXPECT || fail "no content came on stdin"
  T=$DIR/.$NAME.nixdeploy.$$
  trap 'rm -f -- "$T"' EXIT
  rm -f -- "$T"
  # created exclusively (noclobber), 0600 by the umask; opened for writing
  # before owner and mode change, so a read-only mode still lets us write
  err=$( (set -C && : >"$T") 2>&1) || fail "cannot create a temporary file in $DIR: $err"
  exec 3>"$T"
  set_owner "$T"
  err=$(chmod -- "$MODE" "$T" 2>&1) || fail "cannot set mode $MODE on $T: $err"
  cat >&3 || fail "writing $T failed"
  exec 3>&-
  got=$(sha "$T")
  [ "$got" = "$EXPECT" ] || fail "the content of $P arrived damaged (sha256 ${got:-unreadable}), nothing was replaced"
  if [ -L "$P" ] || { [ -e "$P" ] && [ ! -f "$P" ]; }; then fail "$P is not a regular file (any more)"; fi
  err=$(mv -f -- "$T" "$P" 2>&1) || fail "cannot rename the temporary file to $P: $err"
  trap - EXIT
else
  if [ -L "$P" ] || [ ! -f "$P" ]; then fail "$P is not a regular file (any more)"; fi
  set_owner "$P"
  err=$(chmod -- "$MODE" "$P" 2>&1) || fail "cannot set mode $MODE on $P: $err"
fi
if ! listed "$P"; then
  if ! { (umask 022 && mkdir -p -- "$MB") && printf '%s\n' "$P" >>"$MANIFEST"; }; then
    emit manifest_failed "cannot record $P in $MANIFEST"
  fi
fi
emit 'done' 1
