# shellcheck shell=sh
# shellcheck disable=SC2034  # HASH, MANIFEST: used by the keys script after this
# What every nix_keys script shares (plugin_utils/keys/_keys_target.py puts it after
# lib.sh): the sha256 tool, the salted digest, file facts, the manifest.
# Values: STATE_DIR (the manifest's folder when not the default), KEEP (the
# wanted key paths, one a line). Key content only ever arrives on stdin.
umask 077
[ -n "${HOME:-}" ] || HOME=$(cd ~ 2>/dev/null && pwd)
if command -v sha256sum >/dev/null 2>&1; then HASH=sha256sum
elif command -v shasum >/dev/null 2>&1; then HASH='shasum -a 256'
elif command -v openssl >/dev/null 2>&1; then HASH='openssl dgst -sha256'
elif command -v busybox >/dev/null 2>&1; then HASH='busybox sha256sum'
else fail "no sha256 tool on the target (sha256sum, shasum, openssl or busybox)"; fi
# A key's digest is never its plain sha256: that goes into results and logs,
# and a short secret (a password, a PIN) is found from it offline. It is
# sha256(NONCE || content), NONCE 64 hex digits (256 bits) the controller
# makes afresh for each call and sends on stdin only (not in the program,
# which ps and -vvv show): a digest is worth nothing without it, and it is
# never the same twice. (An HMAC needs byte operations on its key that sh
# lacks, and openssl may be missing. A prefix of fixed length made afresh
# and published nowhere salts the digest as well here: digests are only
# compared, so sha256's length extension gains nobody anything.)
check_nonce() {  # check_nonce: NONCE is 64 lowercase hex digits, or fail
  case $NONCE in *[!0-9a-f]*|'') fail "no valid nonce came on stdin" ;; esac
  [ "${#NONCE}" -eq 64 ] || fail "no valid nonce came on stdin"
}
# salted: the hex digest of NONCE then stdin ("HEX  -", "(stdin)= HEX" or
# "SHA2-256(stdin)= HEX"); printf is a builtin, so NONCE is in no argv
salted() { { printf '%s' "$NONCE"; cat; } | $HASH 2>/dev/null | sed 's/^.*= *//; s/ .*$//'; }
# "MODE OWNER GROUP UID GID" from ls -l (POSIX: same everywhere, unlike stat)
# (facts PATH L: of the file PATH leads to, /dev/fd/3 for an open file)
facts() {
  { ls -ld"${2:-}" -- "$1" && ls -ldn"${2:-}" -- "$1"; } 2>/dev/null | awk '
    NR == 1 { p = $1; o = $3; g = $4 }
    NR == 2 { u = $3; n = $4 }
    END {
      if (p == "") exit 1
      m = 0; s = 0
      for (i = 2; i <= 10; i++) {
        c = substr(p, i, 1)
        m = m * 2 + (c != "-" && c != "S" && c != "T")
        if (c == "s" || c == "S") s += (i == 4 ? 4 : 2)
        if (c == "t" || c == "T") s += 1
      }
      printf "%o%03o %s %s %s %s\n", s, m, o, g, u, n
    }'
}
if [ -n "$STATE_DIR" ]; then MB=$STATE_DIR
elif [ "$(id -u)" = 0 ]; then MB=/nix/var/nixdeploy
else MB=${XDG_STATE_HOME:-$HOME/.local/state}/nixdeploy; fi
MANIFEST=$MB/keys
listed() { [ -f "$MANIFEST" ] && grep -Fxq -- "$1" "$MANIFEST"; }
wanted() { printf '%s\n' "$KEEP" | grep -Fxq -- "$1"; }
