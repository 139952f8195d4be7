# shellcheck shell=sh
# shellcheck disable=SC2154  # out, bb: the derivation's environment
# builder of the busybox package: the static binary and one link per applet
$bb mkdir -p "$out/bin"
$bb cp "$bb" "$out/bin/busybox"
for applet in $("$bb" --list); do
  [ "$applet" = busybox ] || $bb ln -s busybox "$out/bin/$applet"
done
