# shellcheck shell=sh
# shellcheck disable=SC2034  # NIX_ENV, D, INVOKER: read by the script after this
# The start of every nix_activate program but the runner: environment, root,
# nix-env, profile and state folder. Values: PLATFORM, PROFILE, NIX_DIR,
# ROOT_REFUSAL, PROFILE_CANDIDATES, PROFILE_PROBE, ROOT_STATE.
umask 022
[ -n "${HOME:-}" ] || HOME=$(cd ~ 2>/dev/null && pwd)
ids
USER=${USER:-$ME}
export HOME USER
# who logged in, before become (sudo): nix-darwin's activate-user runs as them
INVOKER=${SUDO_USER:-$ME}
# ROOT_REFUSAL: the platform table's words when its activation needs root,
# with @ME@ where the user it runs as goes
if [ -n "$ROOT_REFUSAL" ] && [ "$MY_UID" != 0 ]; then
  fail "${ROOT_REFUSAL%%@ME@*}$ME${ROOT_REFUSAL#*@ME@}"
fi
find_nix nix-env || fail "nix-env not found on PATH or in the usual places; set remote_nix_dir"
NIX_ENV=$NIX_TOOL
# what the platforms' own programs run (home-manager's activate takes
# nix-env from PATH): the folder nix was found in comes first
case ":$PATH:" in *":${NIX_ENV%/*}:"*) ;; *) PATH=${NIX_ENV%/*}:$PATH; export PATH ;; esac
[ -n "$PROFILE" ] || resolve_profile
case $PROFILE in /*) ;; *) fail "profile must be an absolute path, got '$PROFILE'" ;; esac
generations_of
state_base "$ROOT_STATE"
state_dir
# made once (mkdir is a process)
[ -d "$D/runs" ] || err=$(mkdir -p "$D/runs" 2>&1) || fail "cannot create the state folder $D: $err"
