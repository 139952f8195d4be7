#!/bin/sh
# The baseline of the status benchmark: what a fleet owner writes by hand to
# ask "is every host on what the flake gives?", with the same parallelism and
# no Ansible.
#
#   baseline_status.sh FLAKE HOSTS PARALLEL SSH_KEY KNOWN_HOSTS
#
# HOSTS is a file of lines "name address ssh-user attr" (NixOS hosts). Steps:
#   1. one `nix eval` for every host's outPath (nothing built)
#   2. one ssh login per host, PARALLEL at a time, running
#      `readlink /run/current-system`
# Prints "name in_sync|pending|unreachable" per host. Host key checking
# stays on. Exits non-zero when the evaluation fails.
set -eu
flake=$1 hosts=$2 parallel=$3 key=$4 known=$5
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

nx() { nix --extra-experimental-features 'nix-command flakes' --option substituters '' "$@"; }

# 1. evaluate: the attrs are dotted paths of plain names (h1, h2 ...)
attrs=$(awk '{ printf "\"%s\" ", $4 }' "$hosts")
nx eval --raw "$flake#\"\"" --apply "f: builtins.concatStringsSep \"\\n\" (map (a:
  (builtins.foldl' (s: n: s.\${n}) f
    (builtins.filter builtins.isString (builtins.split \"[.]\" a))).outPath) [ $attrs ])" >"$work/eval"
echo >>"$work/eval"
paste -d ' ' "$hosts" "$work/eval" >"$work/plan"   # name address user attr out

# 2. read what each host runs, PARALLEL at a time
cat >"$work/read" <<'EOS'
# shellcheck disable=SC2086
now=$(ssh $SSHOPTS -l "$3" "$2" readlink /run/current-system 2>/dev/null) || { echo "$1 unreachable"; exit 0; }
if [ "$now" = "$5" ]; then echo "$1 in_sync"; else echo "$1 pending"; fi
EOS
export SSHOPTS="-i $key -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile=$known -o StrictHostKeyChecking=yes"
xargs -P "$parallel" -L 1 sh "$work/read" <"$work/plan"
