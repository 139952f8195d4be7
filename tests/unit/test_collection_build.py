"""The collection builds into a tarball that ansible-galaxy installs."""

import json
import os
import subprocess
import sys
import tarfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The ansible-galaxy of the interpreter running the tests (the project's venv).
GALAXY = os.path.join(os.path.dirname(sys.executable), 'ansible-galaxy')


def galaxy(*args, cwd):
    proc = subprocess.run([GALAXY] + list(args), cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert proc.returncode == 0, 'ansible-galaxy %s failed:\n%s' % (' '.join(args), proc.stdout)
    return proc.stdout


def test_build_and_install(tmp_path):
    build_dir = tmp_path / 'build'
    install_dir = tmp_path / 'installed'
    galaxy('collection', 'build', '--output-path', str(build_dir), REPO, cwd=str(tmp_path))

    with open(os.path.join(REPO, 'galaxy.yml')) as handle:
        version = [line.split(':', 1)[1].strip() for line in handle if line.startswith('version:')][0]
    tarball = build_dir / ('nixdeploy-fleet-%s.tar.gz' % version)
    assert tarball.is_file(), os.listdir(str(build_dir))
    with tarfile.open(str(tarball)) as archive:
        names = set(archive.getnames())
    assert 'plugins/plugin_utils/nix/_nix.py' in names
    assert 'galaxy.yml' not in names  # replaced by MANIFEST.json
    # Local state must never ship (build_ignore in galaxy.yml).
    for name in names:
        assert not name.startswith(('.venv', '.lab', 'tests/output', '.git/')), name

    # --force: without it ansible-galaxy installs nothing when some configured
    # collections path (e.g. ~/.ansible/collections) already has nixdeploy.fleet.
    galaxy('collection', 'install', '--force', '-p', str(install_dir), str(tarball), cwd=str(tmp_path))
    installed = install_dir / 'ansible_collections' / 'nixdeploy' / 'fleet'
    with open(str(installed / 'MANIFEST.json')) as handle:
        info = json.load(handle)['collection_info']
    assert (info['namespace'], info['name']) == ('nixdeploy', 'fleet')
    assert (installed / 'plugins' / 'plugin_utils' / 'nix' / '_nix.py').is_file()
