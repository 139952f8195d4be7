#!/usr/bin/env bash
# Galaxy's import check on the collection as it would be uploaded: build the
# tarball with `ansible-galaxy collection build` from the files of the commit
# (HEAD), as `git archive` writes them into a temp folder (tests/galaxy/pack.py:
# never the work tree's files, tracked or not; a tracked link to outside the tree
# is refused), then run galaxy-importer on it,
# the check Galaxy runs on every upload (ansible-doc on each plugin and role, the
# roles' meta/main.yml, the changelog, ansible-lint's production profile on what
# the tarball ships). Every WARNING or ERROR it reports fails the check: Galaxy
# would show each one on the collection's import log.
#
# Usage: tests/galaxy/import.sh OUTPUT_DIR [--release]
#        (the tarball and importer.log go to OUTPUT_DIR; --release, from make release:
#        HEAD plus the release's own edits to galaxy.yml and the changelog, pack.py's)
# Env:   VENV (ansible-galaxy; default .venv)
#        IMPORTER_VENV (galaxy-importer, requirements-importer.txt; default .venv-importer)
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:?usage: tests/galaxy/import.sh OUTPUT_DIR [--release]}
shift
venv=${VENV:-$repo/.venv}
importer_venv=${IMPORTER_VENV:-$repo/.venv-importer}
for tool in "$venv/bin/ansible-galaxy" "$importer_venv/bin/python"; do
    [ -x "$tool" ] || { echo "no $tool; run 'make deps importer-venv' first" >&2; exit 2; }
done

mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -rf "$out"/nixdeploy-fleet-*.tar.gz "$out/importer.log" "$out/importer_result.json" "$out/tmp"
tarball=$("$venv/bin/python" "$repo/tests/galaxy/pack.py" build "$out" "$@")

# As Galaxy runs it: no ansible settings of this machine or checkout (the
# environment's ANSIBLE_*, a ./ansible.cfg), the importer's ansible-lint,
# ansible-doc and ansible-playbook first on PATH, its temp files under $out.
for var in $(compgen -e | grep '^ANSIBLE_' || true); do unset "$var"; done
cd "$out"
rc=0
PATH=$importer_venv/bin:$PATH \
GALAXY_IMPORTER_CONFIG=$repo/tests/galaxy/galaxy-importer.cfg \
GALAXY_IMPORTER_ANSIBLE_LOCAL_TMP=$out/tmp \
    "$importer_venv/bin/python" -m galaxy_importer.main "$tarball" >importer.log 2>&1 || rc=$?
cat importer.log

findings=$(grep -cE '^(WARNING|ERROR|CRITICAL):' importer.log || true)
if [ "$rc" -ne 0 ] || [ "$findings" -ne 0 ] \
        || ! grep -qx 'Importer processing completed successfully' importer.log; then
    echo "galaxy-importer: exit $rc, $findings warning(s) or error(s) on $(basename "$tarball")" >&2
    exit 1
fi
echo "galaxy-importer: $(basename "$tarball") imports clean"
