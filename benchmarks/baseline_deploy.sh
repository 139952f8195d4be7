#!/bin/sh
# The baseline of benchmark 1: a plain shell deploy running the same Nix
# commands as the deploy role, with the same parallelism and no Ansible.
#
#   baseline_deploy.sh FLAKE HOSTS PARALLEL SSH_KEY KNOWN_HOSTS
#
# HOSTS is a file of lines "name address ssh-user attr" (NixOS hosts). Steps:
#   1. one `nix eval` for every host's drvPath and outPath
#   2. one `nix build` of every derivation
#   3. `nix copy --to ssh-ng://` to PARALLEL hosts at a time (only missing paths)
#   4. one ssh per host that activates unless the system is already active,
#      then a second, new ssh login per host (what a magic-rollback
#      confirmation costs; the script does not roll back)
# Host key checking stays on. Exits non-zero when any step fails.
set -eu
flake=$1 hosts=$2 parallel=$3 key=$4 known=$5
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

nx() { nix --extra-experimental-features 'nix-command flakes' --option substituters '' "$@"; }
sshopts="-i $key -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile=$known -o StrictHostKeyChecking=yes"

# 1. evaluate: the attrs are dotted paths of plain names (h1, h2 ...)
attrs=$(awk '{ printf "\"%s\" ", $4 }' "$hosts")
nx eval --raw "$flake#\"\"" --apply "f: builtins.concatStringsSep \"\\n\" (map (a:
  let v = builtins.foldl' (s: n: s.\${n}) f
            (builtins.filter builtins.isString (builtins.split \"[.]\" a));
  in v.drvPath + \" \" + v.outPath) [ $attrs ])" >"$work/eval"
echo >>"$work/eval"
paste -d ' ' "$hosts" "$work/eval" >"$work/plan"   # name address user attr drv out

# 2. build everything at once
# shellcheck disable=SC2046
nx build --no-link $(awk '{ print $5 }' "$work/plan")

# 3. copy, PARALLEL at a time; 4. activate, then confirm over a new login
cat >"$work/copy" <<'EOF'
NIX_SSHOPTS=$SSHOPTS nix --extra-experimental-features nix-command --option substituters '' \
  copy --no-check-sigs --to "ssh-ng://$3@$2" "$6"
EOF
cat >"$work/activate" <<'EOF'
# shellcheck disable=SC2086
ssh $SSHOPTS -l "$3" "$2" "p=/nix/var/nix/profiles/system
  [ \"\$(readlink -f \$p)\" = '$6' ] && exit 0
  nix-env -p \$p --set '$6' && '$6/bin/switch-to-configuration' switch" >/dev/null
EOF
cat >"$work/confirm" <<'EOF'
# shellcheck disable=SC2086
ssh $SSHOPTS -l "$3" "$2" true
EOF
export SSHOPTS="$sshopts"
for step in copy activate confirm; do
  xargs -P "$parallel" -L 1 sh "$work/$step" <"$work/plan"
done
