# shellcheck shell=sh
# The copy probe (module_utils/_copy.py probe_script): where nix is, who we
# are to the target's store (trust facts) and which of the store paths it
# lacks. Values: NIX_DIR (remote_nix_dir, may be empty), READ_STDIN (1: the
# paths come on stdin, one a line), STORE_PATHS (else: the paths, space-separated;
# checked to be store paths on the controller, so no spaces, no globs),
# PEER_FACTS (1: also what a cascade sender needs: ssh and its folders).
ids
USER=${USER:-$ME}
export USER
if ! find_nix nix-store; then
  emit no_nix 1
  exit 3
fi
nix_dir=${NIX_TOOL%/*}
emit nix_dir "$nix_dir"
emit uid "$MY_UID"
emit user "$ME"
emit groups "$MY_GROUPS"
# Nix opens the store directly (trusting its caller) when it may write
# /nix/var/nix and NIX_REMOTE does not point at a daemon.
if [ -w /nix/var/nix ] && [ -z "${NIX_REMOTE:-}" ]; then w=yes; else w=no; fi
emit store_writable "$w"
# root, or a user who opens the store itself, is trusted whatever
# trusted-users says (_copy.is_trusted): no nix process to ask then
if [ "$MY_UID" != 0 ] && [ "$w" = no ]; then
  emit trusted_users "$("$nix_dir/nix" --extra-experimental-features nix-command show-config 2>/dev/null | sed -n 's/^trusted-users = //p')"
fi
if [ "$PEER_FACTS" = 1 ]; then
  # a cascade sender runs nix copy, and nix runs ssh from PATH
  emit ssh "$(command -v ssh 2>/dev/null)"
  emit ssh_version "$(ssh -V 2>&1 </dev/null | sed -n 1p)"
  # sshd 10.1+ puts a forwarded agent in ~/.ssh/agent/, making the folders when
  # missing: a cascade hop removes again those this host did not have
  if [ -n "${HOME:-}" ] && [ ! -d "$HOME/.ssh" ]; then emit ssh_dir no; else emit ssh_dir yes; fi
  if [ -n "${HOME:-}" ] && [ ! -d "$HOME/.ssh/agent" ]; then emit ssh_agent_dir no; else emit ssh_agent_dir yes; fi
fi
if [ "$READ_STDIN" = 1 ]; then paths=$(cat); else paths=$STORE_PATHS; fi
# shellcheck disable=SC2086  # store paths: split on whitespace on purpose
invalid=$("$NIX_TOOL" --check-validity --print-invalid $paths) || exit 4
emit invalid "$invalid"
emit complete 1
