# builder of a closure padding path: $size incompressible bytes
mkdir -p "$out"
head -c "$size" /dev/urandom >"$out/data"
echo "$seed" >"$out/seed"
