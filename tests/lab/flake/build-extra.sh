# shellcheck shell=sh
# shellcheck disable=SC2154  # out, size, seed: the derivation's environment
# builder of a closure padding path: $size incompressible bytes
mkdir -p "$out"
head -c "$size" /dev/urandom >"$out/data"
echo "$seed" >"$out/seed"
