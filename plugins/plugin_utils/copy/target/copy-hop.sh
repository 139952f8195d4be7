# shellcheck shell=sh
# One cascade hop, run ON a sender (plugin_utils/copy/_copy.py hop_script):
# nix copy --to URI (the receiver's ssh-ng store) STORE_PATH. The receiver's
# host key is checked against KNOWN_HOSTS ("HOP_ALIAS type base64" lines the
# controller took from its own known_hosts) under HOP_ALIAS, in a private
# temp folder removed on exit; login uses the agent the controller forwarded
# for this hop only. Values: NIX_DIR, KNOWN_HOSTS, HOP_ALIAS, URI,
# STORE_PATH, PORT (may be empty), NO_CHECK_SIGS (1/0); SSH_DIR_NEW and
# AGENT_DIR_NEW (1/0, may be unset): the controller's probe found no ~/.ssh
# or no ~/.ssh/agent here before the hop. "$@": the copy's shared nix copy
# words (copy-flags.sh, rendered before this file).
# Exit codes: 96 no forwarded agent, 97 no temp folder, 98 no nix or ssh
# here (the sender cannot send); 255 never (it means the controller lost
# the sender).
set -u
# The forwarded agent's socket: OpenSSH 9.x sshd makes it in a /tmp/ssh-*
# folder of its own and removes both when the session ends. 10.1+ makes it
# in ~/.ssh/agent/ (creating ~/.ssh and that folder when missing) and removes
# only the socket. So on exit the hop removes the socket and the folders the
# probe did not see (rmdir: never one that holds anything else). sshd's own
# unlink of the socket afterwards finds nothing, which it ignores.
agent_sock=${SSH_AUTH_SOCK:-}
d=
leave_as_found() {
  if [ -n "$d" ]; then rm -rf "$d"; fi
  case $agent_sock in
    */.ssh/agent/*)
      [ "${AGENT_DIR_NEW:-0}" = 1 ] || return 0
      agent_dir=${agent_sock%/*}
      rm -f "$agent_sock"
      rmdir "$agent_dir" 2>/dev/null || return 0
      if [ "${SSH_DIR_NEW:-0}" = 1 ]; then rmdir "${agent_dir%/agent}" 2>/dev/null; fi
      ;;
  esac
  return 0
}
# early exits and signals too
trap leave_as_found EXIT
trap 'exit 1' HUP INT TERM
if ! find_nix nix || ! command -v ssh >/dev/null 2>&1; then
  echo "nixdeploy hop: no nix in $NIX_DIR or no ssh client on PATH" >&2
  exit 98
fi
if [ -z "${SSH_AUTH_SOCK:-}" ] || [ ! -S "$SSH_AUTH_SOCK" ]; then
  echo "nixdeploy hop: no forwarded ssh agent (sshd AllowAgentForwarding)" >&2
  exit 96
fi
umask 077
# A folder of a name nobody can know beforehand (mktemp -d: random, made
# 0700, never an existing one): a name like /tmp/nixdeploy-hop.<pid> could
# be made first by any account of the sender, as a folder or a link, and
# stop the hop or have it write where that account chose.
tmp=${TMPDIR:-/tmp}
# $d goes into NIX_SSHOPTS, which Nix splits on whitespace
case $tmp in /*) ;; *) tmp=/tmp ;; esac
case $tmp in *[!A-Za-z0-9/._-]*) tmp=/tmp ;; esac
if ! d=$(mktemp -d "${tmp%/}/nixdeploy-hop.XXXXXXXXXX" 2>/dev/null) || [ ! -d "$d" ]; then
  d=
  echo "nixdeploy hop: cannot make a private temp folder in $tmp (mktemp -d)" >&2
  exit 97
fi
printf '%s\n' "$KNOWN_HOSTS" >"$d/known_hosts"
NIX_SSHOPTS="-o UserKnownHostsFile=$d/known_hosts -o GlobalKnownHostsFile=/dev/null"
NIX_SSHOPTS="$NIX_SSHOPTS -o StrictHostKeyChecking=yes -o HostKeyAlias=$HOP_ALIAS"
NIX_SSHOPTS="$NIX_SSHOPTS -o UpdateHostKeys=no -o ForwardAgent=no -o ControlMaster=no"
NIX_SSHOPTS="$NIX_SSHOPTS -o ControlPath=none -o BatchMode=yes -o ConnectTimeout=10"
NIX_SSHOPTS="$NIX_SSHOPTS -o ServerAliveInterval=5 -o ServerAliveCountMax=3"
if [ -n "$PORT" ]; then NIX_SSHOPTS="$NIX_SSHOPTS -p $PORT"; fi
export NIX_SSHOPTS
# the receiver's trust plan, after the words every copy shares
if [ "$NO_CHECK_SIGS" = 1 ]; then set -- "$@" --no-check-sigs; fi
"$NIX_TOOL" --extra-experimental-features nix-command copy --to "$URI" "$@" "$STORE_PATH"
rc=$?
# keep 255 (ssh's own exit) and our own codes for what they mean
case $rc in 255|96|97|98) rc=1 ;; esac
trap - EXIT
leave_as_found
exit "$rc"
