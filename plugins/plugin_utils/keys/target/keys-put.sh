# shellcheck shell=sh
# One key (nix_keys put): stdin is "<nonce> <digest>\n<content>", the digest
# sha256(nonce || content) (keys-lib.sh: never a plain hash of the key). A
# key whose owner or mode only differ is written again: nothing is ever
# changed in place.
# Values: P, DIR, NAME, KUSER, KGROUP, MODE, REQUIRE_OWNER.
#
# Never through a link, never by a name another account can swap (a key's
# folder may belong to its owner, a service account):
# - DIR may be written by no account but root, this one and the key's owner,
#   and every folder DIR's name goes through (each one's physical path and
#   the folders above it) by none but root and this one; else the key is
#   refused, naming the folder and who can write it;
# - the key is written, given its owner (chown -h) and its mode inside a
#   private folder: made by mkdir in DIR (which fails on anything already
#   there), this account's, 0700, entered with cd and checked to be the one
#   made. From there it is renamed to ../NAME, on the same file system:
#   rename(2) replaces a link at NAME without following it, and fails on a
#   folder. No path another account can write is ever opened by name.
case $NAME in ''|.|..|*/*) fail "not a file name: $NAME" ;; esac
unset CDPATH
ids
case $KUSER in
  *[!0-9]*) KUID=$(id -u -- "$KUSER" 2>/dev/null) || KUID= ;;
  *) KUID=$KUSER ;;
esac
owner_missing() {  # the user or group does not exist (yet)
  id -u -- "$KUSER" >/dev/null 2>&1 || return 0
  case $KGROUP in *[!0-9]*) ;; *) return 1 ;; esac
  if command -v getent >/dev/null 2>&1; then getent group "$KGROUP" >/dev/null 2>&1 || return 0
  elif command -v dscl >/dev/null 2>&1; then dscl . -read "/Groups/$KGROUP" >/dev/null 2>&1 || return 0
  fi
  return 1
}
set_owner() {  # set_owner FILE: chown (the link itself, were it one), or (pre-activation) leave it to the uploader
  err=$(chown -h -- "$KUSER:$KGROUP" "$1" 2>&1) && return 0
  if [ "$REQUIRE_OWNER" != 1 ] && owner_missing; then
    emit owner_unset "$KUSER:$KGROUP does not exist yet on this host, so $P stays owned by $ME; the next run sets it"
    return 0
  fi
  fail "cannot give the key to $KUSER:$KGROUP: $err"
}
facts_of() {  # facts_of PATH: PERM, DUID, DGID of PATH itself (a link is not followed)
  PERM='' DUID='' DGID=''
  line=$(ls -ldn -- "$1" 2>/dev/null) || return 1
  read -r PERM _ DUID DGID _ <<EOF
$line
EOF
  [ -n "$DGID" ]
}
# writers PATH OWNERS [sticky]: WHO = who, besides root and the uids OWNERS,
# can write PATH (empty: nobody). A sticky folder others may write is fine
# for a folder above DIR ("sticky"): none of them can rename or remove an
# entry not theirs, and each entry on the way is checked to be root's or
# ours (STICKY: such folders seen).
writers() {
  WHO=
  facts_of "$1" || { WHO='(its owner and mode cannot be read)'; return; }
  case " 0 $2 " in *" $DUID "*) ;; *) WHO="its owner" ;; esac
  case $PERM in ?????w*) [ "$DGID" = 0 ] || WHO="${WHO:+$WHO, }its group" ;; esac
  case $PERM in
    ????????w[tT]*)
      if [ "${3:-}" = sticky ]; then STICKY=$STICKY$1$NL
      else WHO="${WHO:+$WHO, }every account"; fi ;;
    ????????w*) WHO="${WHO:+$WHO, }every account" ;;
  esac
  case $PERM in ??????????+*) WHO="${WHO:+$WHO, }the accounts its ACL names" ;; esac
}
refuse() {  # refuse FOLDER WHAT: fail, FOLDER can be written by WHO
  names=$(ls -ld -- "$1" 2>/dev/null)
  read -r _ _ owner group _ <<EOF
$names
EOF
  case $WHO in "its owner"*) WHO="its owner ${owner:-?}${WHO#its owner}" ;; esac
  case $WHO in *"its group"*) WHO="${WHO%%its group*}the group ${group:-?}${WHO#*its group}" ;; esac
  fail "refusing to write $P: $1 ($2) can be written by $WHO; the key's folder may be written only by root and the key's owner, and the folders above it only by root"
}
SEEN=$NL STICKY=$NL
# check_above PATH: every folder PATH's name is looked up in (each one's
# physical path and the folders above that) is written by root and this
# account only; every entry on the way is root's or ours where others may
# write its folder (sticky).
check_above() {
  rest=${1#/} here=/
  while :; do
    phys=$(cd -P -- "$here" 2>/dev/null && pwd -P) || fail "cannot enter $here (on the way to $DIR)"
    d=$phys
    while :; do
      case $SEEN in *"$NL$d$NL"*) ;; *)
        writers "$d" "$MY_UID" sticky
        [ -z "$WHO" ] || refuse "$d" "a folder above $DIR"
        SEEN=$SEEN$d$NL ;;
      esac
      [ "$d" = / ] && break
      d=${d%/*}; [ -n "$d" ] || d=/
    done
    comp=${rest%%/*}
    case $here in */) here=$here$comp ;; *) here=$here/$comp ;; esac
    if case $STICKY in *"$NL$phys$NL"*) true ;; *) false ;; esac && facts_of "$here"; then
      case " 0 $MY_UID " in *" $DUID "*) ;; *)
        WHO="its owner (uid $DUID), in a folder every account can write"
        refuse "$here" "on the way to $DIR" ;;
      esac
    fi
    case $rest in */*) rest=${rest#*/} ;; *) break ;; esac
  done
}

if [ ! -d "$DIR" ]; then
  [ -e "$DIR" ] && fail "$DIR exists and is not a folder"
  # the folders made here go into one only root and this account can write
  top=$DIR
  while [ ! -d "$top" ]; do top=${top%/*}; [ -n "$top" ] || top=/; done
  case $top in /) check_above /new ;; *) check_above "$top/new" ;; esac
  # every folder made here (parents too: the umask) lets others reach their
  # own key by name but list nothing: 0711, whichever key happened to come first
  # shellcheck disable=SC2174
  err=$( (umask 066 && mkdir -p -m 0711 -- "$DIR") 2>&1) || fail "cannot create the folder $DIR: $err"
  emit dir_created "$DIR"
fi
check_above "$DIR"
cd -P -- "$DIR" 2>/dev/null || fail "cannot enter $DIR"
DIR_PHYS=$(pwd -P)
writers "$DIR_PHYS" "$MY_UID${KUID:+ $KUID}"
[ -z "$WHO" ] || refuse "$DIR_PHYS" "the key's folder"
# from here on, DIR is this folder (the working directory), whatever its name becomes

# shellcheck disable=SC2034  # NONCE: read by salted (keys-lib.sh)
IFS=' ' read -r NONCE EXPECT || fail "no content came on stdin"
check_nonce
n=0
until err=$(mkdir -- ".nixdeploy-put.$$.$n" 2>&1); do
  # only a name already there (planted, or left by a killed run) is tried again
  if [ "$n" -ge 20 ] || { [ ! -e ".nixdeploy-put.$$.$n" ] && [ ! -L ".nixdeploy-put.$$.$n" ]; }; then
    fail "cannot make a private folder in $DIR: $err"
  fi
  n=$((n + 1))
done
PRIV=.nixdeploy-put.$$.$n
trap 'rmdir -- "$PRIV" 2>/dev/null' EXIT
cd -P -- "./$PRIV" 2>/dev/null || fail "cannot enter the private folder $DIR/$PRIV"
trap 'rm -f -- "$NAME"; cd -P .. 2>/dev/null && rmdir -- "$PRIV" 2>/dev/null' EXIT
# the folder made above, not one put in its place: this account's and 0700
facts_of . || fail "cannot read the private folder $DIR/$PRIV"
if [ "$(pwd -P)" != "${DIR_PHYS%/}/$PRIV" ] || [ "$DUID" != "$MY_UID" ]; then
  fail "the private folder $DIR/$PRIV was replaced while the key was written; nothing was replaced"
fi
case $PERM in drwx------*) ;; *) fail "the private folder $DIR/$PRIV is not private ($PERM); nothing was replaced" ;; esac
# created exclusively (noclobber) in the private folder, 0600 by the umask
err=$( (set -C && cat >"$NAME") 2>&1) || fail "writing the key in $DIR/$PRIV failed: $err"
# (what arrived is not shown: a digest of it with its nonce would let a
# reader of the message guess a short key)
got=$(salted <"$NAME")
[ "$got" = "$EXPECT" ] || fail "the content of $P arrived damaged, nothing was replaced"
set_owner "$NAME"
err=$(chmod -- "$MODE" "$NAME" 2>&1) || fail "cannot set mode $MODE on the key: $err"
if [ -L "../$NAME" ] || { [ -e "../$NAME" ] && [ ! -f "../$NAME" ]; }; then fail "$P is not a regular file (any more)"; fi
# rename into the folder the private one is in (DIR): onto a link it replaces
# the link, onto a folder it fails
err=$(mv -f -- "$NAME" .. 2>&1) || fail "cannot rename the key to $P: $err"
trap - EXIT
cd -P .. && rmdir -- "$PRIV" 2>/dev/null
if ! listed "$P"; then
  if ! { (umask 022 && mkdir -p -- "$MB") && printf '%s\n' "$P" >>"$MANIFEST"; }; then
    emit manifest_failed "cannot record $P in $MANIFEST"
  fi
fi
emit 'done' 1
