# shellcheck shell=sh
# shellcheck disable=SC2154  # out, kind, version: the derivation's environment
# builder of what a NixOS system boots: a kernel package (bzImage, initrd and
# modules, as the toplevel's kernel, initrd and kernel-modules links point
# into) or a systemd package; tiny, but a new version is a new store path
mkdir -p "$out"
case "$kind" in
  linux)
    echo "lab kernel $version" >"$out/bzImage"
    echo "lab initrd for $version" >"$out/initrd"
    mkdir -p "$out/modules/lib/modules/$version"
    echo "lab modules of $version" >"$out/modules/lib/modules/$version/modules.dep"
    ;;
  systemd)
    mkdir -p "$out/bin"
    echo "$version" >"$out/version"
    ;;
esac
