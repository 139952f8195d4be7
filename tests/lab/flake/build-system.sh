# shellcheck shell=sh
# shellcheck disable=SC2154  # out and the knobs: the derivation's environment
# builder of a fake system, shaped like the platform's real output
mkdir -p "$out/bin" "$out/lib"
if [ -n "$brokenBuild" ]; then
  echo "lab: building $configName failed on purpose (broken_build)" >&2
  echo "error: builder for $configName: this system does not build" >&2
  exit 1
fi
cp "$activateLib" "$out/lib/lab-activate.sh"
printf '%s\n' "$onActivate" >"$out/lib/on-activate.sh"
cat >"$out/lab-info" <<INFO
platform=$platform
name=$configName
version=$version
behaviour=$behaviour
eval=$evalStamp
INFO
# keep the padding paths in the closure
for extra in $extras; do echo "$extra"; done >"$out/extras"

entry() {  # entry FILE NAME: a script that runs the fake activation
  cat >"$1" <<SCRIPT
#!$busybox/bin/sh
OUT=$out
PLATFORM=$platform
NAME=$configName
VERSION=$version
BEHAVIOUR=$behaviour
SLOW_SECONDS=$slowSeconds
HOME_FILE=$homeFile
PATH=$busybox/bin:\$PATH
. $out/lib/lab-activate.sh
lab_main $2 "\$@"
SCRIPT
  chmod +x "$1"
}

case "$platform" in
  nixos)
    entry "$out/bin/switch-to-configuration" switch-to-configuration
    # stage 2's activation, run by the lab's boot (tests/lab/host_init.sh)
    entry "$out/activate" activate
    echo "$version (lab)" >"$out/nixos-version"
    # what reboot detection compares (nixos-needsreboot, comin)
    ln -s "$kernel/bzImage" "$out/kernel"
    ln -s "$kernel/initrd" "$out/initrd"
    ln -s "$kernel/modules" "$out/kernel-modules"
    ln -s "$systemd" "$out/systemd"
    # as system.switch.inhibitors writes it; lab-inhibitors is the same set
    # as "name<TAB>value" lines for the fake's busybox-only comparison
    printf '%s' "$inhibitorsJson" >"$out/switch-inhibitors"
    printf '%s\n' "$inhibitorLines" >"$out/lib/lab-inhibitors"
    for unit in $failedUnits; do echo "$unit"; done >"$out/lib/lab-failed-units"
    if [ -n "$httpStatus" ]; then
      mkdir -p "$out/www/cgi-bin"
      cat >"$out/www/cgi-bin/health" <<CGI
#!$busybox/bin/sh
printf 'Status: %s lab\\r\\nContent-Type: text/plain\\r\\n\\r\\n' "$httpStatus"
echo "lab $configName $version answers $httpStatus"
CGI
      chmod +x "$out/www/cgi-bin/health"
      echo "$httpPort" >"$out/lib/lab-http-port"
    fi
    ;;
  darwin)
    entry "$out/activate" activate
    echo "$version (lab)" >"$out/darwin-version"
    case "$activateUser" in
      # built before 2025: darwin-rebuild runs it as the user before activate
      legacy) entry "$out/activate-user" activate-user ;;
      # nix-darwin 2025+ keeps a stub that must not run
      deprecated)
        cat >"$out/activate-user" <<SCRIPT
#!$busybox/bin/sh
# nix-darwin: deprecated
echo "lab: $configName's activate-user is deprecated and must not run" >&2
exit 1
SCRIPT
        chmod +x "$out/activate-user"
        ;;
    esac
    ;;
  nix-on-droid)
    entry "$out/activate" activate
    ;;
  home-manager)
    entry "$out/activate" activate
    echo 1 >"$out/gen-version"
    ;;
esac
