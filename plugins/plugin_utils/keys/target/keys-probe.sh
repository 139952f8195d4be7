# shellcheck shell=sh
# The nix_keys probe: the facts of each handled key (KEY_PATHS, one a line),
# with PRUNE=1 the manifest's entries not in KEEP. stdin: the call's NONCE
# (keys-lib.sh). Values: stat_<i> "kind listed [digest mode owner group uid
# gid]" (kind: file, link, other, absent, or changed: it was swapped while
# probed), stale_<n> "exists path".
#
# A key's folder may belong to its owner, who can swap the key's name for a
# link to another file (another key, a root file) at any moment. So the file
# is opened once (fd 3) after the name was seen to be a regular file, the
# open file is checked to be the very file at that name (not a link, the same
# inode, mode, owner and size, read from /dev/fd/3 or /proc/self/fd/3), and
# its digest and facts come from fd 3: what is hashed is what was checked,
# whatever the name leads to by then. (A target with neither folder gets the
# name checked again after the open, which narrows the window, no more.)
# TEST_PAUSE (tests only, never set by the controller): the probe reads a
# line from the FIFO TEST_PAUSE.<n> at its n-th pause (before it opens a key,
# after, and before it hashes it), so a test can swap names at those moments.
# shellcheck disable=SC2034  # NONCE: read by salted (keys-lib.sh)
IFS= read -r NONCE || :
check_nonce
PAUSES=0
pause() {
  [ -n "${TEST_PAUSE:-}" ] || return 0
  PAUSES=$((PAUSES + 1)); read -r _ <"$TEST_PAUSE.$PAUSES"
}
# ls_fields LS_LINE: PERM and SAME, the fields of "ls -ldin" that tell one
# file from another (inode, type and mode, links, owner, group, size). PERM
# is the type and mode alone: ls adds +, @ or . for an ACL, extended
# attributes or a security context, which macOS's /dev/fd does not show
ls_fields() {
  read -r ino PERM links uid gid size _ <<LS
$1
LS
  rest=${PERM#??????????}; PERM=${PERM%"$rest"}
  SAME="$ino $PERM $links $uid $gid $size"
}
# probe_open PATH, with fd 3 open on PATH: KIND 'file' with DIGEST and FACTS
# when the open file is the regular file at PATH, else 'changed'
probe_open() {
  KIND=changed
  pause
  if [ -e /dev/fd/3 ]; then fd=/dev/fd/3
  elif [ -e /proc/self/fd/3 ]; then fd=/proc/self/fd/3
  else fd=; fi
  if [ -n "$fd" ]; then
    # one lstat of the name: a link there shows as a link, never as its target
    named=$(ls -ldin -- "$1" 2>/dev/null) || return 0
    opened=$(ls -ldinL -- "$fd" 2>/dev/null) || return 0
    ls_fields "$named"; case $PERM in -*) ;; *) return 0 ;; esac
    was=$SAME
    ls_fields "$opened"; [ "$SAME" = "$was" ] || return 0
    FACTS=$(facts "$fd" L) || FACTS='- - - - -'
  else
    { [ -f "$1" ] && [ ! -L "$1" ]; } || return 0
    FACTS=$(facts "$1") || FACTS='- - - - -'
  fi
  pause
  DIGEST=$(salted <&3); [ -n "$DIGEST" ] || DIGEST=-
  KIND='file'
}
emit uid "$(id -u)"
emit hash "$HASH"
i=0
while IFS= read -r p; do
  [ -n "$p" ] || continue
  l=0; listed "$p" && l=1
  if [ -L "$p" ]; then emit "stat_$i" "link $l"
  elif [ -f "$p" ]; then
    pause
    # the redirection of a function call: when it fails (the file cannot be
    # read, or is gone) the shell goes on, where exec's would end it
    KIND=unopened
    # shellcheck disable=SC2094  # fd 3 is read, nothing is written
    probe_open "$p" 2>/dev/null 3<"$p"
    if [ "$KIND" = file ]; then emit "stat_$i" "file $l $DIGEST $FACTS"
    elif [ -L "$p" ]; then emit "stat_$i" "link $l"
    elif [ "$KIND" = unopened ] && [ -f "$p" ]; then
      # a file this account cannot read: no digest, so it is written again
      f=$(facts "$p") || f='- - - - -'
      emit "stat_$i" "file $l - $f"
    else emit "stat_$i" "changed $l"; fi
  elif [ -e "$p" ]; then emit "stat_$i" "other $l"
  else emit "stat_$i" "absent $l"; fi
  i=$((i + 1))
done <<KEYS
$KEY_PATHS
KEYS
n=0
if [ "$PRUNE" = 1 ] && [ -f "$MANIFEST" ]; then
  while IFS= read -r p; do
    [ -n "$p" ] || continue
    wanted "$p" && continue
    if [ -e "$p" ] || [ -L "$p" ]; then e=1; else e=0; fi
    emit "stale_$n" "$e $p"
    n=$((n + 1))
  done <"$MANIFEST"
fi
emit probed 1
