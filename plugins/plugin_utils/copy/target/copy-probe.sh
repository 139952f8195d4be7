# shellcheck shell=sh
# The copy probe (plugin_utils/copy/_copy.py probe_script): where nix is, who we
# are to the target's store (trust facts) and which of the store paths it
# lacks. Values: NIX_DIR (remote_nix_dir, may be empty), READ_STDIN (1: the
# paths come on stdin, one a line), STORE_PATHS (else: the paths, space-separated;
# checked to be store paths on the controller, so no spaces, no globs),
# PEER_FACTS (1: also what a cascade sender needs: ssh and its folders);
# ROOT_KEY, ROOT_PATH, ROOT_STATE: the GC root to plant (below; no key, none).
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
# the free space of the store's file system (the controller compares it with
# what the copy brings, before sending anything)
df_line /nix/store
emit store_df "$DF"
# The GC root of the copy: BASE/gcroots/ROOT_KEY -> ROOT_PATH, planted BEFORE
# the copy. Nix's collector skips a root whose path is not valid yet and
# protects it from the moment it is (while the copy runs, its temporary roots
# hold what has arrived), so no collection between copy and activation, or
# after a push-only run, finds it unrooted. One root per key (the inventory
# name, escaped), replaced by the next copy; the activation points it at
# /dev/null once the profile holds the system. The link is registered ONCE,
# the way Nix registers any root outside its gcroots folder (an indirect root
# in gcroots/auto, which works for root, for a daemon's untrusted users and on
# single-user stores alike): `nix-store -r --add-root` of a small anchor path
# (never building nor substituting anything); later copies only re-point it.
plant_root() {
  state_base "$ROOT_STATE"
  link=$BASE/gcroots/$ROOT_KEY
  # A registration stopped midway (the host rebooted, the probe killed)
  # leaves its anchor folder, named by its probe's pid: gone once that pid
  # is (a glob and builtins, no process, unless there is one to remove)
  for stale in "$BASE"/gcroots/.anchor.*; do
    [ -d "$stale" ] || continue
    owner=${stale##*/.anchor.}; owner=${owner%%.*}
    case $owner in ''|*[!0-9]*) ;; *) ! kill -0 "$owner" 2>/dev/null || continue ;; esac
    rm -rf "$stale"
  done
  if [ "$(readlink "$link" 2>/dev/null)" = "$ROOT_PATH" ]; then emit gc_root "$link"; return 0; fi
  [ -d "$BASE/gcroots" ] || err=$(mkdir -p "$BASE/gcroots" 2>&1) || { emit gc_root_error "$err"; return 0; }
  if [ ! -L "$link" ]; then
    anchor_dir=$(mktemp -d "$BASE/gcroots/.anchor.$$.XXXXXX" 2>&1) || { emit gc_root_error "$anchor_dir"; return 0; }
    anchor=
    if ! printf 'nixdeploy.fleet: the first target of a GC root\n' >"$anchor_dir/nixdeploy-gc-anchor"; then
      err="cannot write $anchor_dir"
    elif anchor=$("$NIX_TOOL" --add "$anchor_dir/nixdeploy-gc-anchor" 2>"$anchor_dir/err") &&
         "$NIX_TOOL" --realise "$anchor" --add-root "$link" >/dev/null 2>"$anchor_dir/err"; then
      err=
    else
      err=$(cat "$anchor_dir/err" 2>/dev/null)
    fi
    rm -rf "$anchor_dir"
    if [ -n "$err" ] || [ ! -L "$link" ]; then
      emit gc_root_error "registering $link with Nix: ${err:-nix-store --add-root made no link}"; return 0
    fi
  fi
  if swap_link "$ROOT_PATH" "$link"; then emit gc_root "$link"
  else emit gc_root_error "pointing $link at $ROOT_PATH: $SWAP_ERR"; fi
}
if [ -n "$ROOT_KEY" ]; then plant_root; fi
emit complete 1
