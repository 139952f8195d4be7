"""The collection builds into a tarball that ansible-galaxy installs, and the
tarball is the collection: not the repository's lab, tests, tooling and demo
inventory, never a file git does not track, and no link of its documentation
points at a file it does not hold."""

import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tarfile

import pytest
import yaml

from tests.galaxy import pack

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The ansible-galaxy of the interpreter running the tests (the project's venv).
GALAXY = os.path.join(os.path.dirname(sys.executable), 'ansible-galaxy')

# What a user installs: the content, its documentation, the changelog, and the
# files meta/execution-environment.yml names; the examples made for users where
# the checkout has them. Never the demo fleet's inventory/ (an operator keeps
# group_vars with secrets beside it).
SHIPPED = {'COPYING', 'FILES.json', 'MANIFEST.json', 'README.md', 'CHANGELOG.md', 'changelogs',
           'docs', 'meta', 'playbooks', 'plugins', 'requirements.txt', 'bindep.txt', 'roles'}
MAY_SHIP = {'examples'}
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
    # as `make release`, the Galaxy import check and `make ee` build it
    built = pack.build(str(build_dir))
    with open(os.path.join(REPO, 'galaxy.yml')) as handle:
        version = yaml.safe_load(handle)['version']
    path = build_dir / ('nixdeploy-fleet-%s.tar.gz' % version)
    assert built == str(path) and path.is_file(), os.listdir(str(build_dir))
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
    assert top <= SHIPPED | MAY_SHIP, \
        'the repository\'s, not the collection\'s: %s' % sorted(top - SHIPPED - MAY_SHIP)
    # no dotfile and no editor backup at any depth
    for name in names:
        base = name.rsplit('/', 1)[-1]
        assert not base.startswith(('.', '#')), name
        assert not base.endswith(('~', '.swp', '.bak', '.orig')), name
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


# in no file of the repository
MARK = 'nixdeploy-scratch-' + 'secret-7c1e'
SECRETS = {
    # an operator's group_vars beside the demo inventory: git does not track it
    'inventory/group_vars/prod/secrets.yml': 'nixdeploy_access_token: %s-1\n' % MARK,
    # a vault password file, ignored by the operator's own exclude
    '.vault-pass': '%s-2\n' % MARK,
    # an editor's backup, ignored by .gitignore: `git status` does not show it
    'inventory/group_vars/all.yml~': 'become_password: %s-3\n' % MARK,
    # the same kinds inside shipped folders
    'roles/deploy/defaults/main.yml.orig': '%s-4\n' % MARK,
    'docs/.env': 'TOKEN=%s-5\n' % MARK,
}


def _run(argv, cwd, **kwargs):
    return subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False, **kwargs)


def test_what_git_does_not_track_never_reaches_the_tarball_and_stops_a_release(tmp_path):
    """A scratch copy of the repository (its tracked files, committed) with
    an untracked secret beside the demo inventory, an ignored .vault-pass and
    editor backups: the tarball holds none of them, and `make release`'s
    guard refuses, naming each, before it changes anything."""
    scratch = tmp_path / 'checkout'
    pack.export(str(scratch))
    # the files under test as they are here (tracked or not yet)
    for name in ('tests/galaxy/pack.py', 'galaxy.yml', 'Makefile'):
        shutil.copy2(os.path.join(REPO, name), str(scratch / name))
    env = dict(os.environ, GIT_AUTHOR_NAME='t', GIT_AUTHOR_EMAIL='t@localhost',
               GIT_COMMITTER_NAME='t', GIT_COMMITTER_EMAIL='t@localhost')
    for argv in (['git', 'init', '-q'], ['git', 'add', '-A'],
                 ['git', 'commit', '-q', '--no-verify', '-m', 'scratch']):
        proc = _run(argv, str(scratch), env=env)
        assert proc.returncode == 0, proc.stdout
    assert pack.takeable(str(scratch)) == []
    with open(str(scratch / '.git' / 'info' / 'exclude'), 'a') as handle:
        handle.write('/.vault-pass\n')
    for name, text in SECRETS.items():
        path = scratch / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    shown = _run(['git', 'status', '--porcelain'], str(scratch)).stdout
    assert 'all.yml~' not in shown and '.vault-pass' not in shown  # git hides them

    out = tmp_path / 'dist'
    tarball = _run([sys.executable, str(scratch / 'tests' / 'galaxy' / 'pack.py'), 'build',
                    str(out)], str(tmp_path))
    assert tarball.returncode == 0, tarball.stdout
    names = set(members(tarball.stdout.strip()))
    assert 'plugins/plugin_utils/nix/_nix.py' in names
    leaked = [n for n in names if n in SECRETS or n.startswith('inventory')]
    assert not leaked, leaked
    with tarfile.open(tarball.stdout.strip()) as archive:
        for member in archive.getmembers():
            if member.isfile():
                text = archive.extractfile(member).read()
                assert MARK.encode() not in text, member.name

    # the release's guard: refuses and names every file, changes nothing
    release = _run(['make', '-o', 'venv', '-o', 'importer-venv', 'release', 'VERSION=9.9.9',
                    'VENV=%s' % os.path.dirname(os.path.dirname(sys.executable))], str(scratch))
    assert release.returncode != 0, release.stdout
    for name in SECRETS:
        assert name in release.stdout, (name, release.stdout)
    assert _run(['git', 'status', '--porcelain', '--untracked-files=no'],
                str(scratch)).stdout == ''
    # without them the guard lets the release go on
    for name in SECRETS:
        (scratch / name).unlink()
    assert pack.takeable(str(scratch)) == []
