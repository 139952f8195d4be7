# shellcheck shell=sh
# The builder probe (plugin_utils/builds/_builders.py): run by `sh -s` over a new
# ssh login to a remote builder before a build uses it. Says where nix is,
# what the builder builds (system, extra-platforms and system-features of
# its Nix configuration) and the free space of its store. It takes no value
# from the controller but NIX_DIRS (the known nix locations). The program
# comes on stdin: every command here reads /dev/null instead.
USER=${USER:-$(id -un </dev/null)}
export USER
if ! find_nix nix; then
  emit no_nix 1
  exit 3
fi
emit nix_dir "${NIX_TOOL%/*}"
# an ssh-ng store runs `nix-daemon --stdio` from the login's PATH unless told
if command -v nix-daemon >/dev/null 2>&1; then emit daemon_on_path 1; else emit daemon_on_path 0; fi
# `nix config show` from Nix 2.20 (where show-config is deprecated), `nix show-config` before
conf=$("$NIX_TOOL" --extra-experimental-features nix-command config show </dev/null 2>/dev/null) ||
  conf=$("$NIX_TOOL" --extra-experimental-features nix-command show-config </dev/null 2>/dev/null) ||
  fail "neither nix config show nor nix show-config answered"
setting() { printf '%s\n' "$conf" | sed -n "s/^$1 = //p"; }
emit system "$(setting system)"
emit extra_platforms "$(setting extra-platforms)"
emit system_features "$(setting system-features)"
# POSIX df: the last line is the store's file system, in KiB
emit store_df "$(df -Pk /nix/store </dev/null 2>/dev/null | sed -n '$p')"
emit complete 1
