#!/usr/bin/env bash
# Run `ansible-test sanity` on a copy of this collection placed where
# ansible-test needs it: <tmp>/ansible_collections/nixdeploy/fleet.
# No Docker: each test gets its own pinned virtualenv (--venv) built with the
# local Python, so results do not depend on what happens to be installed.
#
# Usage: tests/sanity/run.sh [extra ansible-test sanity args...]
# Env:   VENV (default .venv)  PYTHON_VERSION (default: the venv's X.Y)
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
venv=${VENV:-$repo/.venv}
case $venv in /*) ;; *) venv=$repo/$venv ;; esac
ansible_test=$venv/bin/ansible-test
[ -x "$ansible_test" ] || { echo "no $ansible_test; run 'make deps' first" >&2; exit 2; }
pyver=${PYTHON_VERSION:-$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/nixdeploy-sanity.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
dest=$tmp/ansible_collections/nixdeploy/fleet
mkdir -p "$dest"

# Tracked files plus untracked ones git does not ignore: what a commit would hold.
cd "$repo"
git ls-files -z --cached --others --exclude-standard \
    | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
    | tar --null -T - -cf - \
    | tar -xf - -C "$dest"

# ansible-test asks git which files belong to the collection; give the copy its
# own repository so a dirty or commit-less working tree still works.
cd "$dest"
git init -q
git add -A
git -c user.name=sanity -c user.email=sanity@localhost commit -q -m sanity --no-verify

# ansible-test bootstraps pip in its virtualenvs with a script it downloads from
# ci-files.testing.ansible.com; offer an offline stand-in in its cache instead.
pip_version=$("$venv/bin/python" -c 'from ansible_test._internal.python_requirements import get_venv_packages as g; print(g(type("P", (), {"version": ""})())["pip"])' 2>/dev/null || echo 24.2)
get_pip=$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py
if [ ! -s "$get_pip" ]; then
    mkdir -p "$(dirname "$get_pip")"
    cp "$repo/tests/sanity/get_pip.py" "$get_pip"
fi

export ANSIBLE_COLLECTIONS_PATH=$tmp
# not exec: the trap above removes the copy when ansible-test is done
rc=0
"$ansible_test" sanity --venv --python "$pyver" --color no "$@" || rc=$?
exit $rc
