# shellcheck shell=sh
# shellcheck disable=SC2034,SC2153  # NIX_TOOL: read by the scripts after this; NIX_DIRS, NIX_DIR, RESULT_MARK: set before it
# The library every target script starts with (plugin_utils/host/_script.py puts
# it after the quoted values and before the script). POSIX sh only.
#
# Output protocol, read by _script.parse: one value per line,
# "@@$RESULT_MARK key=value", where RESULT_MARK is this program's own marker
# (random, made by the controller for this program; a plain variable, never
# exported, so no child gets it in its environment). Everything after the
# line "@@$RESULT_MARK-log" (log_section) is log text: nothing after it is
# read as a value, so a script emits all its values BEFORE it prints any text
# it carries (a check's output, an activation's log, a command's message),
# and the commands it runs that print write to a file, a variable or the log,
# never to its stdout before log_section.

# Every process costs a target a few ms (fork, exec), and a deploy's scripts
# emit and look often: the helpers below start none where the shell can do
# the work itself.
NL='
'
one_line() {  # one_line TEXT: ONE_LINE = TEXT with its newlines as spaces
  case $1 in
    *"$NL"*) ONE_LINE=$(printf '%s' "$1" | tr '\n' ' ') ;;
    *) ONE_LINE=$1 ;;
  esac
}
emit() {  # emit KEY VALUE...: one value line (newlines folded to spaces)
  k=$1; shift
  one_line "$*"
  printf '@@%s %s=%s\n' "$RESULT_MARK" "$k" "$ONE_LINE"
}
# A clock for waits and log lines. A loop looking five times a second would
# start a date process a look: NOW (whole seconds, for waits) comes from
# /proc/uptime where there is one, else from date; after clock_init (one
# date), stamp sets EPOCH and HMS (the local time) from it.
clock() {
  if [ -r /proc/uptime ] && read -r NOW _ </proc/uptime 2>/dev/null; then NOW=${NOW%%.*}
  else NOW=$(date +%s); fi
}
clock_init() {
  read -r E0 H0 M0 S0 <<EOF
$(date '+%s %H %M %S')
EOF
  clock
  CLOCK0=$((E0 - NOW)) DAY0=$((${H0#0} * 3600 + ${M0#0} * 60 + ${S0#0} - E0 % 86400))
  stamp
}
stamp() {  # stamp: EPOCH and HMS of now (after clock_init)
  clock; EPOCH=$((CLOCK0 + NOW))
  sec=$(((EPOCH + DAY0) % 86400)); [ "$sec" -ge 0 ] || sec=$((sec + 86400))
  hh=$((sec / 3600)) mm=$((sec / 60 % 60)) ss=$((sec % 60))
  [ "$hh" -ge 10 ] || hh=0$hh; [ "$mm" -ge 10 ] || mm=0$mm; [ "$ss" -ge 10 ] || ss=0$ss
  HMS=$hh:$mm:$ss
}
ids() {  # ids: MY_UID, ME (user name) and MY_GROUPS (names, comma-separated) from one id
  # POSIX id's own format: uid=0(root) gid=0(root) groups=0(root),1(bin)
  ID=$(id 2>/dev/null)
  MY_UID=${ID#uid=}; MY_UID=${MY_UID%%[!0-9]*}
  case $ID in *"uid=$MY_UID("*) ME=${ID#*uid="$MY_UID"(}; ME=${ME%%)*} ;; *) ME=$(id -un) ;; esac
  # busybox's id leaves out groups= when there is only the primary group
  case $ID in
    *" gid="*"("*) MY_GROUPS=${ID#* gid=*(}; MY_GROUPS=${MY_GROUPS%%)*} ;;
    *" gid="*) MY_GROUPS=${ID#* gid=}; MY_GROUPS=${MY_GROUPS%% *} ;;
    *) MY_GROUPS= ;;
  esac
  case $ID in
    *groups=*)
      MY_GROUPS=
      rest=${ID#*groups=}
      while [ -n "$rest" ]; do
        entry=${rest%%,*}
        case $entry in *"("*")"*) name=${entry#*(}; name=${name%%)*} ;; *) name=$entry ;; esac
        MY_GROUPS=$MY_GROUPS${MY_GROUPS:+,}$name
        case $rest in *,*) rest=${rest#*,} ;; *) rest= ;; esac
      done ;;
  esac
}
# the end of the values: what follows is text the program carries, never a value
log_section() { printf '@@%s-log\n' "$RESULT_MARK"; }
# state_base ROOT_STATE: BASE = this user's nixdeploy state folder on the
# target: ROOT_STATE (/nix/var/nixdeploy) for root, else under XDG_STATE_HOME
state_base() {
  if [ "${MY_UID:-$(id -u)}" = 0 ]; then BASE=$1
  else BASE=${XDG_STATE_HOME:-$HOME/.local/state}/nixdeploy; fi
}
# swap_link TARGET LINK: LINK -> TARGET in one rename (a GC root is never
# missing in between: Nix drops an indirect root whose link it does not
# find). mv renames over LINK itself, not into the folder it points at, with
# -T (GNU, busybox, toybox) or -h (BSD, macOS). SWAP_ERR: why it failed.
swap_link() {
  swap_tmp=$2.new.$$ SWAP_ERR=
  # one left by a killed program of the same pid only (rm is a process)
  if [ -e "$swap_tmp" ] || [ -L "$swap_tmp" ]; then rm -f "$swap_tmp"; fi
  SWAP_ERR=$(ln -s "$1" "$swap_tmp" 2>&1) || { rm -f "$swap_tmp"; return 1; }
  mv -fT "$swap_tmp" "$2" 2>/dev/null || SWAP_ERR=$(mv -fh "$swap_tmp" "$2" 2>&1) ||
    { rm -f "$swap_tmp"; return 1; }
}
# df_line PATH: DF = the POSIX df line (KiB) of the file system holding PATH
df_line() {
  DF=$(df -Pk "$1" </dev/null 2>/dev/null) || DF=
  DF=${DF##*"$NL"}
}
fail() { emit error "$*"; exit 3; }
# nap: one wait of a loop that looks for something, after nap_start. What a
# loop waits for mostly comes within a second (a runner's first status, an
# activation's end, a claimed canary, a run's next state): the first 20 naps
# take 0.05 s, so it is seen within 50 ms, the later ones 0.2 s, so a long
# wait starts five processes a second. NAPPED: the 0.05 s units napped since
# nap_start, which bounds a loop's wait.
nap_start() { NAPPED=0; }
nap() {
  if [ "${NAPPED:-0}" -lt 20 ]; then
    NAPPED=$((${NAPPED:-0} + 1)); sleep 0.05 2>/dev/null || { sleep 1; NAPPED=$((NAPPED + 19)); }
  else
    NAPPED=$((NAPPED + 4)); sleep 0.2 2>/dev/null || { sleep 1; NAPPED=$((NAPPED + 16)); }
  fi
}

# Waits for another process's news (the runner's next state, a claimed
# canary) need not look five times a second: the waiter leaves its pid where
# the other process looks (a run's waiter file, its pid file) and traps
# SIGURG, which that one sends with the news (wake). `wait` for a background
# sleep returns at once when a trapped signal comes (POSIX), so a look
# follows the news at once; the sleep goes on as the timer of the looks
# after it: one process a second of waiting, not one a nap. A wake that comes
# in the instant between doze's last look at WOKEN and the `wait` is seen by
# the look at the second's end.
# SIGURG is ignored by default: a pid that is no longer a waiter's (it
# ended, its pid went to another process) is not harmed by a late wake.
doze_start() {
  NAPPED=0 WOKEN=0 TIMER=${TIMER:-}
  # whole seconds, or the default (the environment's value is not trusted to be one)
  case ${NIXDEPLOY_DOZE:-} in [1-9]|[1-9][0-9]|[1-9][0-9][0-9]) DOZE=$NIXDEPLOY_DOZE ;; *) DOZE=1 ;; esac
  trap 'WOKEN=1' URG
}
# DOZE: a doze's longest wait in whole seconds: 1, or NIXDEPLOY_DOZE (tests make it longer)
doze() {  # doze: until a wake, at most DOZE s; NAPPED counts 20 a second, 1 a wake
  if [ "$WOKEN" != 1 ]; then
    # the timer must not hold the session's output open (ssh waits for it;
    # an asynchronous command's input is /dev/null already)
    [ -n "$TIMER" ] || { sleep "$DOZE" >/dev/null 2>&1 & TIMER=$!; }
    # a wake while the timer started (a fork: long on a busy target) ran its
    # trap already, and `wait` would not end at it: look at once instead
    if [ "$WOKEN" = 1 ]; then doze_rc=129
    else wait "$TIMER" 2>/dev/null; doze_rc=$?; fi
    # a wake ends the wait with a status over 128 while the sleep still runs;
    # any other end is the sleep's own (or it was waited for already)
    [ "$WOKEN" = 1 ] && [ "$doze_rc" -gt 128 ] || TIMER=
    [ "$WOKEN" = 1 ] || { NAPPED=$((NAPPED + DOZE * 20)); return 0; }
  fi
  WOKEN=0; NAPPED=$((NAPPED + 1))
}
# doze_end: no more wakes. A timer still running is left to end by itself
# (within DOZE s; it holds no output open): the shell may have reaped it
# already, and a pid it reaped may be another process's by now
doze_end() { trap - URG; }
wake() {  # wake PIDFILE: SIGURG to the waiter whose pid PIDFILE holds (if any)
  waiter=
  read -r waiter 2>/dev/null <"$1" || :
  # a pid, never 0 or -1 (kill's process group, every process)
  case $waiter in ''|0*|*[!0-9]*) return 0 ;; esac
  kill -s URG "$waiter" 2>/dev/null || :
}

# find_nix TOOL: sets NIX_TOOL to the path of TOOL (nix-env, nix-store, nix)
# from NIX_DIR (remote_nix_dir) if given, else PATH, else the known
# locations NIX_DIRS (one list, from _platforms.KNOWN_NIX_DIRS; words with
# $HOME, $USER and XDG_STATE_HOME expand here). Returns 1 when not found.
find_nix() {
  NIX_TOOL=
  if [ -n "${NIX_DIR:-}" ]; then
    [ -x "$NIX_DIR/$1" ] && NIX_TOOL=$NIX_DIR/$1 && return 0
    return 1
  fi
  on_path "$1" && NIX_TOOL=$FOUND && return 0
  NIX_TOOL=
  for dir in $NIX_DIRS; do
    # a constant of the platform table, never task data: expand its $HOME etc.
    eval "dir=\"$dir\""
    [ -x "$dir/$1" ] && NIX_TOOL=$dir/$1 && return 0
  done
  return 1
}
# on_path NAME: FOUND = the file `command -v NAME` names (the first
# executable regular file NAME in a PATH folder; an empty entry is the
# current folder), read by the shell: `$(command -v)` is a process
on_path() {
  FOUND=
  if [ -z "${PATH:-}" ]; then
    FOUND=$(command -v "$1" 2>/dev/null) && [ -x "$FOUND" ] && return 0
    FOUND=; return 1
  fi
  path_rest=$PATH:
  while [ -n "$path_rest" ]; do
    path_dir=${path_rest%%:*} path_rest=${path_rest#*:}
    [ -f "${path_dir:-.}/$1" ] && [ -x "${path_dir:-.}/$1" ] && FOUND=${path_dir:-.}/$1 && return 0
  done
  return 1
}
