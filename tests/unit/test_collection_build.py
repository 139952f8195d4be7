"""The collection builds into a tarball that ansible-galaxy installs, and the
tarball is the collection: not the repository's lab, tests and tooling, and no
link of its documentation points at a file it does not hold."""

import json
import os
import posixpath
import re
import subprocess
import sys
import tarfile

import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The ansible-galaxy of the interpreter running the tests (the project's venv).
GALAXY = os.path.join(os.path.dirname(sys.executable), 'ansible-galaxy')

# What a user installs: the content, its documentation, the example inventory,
# the changelog, and the files meta/execution-environment.yml names.
SHIPPED = {'COPYING', 'FILES.json', 'MANIFEST.json', 'README.md', 'CHANGELOG.md', 'changelogs',
           'docs', 'inventory', 'meta', 'playbooks', 'plugins', 'requirements.txt', 'bindep.txt',
           'roles'}
# [text](target): a markdown link; a target with a scheme or only an anchor is not a file
LINK = re.compile(r'\]\(([^)\s]+)\)')


def galaxy(*args, cwd):
    proc = subprocess.run([GALAXY] + list(args), cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert proc.returncode == 0, 'ansible-galaxy %s failed:\n%s' % (' '.join(args), proc.stdout)
    return proc.stdout


@pytest.fixture(scope='module')
def tarball(tmp_path_factory):
    build_dir = tmp_path_factory.mktemp('build')
    galaxy('collection', 'build', '--output-path', str(build_dir), REPO, cwd=str(build_dir))
    with open(os.path.join(REPO, 'galaxy.yml')) as handle:
        version = yaml.safe_load(handle)['version']
    path = build_dir / ('nixdeploy-fleet-%s.tar.gz' % version)
    assert path.is_file(), os.listdir(str(build_dir))
    return path


def members(tarball):
    with tarfile.open(str(tarball)) as archive:
        return {member.name: member for member in archive.getmembers()}


def test_build_and_install(tarball, tmp_path):
    names = set(members(tarball))
    assert 'plugins/plugin_utils/nix/_nix.py' in names
    assert 'galaxy.yml' not in names  # replaced by MANIFEST.json
    # Local state must never ship (build_ignore in galaxy.yml).
    for name in names:
        assert not name.startswith(('.venv', '.lab', 'tests/output', '.git/')), name

    install_dir = tmp_path / 'installed'
    # --force: without it ansible-galaxy installs nothing when some configured
    # collections path (e.g. ~/.ansible/collections) already has nixdeploy.fleet.
    galaxy('collection', 'install', '--force', '-p', str(install_dir), str(tarball), cwd=str(tmp_path))
    installed = install_dir / 'ansible_collections' / 'nixdeploy' / 'fleet'
    with open(str(installed / 'MANIFEST.json')) as handle:
        info = json.load(handle)['collection_info']
    assert (info['namespace'], info['name']) == ('nixdeploy', 'fleet')
    assert (installed / 'plugins' / 'plugin_utils' / 'nix' / '_nix.py').is_file()


def test_ships_the_collection_not_the_repository(tarball):
    names = set(members(tarball))
    top = {name.split('/', 1)[0] for name in names}
    assert SHIPPED <= top, 'missing from the tarball: %s' % sorted(SHIPPED - top)
    assert top <= SHIPPED, 'the repository\'s, not the collection\'s: %s' % sorted(top - SHIPPED)
    # ansible-builder reads these from the installed collection
    with open(os.path.join(REPO, 'meta', 'execution-environment.yml')) as handle:
        for dependency in yaml.safe_load(handle)['dependencies'].values():
            assert dependency in names, dependency
    # the changelog's data ships, fragments not yet released do not
    assert 'changelogs/changelog.yaml' in names
    assert not [name for name in names if name.startswith('changelogs/fragments/')]


def test_every_link_of_the_shipped_docs_is_in_the_tarball(tarball):
    entries = members(tarball)
    paths = {name.rstrip('/') for name in entries}
    broken = []
    with tarfile.open(str(tarball)) as archive:
        for name in sorted(entries):
            if not name.endswith('.md') or not entries[name].isfile():
                continue
            text = archive.extractfile(name).read().decode('utf-8')
            for target in LINK.findall(text):
                # markdown's backslash escapes (CHANGELOG.md writes https\://)
                target = re.sub(r'\\(.)', r'\1', target).split('#', 1)[0]
                if not target or re.match(r'^[a-z][a-z0-9+.-]*:', target):
                    continue
                resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
                if resolved not in paths:
                    broken.append('%s -> %s' % (name, target))
    assert not broken, 'links to files the collection does not ship:\n' + '\n'.join(broken)
