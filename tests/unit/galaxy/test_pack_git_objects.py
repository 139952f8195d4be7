"""The release tarball holds git's objects of the commit, never the work tree
(tests/galaxy/pack.py, issue 77).

A tracked symbolic link to a file outside the tree would have ansible-galaxy
pack the file it points at, and a tracked file marked skip-worktree or
assume-unchanged hides its local content from `git status` and `git diff`.
Each test builds a small collection in a real git repository under tmp_path
with the real `ansible-galaxy collection build`; the last two run `make
release` in a copy of this repository."""

import os
import shlex
import shutil
import subprocess
import sys
import tarfile

import pytest

from tests.galaxy import pack

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
GALAXY = os.path.join(os.path.dirname(sys.executable), 'ansible-galaxy')
# in no file of the repository
MARK = 'nixdeploy-scratch-' + 'secret-41d9'
GIT_ENV = dict(os.environ, GIT_AUTHOR_NAME='t', GIT_AUTHOR_EMAIL='t@localhost',
               GIT_COMMITTER_NAME='t', GIT_COMMITTER_EMAIL='t@localhost')
GALAXY_YML = '''namespace: nixdeploy
name: fleet
version: 1.0.0
readme: README.md
authors:
  - t
build_ignore:
  - tests
  - '.*'
  - '*/.*'
  - changelogs/fragments
'''


def run(argv, cwd, **kwargs):
    return subprocess.run(argv, cwd=str(cwd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False, env=GIT_ENV, **kwargs)


def git(repo, *args):
    proc = run(['git'] + list(args), repo)
    assert proc.returncode == 0, proc.stdout
    return proc.stdout


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def collection(tmp_path):
    """A small collection, committed: galaxy.yml, README, two docs, a
    changelog and one fragment."""
    repo = tmp_path / 'repo'
    write(repo / 'galaxy.yml', GALAXY_YML)
    write(repo / 'README.md', '# fleet\n')
    write(repo / 'docs' / 'guide.md', 'the committed guide\n')
    write(repo / 'docs' / 'notes.md', 'the committed notes\n')
    write(repo / 'CHANGELOG.md', '# changes\n')
    write(repo / 'changelogs' / 'changelog.yaml', 'releases: {}\n')
    write(repo / 'changelogs' / 'fragments' / '1-x.yml', 'bugfixes:\n  - x\n')
    git(repo, 'init', '-q')
    commit(repo)
    return repo


def commit(repo):
    git(repo, 'add', '-A')
    git(repo, 'commit', '-q', '--no-verify', '-m', 'scratch')


def the_secret(tmp_path):
    """An operator's vault password outside the repository: its path."""
    secret = tmp_path / 'home' / 'op' / '.vault-pass'
    write(secret, '%s\n' % MARK)
    return str(secret)


def shipped(tarball):
    """{name: (member, bytes of a regular file)} of a tarball."""
    found = {}
    with tarfile.open(tarball) as archive:
        for member in archive.getmembers():
            data = archive.extractfile(member).read() if member.isfile() else None
            found[member.name] = (member, data)
    return found


def no_mark(tarball):
    for name, (_member, data) in shipped(tarball).items():
        assert data is None or MARK.encode() not in data, name


# {where the link is: its target}: the secret as an absolute path; as a
# relative path that climbs out of any folder the tree is copied to (extra
# '..' stop at /); through an in-tree link to the tree's top, d0/.../d39/up,
# so that the target looks inside the tree when read as text (up, then 40
# '..', stays under d0/) but climbs from the tree's top on disk
def absolute(secret):
    return {'docs/ssh-notes.md': secret}


def climbing(secret):
    return {'docs/ssh-notes.md': '../' * 40 + secret.lstrip('/')}


def through_a_link(secret):
    deep = ['d%d' % n for n in range(40)]
    return {'/'.join(deep + ['up']): '/'.join(['..'] * len(deep)),
            'docs/ssh-notes.md': '../' + '/'.join(deep + ['up'] + ['..'] * len(deep))
                                 + secret}


@pytest.mark.parametrize('shape', [absolute, climbing, through_a_link])
def test_a_tracked_link_to_outside_the_tree_is_refused(tmp_path, shape):
    repo = collection(tmp_path)
    links = shape(the_secret(tmp_path))
    for where, target in links.items():
        (repo / where).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, str(repo / where))
    commit(repo)
    named = 'docs/ssh-notes.md -> %s' % links['docs/ssh-notes.md']
    # the release's guard, before anything is changed
    with pytest.raises(pack.PackError) as refused:
        pack.check(str(repo))
    assert named in str(refused.value)
    assert 'outside the collection tree' in str(refused.value)
    # the build itself (make galaxy-import, make ee, the tests' tarballs)
    out = tmp_path / 'dist'
    with pytest.raises(pack.PackError) as refused:
        pack.build(str(out), repo=str(repo))
    assert named in str(refused.value)
    assert not out.exists() or not list(out.glob('*.tar.gz'))
    # the in-tree link of through_a_link alone is not refused
    assert [line.split(' -> ')[0] for line in pack.links_outside(repo=str(repo))] == \
        ['docs/ssh-notes.md']


@pytest.mark.parametrize('mark', ['--skip-worktree', '--assume-unchanged'])
def test_a_marked_file_ships_its_committed_content(tmp_path, mark):
    repo = collection(tmp_path)
    git(repo, 'update-index', mark, 'docs/notes.md')
    write(repo / 'docs' / 'notes.md', 'become_password: %s\n' % MARK)
    # git hides the local content: the old guard (`git diff --quiet HEAD`) passes
    assert run(['git', 'diff', '--quiet', 'HEAD', '--'], repo).returncode == 0
    assert pack.takeable(str(repo)) == []

    tarball = pack.build(str(tmp_path / 'dist'), repo=str(repo))
    files = shipped(tarball)
    assert files['docs/notes.md'][1] == b'the committed notes\n'
    no_mark(tarball)
    # the release's guard names the file and its mark
    with pytest.raises(pack.PackError) as refused:
        pack.check(str(repo))
    kind = mark.lstrip('-')
    assert 'docs/notes.md (%s)' % kind in str(refused.value)
    # and a release build takes nothing from the work tree while it is so
    with pytest.raises(pack.PackError) as refused:
        pack.build(str(tmp_path / 'dist2'), repo=str(repo), release=True)
    assert 'docs/notes.md (%s)' % kind in str(refused.value)


def test_an_in_tree_link_is_kept_as_a_link_to_the_committed_file(tmp_path):
    repo = collection(tmp_path)
    os.symlink('guide.md', str(repo / 'docs' / 'alias.md'))
    os.symlink('docs', str(repo / 'latest'))
    commit(repo)
    # an edit not committed: neither the file nor what links to it ships it
    write(repo / 'docs' / 'guide.md', 'uncommitted: %s\n' % MARK)

    tarball = pack.build(str(tmp_path / 'dist'), repo=str(repo))
    files = shipped(tarball)
    # ansible-galaxy keeps a link that stays inside the collection as a link
    assert files['docs/alias.md'][0].issym() and files['docs/alias.md'][0].linkname == 'guide.md'
    assert files['latest'][0].issym() and files['latest'][0].linkname == 'docs'
    assert files['docs/guide.md'][1] == b'the committed guide\n'
    no_mark(tarball)
    # and an installed collection reads the committed file through it
    proc = run([GALAXY, 'collection', 'install', '--force', '-p', str(tmp_path / 'installed'),
                tarball], tmp_path)
    assert proc.returncode == 0, proc.stdout
    installed = tmp_path / 'installed' / 'ansible_collections' / 'nixdeploy' / 'fleet'
    assert (installed / 'docs' / 'alias.md').read_text() == 'the committed guide\n'
    assert (installed / 'latest' / 'guide.md').read_text() == 'the committed guide\n'
    # neither is a link to outside
    assert pack.links_outside(repo=str(repo)) == []


def test_a_release_build_takes_the_release_edits_and_nothing_else(tmp_path):
    repo = collection(tmp_path)
    head = git(repo, 'rev-parse', 'HEAD').strip()
    # the release's own edits, as make release makes them
    galaxy_yml = (repo / 'galaxy.yml').read_text().replace('1.0.0', '1.1.0')
    write(repo / 'galaxy.yml', galaxy_yml)
    write(repo / 'CHANGELOG.md', '# changes\n\n## 1.1.0\n')
    (repo / 'changelogs' / 'fragments' / '1-x.yml').unlink()
    # anything else of the work tree: an edit, a new file in a shipped folder
    write(repo / 'docs' / 'notes.md', 'token: %s\n' % MARK)
    write(repo / 'docs' / 'new.md', 'token: %s\n' % MARK)
    write(repo / 'changelogs' / 'new.yml', 'token: %s\n' % MARK)

    tarball = pack.build(str(tmp_path / 'dist'), repo=str(repo), release=True)
    assert os.path.basename(tarball) == 'nixdeploy-fleet-1.1.0.tar.gz'
    files = shipped(tarball)
    assert files['CHANGELOG.md'][1] == b'# changes\n\n## 1.1.0\n'
    assert files['docs/notes.md'][1] == b'the committed notes\n'
    assert 'docs/new.md' not in files and 'changelogs/new.yml' not in files
    no_mark(tarball)
    # neither the branch, the index nor the work tree moved
    assert git(repo, 'rev-parse', 'HEAD').strip() == head
    assert git(repo, 'diff', '--cached', '--name-only') == ''
    assert (repo / 'docs' / 'new.md').exists()


def test_make_release_refuses_links_to_outside_and_marked_files(tmp_path):
    """`make release` in a copy of this repository (its committed files,
    the release tooling as it is here): a tracked absolute link, a climbing
    one and a skip-worktree file stop it, each named, before it changes
    anything."""
    scratch = tmp_path / 'checkout'
    pack.export(str(scratch))
    for name in ('tests/galaxy/pack.py', 'tests/galaxy/import.sh', 'galaxy.yml', 'Makefile'):
        shutil.copy2(os.path.join(REPO, name), str(scratch / name))
    git(scratch, 'init', '-q')
    secret = the_secret(tmp_path)
    os.symlink(secret, str(scratch / 'docs' / 'ssh-notes.md'))
    up = '../' * 40 + secret.lstrip('/')
    os.symlink(up, str(scratch / 'roles' / 'vault-pass'))
    write(scratch / 'changelogs' / 'fragments' / '99-release.yml', 'release_summary: x\n')
    commit(scratch)
    git(scratch, 'update-index', '--skip-worktree', 'README.md')
    write(scratch / 'README.md', 'token: %s\n' % MARK)

    release = run(['make', '-o', 'venv', '-o', 'importer-venv', 'release', 'VERSION=9.9.9',
                   'VENV=%s' % os.path.dirname(os.path.dirname(sys.executable))], scratch)
    assert release.returncode != 0, release.stdout
    for named in ('docs/ssh-notes.md -> %s' % secret, 'roles/vault-pass -> %s' % up,
                  'README.md (skip-worktree)'):
        assert named in release.stdout, (named, release.stdout)
    assert git(scratch, 'status', '--porcelain') == ''
    assert not (scratch / 'dist').exists()


def release_checkout(tmp_path):
    """A copy of this repository's committed files with the release tooling
    as it is here, its fragments replaced by one release_summary; not yet
    committed."""
    scratch = tmp_path / 'checkout'
    pack.export(str(scratch))
    for name in ('tests/galaxy/pack.py', 'tests/galaxy/import.sh', 'galaxy.yml', 'Makefile'):
        shutil.copy2(os.path.join(REPO, name), str(scratch / name))
    for old in (scratch / 'changelogs' / 'fragments').glob('*.yml'):
        old.unlink()
    write(scratch / 'changelogs' / 'fragments' / '99-release.yml',
          'release_summary: scratch release nine\n')
    git(scratch, 'init', '-q')
    return scratch


def make_release(scratch, tmp_path):
    """`make release VERSION=9.9.9` in ``scratch``, Galaxy's importer stood
    in for by a script that accepts the tarball and notes its path in
    tmp_path/imported."""
    importer = tmp_path / 'importer'
    write(importer / 'bin' / 'python',
          '#!/bin/sh\necho "$@" >%s\necho Importer processing completed successfully\n'
          % (tmp_path / 'imported'))
    os.chmod(str(importer / 'bin' / 'python'), 0o755)
    return run(['make', '-o', 'venv', '-o', 'importer-venv', 'release', 'VERSION=9.9.9',
                'VENV=%s' % os.path.dirname(os.path.dirname(sys.executable)),
                'IMPORTER_VENV=%s' % importer], scratch)


def test_make_release_packs_the_commit_and_its_own_edits(tmp_path):
    """`make release` in a copy of this repository: the tarball in dist/
    carries the version and changelog the release wrote (not yet committed),
    every other file as committed, and a committed link to a folder of the
    tree as a link."""
    scratch = release_checkout(tmp_path)
    os.symlink('../examples', str(scratch / 'docs' / 'examples'))
    commit(scratch)

    release = make_release(scratch, tmp_path)
    assert release.returncode == 0, release.stdout
    tarball = str(scratch / 'dist' / 'nixdeploy-fleet-9.9.9.tar.gz')
    assert (tmp_path / 'imported').read_text().split()[-1] == tarball
    files = shipped(tarball)
    assert b'"version": "9.9.9"' in files['MANIFEST.json'][1]
    assert b'scratch release nine' in files['CHANGELOG.md'][1]
    assert b'9.9.9' in files['changelogs/changelog.yaml'][1]
    assert files['README.md'][1] == git(scratch, 'show', 'HEAD:README.md').encode()
    assert files['docs/examples'][0].issym() and files['docs/examples'][0].linkname == '../examples'
    # the tree it names is what committing the release's edits gives
    said = [line for line in release.stdout.splitlines() if 'the tarball holds tree' in line]
    assert len(said) == 1, release.stdout
    git(scratch, 'add', '-A', 'galaxy.yml', 'CHANGELOG.md', 'changelogs')
    git(scratch, 'commit', '-q', '--no-verify', '-m', 'Release 9.9.9')
    assert said[0].split()[5].rstrip(':') == git(scratch, 'rev-parse', 'HEAD^{tree}').strip()


def smudged(repo, path, secret):
    """A filter on ``path`` set up as a local mistake or a local attacker
    would (.git/config and .git/info/attributes, never committed): its
    smudge appends ``secret``'s content on checkout; ``path`` checked out
    again through it, and the index's stat data refreshed while the clean
    side still dropped that line. Then the clean side passes the bytes on:
    `git status` and `git diff HEAD` trust the stat data and say clean,
    while anything that hashes the file anew gets the secret."""
    attributes = repo / '.git' / 'info' / 'attributes'
    attributes.parent.mkdir(parents=True, exist_ok=True)
    with attributes.open('a') as handle:
        handle.write('%s filter=leak\n' % path)
    git(repo, 'config', 'filter.leak.smudge', 'cat - %s' % shlex.quote(secret))
    git(repo, 'config', 'filter.leak.clean', "sed '$d'")
    (repo / path).unlink()
    git(repo, 'checkout', '--', path)
    # older than the index: git takes the stat data as is, never racy
    past = os.stat(str(repo / path)).st_mtime - 60
    os.utime(str(repo / path), (past, past))
    git(repo, 'update-index', '--refresh')
    git(repo, 'config', 'filter.leak.clean', 'cat')
    assert MARK in (repo / path).read_text()


def vault_comment(tmp_path):
    """A local secret that keeps a YAML file valid once appended."""
    secret = tmp_path / 'home' / 'op' / 'vault.yml'
    write(secret, '# vault: %s\n' % MARK)
    return str(secret)


@pytest.mark.parametrize('path', ['changelogs/config.yaml', 'galaxy.yml'])
def test_make_release_refuses_a_filter_on_a_release_path(tmp_path, path):
    """A smudge filter on a file the release takes from the work tree: `git
    status` and `git diff` see a clean checkout; `pack.py check` hashes the
    bytes and `make release` stops there, naming the path, and the build on
    its own refuses the path for its filter; no tarball, and no tree that
    holds the smudged bytes."""
    scratch = release_checkout(tmp_path)
    commit(scratch)
    smudged(scratch, path, vault_comment(tmp_path))
    assert git(scratch, 'status', '--porcelain') == ''
    assert run(['git', 'diff', '--quiet', 'HEAD', '--'], scratch).returncode == 0
    with pytest.raises(pack.PackError) as refused:
        pack.build(str(tmp_path / 'dist'), repo=str(scratch), release=True)
    assert '%s: filter=leak' % path in str(refused.value)

    release = make_release(scratch, tmp_path)
    assert release.returncode != 0, release.stdout
    assert '%s (other bytes)' % path in release.stdout, release.stdout
    assert not list(scratch.glob('dist/*.tar.gz'))
    assert not (tmp_path / 'imported').exists()


def test_a_release_is_refused_for_any_attribute_that_converts_a_release_path(tmp_path):
    """Every source git reads attributes from, on a release path: the
    committed .gitattributes, one only in the work tree, core.attributesFile,
    and core.autocrlf; each named. An attribute on a file the release does
    not take leaves the release alone, and the tarball holds its blob."""
    outside = tmp_path / 'attributes'
    write(outside, 'CHANGELOG.md ident\n')
    cases = [
        ('committed', 'changelogs/.gitattributes', 'changelog.yaml text eol=crlf\n',
         ['changelogs/changelog.yaml: text=set', 'changelogs/changelog.yaml: eol=crlf']),
        ('work tree', 'changelogs/fragments/.gitattributes',
         '*.yml working-tree-encoding=UTF-16\n',
         ['changelogs/fragments/1-x.yml: working-tree-encoding=UTF-16']),
        ('config', 'core.attributesFile', str(outside), ['CHANGELOG.md: ident=set']),
        ('config', 'core.autocrlf', 'input', ['core.autocrlf=input']),
    ]
    for n, (where, name, value, named) in enumerate(cases):
        repo = collection(tmp_path / str(n))
        if where == 'config':
            git(repo, 'config', name, value)
        else:
            write(repo / name, value)
            if where == 'committed':
                commit(repo)
        with pytest.raises(pack.PackError) as refused:
            pack.build(str(tmp_path / 'dist'), repo=str(repo), release=True)
        for said in named:
            assert said in str(refused.value), (where, str(refused.value))
        assert not list((tmp_path / 'dist').glob('*.tar.gz'))

    repo = collection(tmp_path / 'elsewhere')
    smudged(repo, 'docs/guide.md', vault_comment(tmp_path))
    tarball = pack.build(str(tmp_path / 'dist'), repo=str(repo), release=True)
    assert shipped(tarball)['docs/guide.md'][1] == b'the committed guide\n'


def filter_gone(repo, path, secret):
    """``path`` smudged (smudged), then the filter and its attribute removed:
    no attribute is left for a release to refuse, and the index's stat data
    still says the file is as committed."""
    smudged(repo, path, secret)
    (repo / '.git' / 'info' / 'attributes').unlink()
    git(repo, 'config', '--remove-section', 'filter.leak')


def same_size(repo, path, secret):
    """``path``'s first long comment replaced by ``secret``'s line, padded
    to the same size, its mtime put back, with git told to compare only
    size and whole seconds (core.checkStat=minimal, core.trustctime=false):
    the index's stat data match, so git never reads the file again."""
    git(repo, 'config', 'core.checkStat', 'minimal')
    git(repo, 'config', 'core.trustctime', 'false')
    target = repo / path
    # older than the index: git takes the stat data as is, never racy
    past = os.stat(str(target)).st_mtime - 60
    os.utime(str(target), (past, past))
    git(repo, 'update-index', '--refresh')
    before = os.stat(str(target))
    lines = target.read_bytes().split(b'\n')
    line = open(secret, 'rb').read().strip()
    at = next(n for n, old in enumerate(lines)
              if old.startswith(b'# ') and len(old) >= len(line))
    lines[at] = line.ljust(len(lines[at]))
    target.write_bytes(b'\n'.join(lines))
    os.utime(str(target), ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(str(target)).st_size == before.st_size
    assert MARK in target.read_text()


UNSEEN = {'filter removed': filter_gone, 'same size': same_size}


@pytest.mark.parametrize('shape', sorted(UNSEEN))
def test_make_release_refuses_bytes_the_stat_cache_hides(tmp_path, shape):
    """changelogs/config.yaml holds a local secret that git's stat data hide
    (a filter's output with the filter since removed, or a same-size edit
    with its mtime put back): `git status`, `git diff --quiet HEAD` say
    clean, and no attribute is left. `pack.py check` hashes the bytes and
    names the file; `make release` stops there, with no tarball."""
    scratch = release_checkout(tmp_path)
    commit(scratch)
    UNSEEN[shape](scratch, 'changelogs/config.yaml', vault_comment(tmp_path))
    assert git(scratch, 'status', '--porcelain') == ''
    assert run(['git', 'diff', '--quiet', 'HEAD', '--'], scratch).returncode == 0

    release = make_release(scratch, tmp_path)
    assert release.returncode != 0, release.stdout
    assert 'changelogs/config.yaml (other bytes)' in release.stdout, release.stdout
    assert not list(scratch.glob('dist/*.tar.gz'))
    assert not (tmp_path / 'imported').exists()
    with pytest.raises(pack.PackError) as refused:
        pack.check(str(scratch))
    assert 'changelogs/config.yaml (other bytes)' in str(refused.value)


@pytest.mark.parametrize('shape', sorted(UNSEEN))
def test_a_release_build_takes_edits_only_where_the_release_writes(tmp_path, shape):
    """`pack.py build --release` on its own, after the release's edits
    (galaxy.yml's version, CHANGELOG.md, changelog.yaml, a fragment
    removed): a file the release does not write whose bytes differ unseen
    is refused, named, and so is a fragment edited rather than removed;
    the release's own edits alone build."""
    repo = collection(tmp_path)
    write(repo / 'changelogs' / 'config.yaml',
          '# the changelog tool reads this file, and nothing else\ntitle: fleet\n')
    write(repo / 'changelogs' / 'fragments' / '2-y.yml', 'bugfixes:\n  - y\n')
    commit(repo)
    UNSEEN[shape](repo, 'changelogs/config.yaml', vault_comment(tmp_path))
    write(repo / 'galaxy.yml', GALAXY_YML.replace('1.0.0', '1.1.0'))
    write(repo / 'CHANGELOG.md', '# changes\n\n## 1.1.0\n')
    write(repo / 'changelogs' / 'changelog.yaml', 'releases: {1.1.0: {}}\n')
    (repo / 'changelogs' / 'fragments' / '1-x.yml').unlink()
    write(repo / 'changelogs' / 'fragments' / '2-y.yml', 'bugfixes:\n  - y, edited\n')

    with pytest.raises(pack.PackError) as refused:
        pack.build(str(tmp_path / 'dist'), repo=str(repo), release=True)
    said = str(refused.value)
    assert 'changelogs/config.yaml (other bytes)' in said, said
    assert 'changelogs/fragments/2-y.yml (other bytes)' in said, said
    for allowed in ('galaxy.yml (', 'CHANGELOG.md (', 'changelog.yaml (', '1-x.yml ('):
        assert allowed not in said, said
    assert not list((tmp_path / 'dist').glob('*.tar.gz'))

    # written anew from the commit: the stat data would have git skip them
    for path in ('changelogs/config.yaml', 'changelogs/fragments/2-y.yml'):
        (repo / path).unlink()
        git(repo, 'checkout', 'HEAD', '--', path)
    assert MARK not in (repo / 'changelogs' / 'config.yaml').read_text()
    tarball = pack.build(str(tmp_path / 'dist'), repo=str(repo), release=True)
    files = shipped(tarball)
    assert b'"version": "1.1.0"' in files['MANIFEST.json'][1]
    assert files['CHANGELOG.md'][1] == b'# changes\n\n## 1.1.0\n'
    no_mark(tarball)


def test_a_release_stages_exactly_its_edits_as_raw_bytes(tmp_path):
    """The edits (a file changed, a fragment removed) go in as the work
    tree's bytes; every other path keeps its entry; a link in place of a
    release file is refused, not read where it points."""
    repo = collection(tmp_path)
    head = dict((path, oid) for _m, _k, oid, path in pack.entries_of(repo=str(repo)))
    write(repo / 'CHANGELOG.md', '# changes\r\n\r\n## 1.1.0\r\n')
    (repo / 'changelogs' / 'fragments' / '1-x.yml').unlink()
    tree, edits = pack.staged_release(repo=str(repo))
    assert [(path, oid is None) for _mode, oid, path in edits] == \
        [('CHANGELOG.md', False), ('changelogs/fragments/1-x.yml', True)]
    written = dict((path, oid) for _m, _k, oid, path in pack.entries_of(tree, str(repo)))
    assert pack.blobs([written['CHANGELOG.md']], str(repo)) == [b'# changes\r\n\r\n## 1.1.0\r\n']
    assert 'changelogs/fragments/1-x.yml' not in written
    assert dict((p, o) for p, o in written.items() if p != 'CHANGELOG.md') == \
        dict((p, o) for p, o in head.items() if p not in ('CHANGELOG.md',
                                                          'changelogs/fragments/1-x.yml'))

    (repo / 'galaxy.yml').unlink()
    os.symlink(vault_comment(tmp_path), str(repo / 'galaxy.yml'))
    with pytest.raises(pack.PackError) as refused:
        pack.staged_release(repo=str(repo))
    assert 'galaxy.yml in the work tree is reached through a symbolic link' in str(refused.value)


def test_local_attributes_and_filters_change_nothing_that_ships(tmp_path):
    """The release machine's own .git/info/attributes and config (never
    committed, not in `git status`): a smudge filter that adds a local secret
    (git-crypt unlocked there ships plaintext), export-subst, export-ignore
    and an end-of-line conversion. `git archive` applied every one; the
    tarball holds each file's committed blob, its executable bit and a
    submodule left empty, as before."""
    repo = collection(tmp_path)
    write(repo / 'docs' / 'guide.md', 'built from $Format:%H$\n')
    write(repo / 'bin' / 'tool', '#!/bin/sh\necho tool\n')
    os.chmod(str(repo / 'bin' / 'tool'), 0o755)
    git(repo, 'add', '-A')
    git(repo, 'update-index', '--add', '--cacheinfo', '160000,%s,vendor/sub' % ('1' * 40))
    git(repo, 'commit', '-q', '--no-verify', '-m', 'scratch')
    assert '160000 commit' in git(repo, 'ls-tree', '-r', 'HEAD')
    (repo / 'vendor' / 'sub').mkdir(parents=True)  # a submodule not checked out
    secret = the_secret(tmp_path)
    write(repo / '.git' / 'info' / 'attributes',
          'README.md filter=leak\ndocs/guide.md export-subst\ndocs/notes.md export-ignore\n'
          'CHANGELOG.md eol=crlf text\n')
    git(repo, 'config', 'filter.leak.smudge', 'cat - %s' % secret)
    git(repo, 'config', 'filter.leak.clean', 'cat')
    assert git(repo, 'status', '--porcelain') == ''
    pack.check(str(repo))

    tarball = pack.build(str(tmp_path / 'dist'), repo=str(repo))
    files = shipped(tarball)
    no_mark(tarball)
    for path in ('README.md', 'docs/guide.md', 'docs/notes.md', 'CHANGELOG.md', 'bin/tool'):
        blob = subprocess.run(['git', 'cat-file', 'blob', 'HEAD:%s' % path], cwd=str(repo),
                              stdout=subprocess.PIPE, check=True).stdout
        assert files[path][1] == blob, path
    assert files['bin/tool'][0].mode & 0o111 and not files['README.md'][0].mode & 0o111
    assert not [name for name in files if name.startswith('vendor/sub/')]
    pack.export(str(tmp_path / 'tree'), repo=str(repo))
    assert os.listdir(str(tmp_path / 'tree' / 'vendor' / 'sub')) == []


def test_a_committed_gitattributes_that_asks_archive_to_drop_a_file_is_refused(tmp_path):
    """export-ignore and export-subst are not applied: refused, named."""
    repo = collection(tmp_path)
    write(repo / 'docs' / '.gitattributes', 'notes.md export-ignore\n')
    commit(repo)
    with pytest.raises(pack.PackError) as refused:
        pack.build(str(tmp_path / 'dist'), repo=str(repo))
    assert 'docs/.gitattributes' in str(refused.value)


def test_paths_that_differ_only_in_case_are_refused(tmp_path):
    """On a case-insensitive file system (macOS, Windows) two such names are
    one file, and a link's target read through another case reaches another
    link: `docs/x.md -> sub/up/../../../secret` with the link `docs/sub/UP ->
    ..` climbs two folders out there, though it stays inside read as git
    spells it."""
    repo = collection(tmp_path)
    write(repo / 'docs' / 'Guide.md', 'another guide\n')
    commit(repo)
    with pytest.raises(pack.PackError) as refused:
        pack.check(str(repo))
    assert 'docs/Guide.md, docs/guide.md' in str(refused.value)
    with pytest.raises(pack.PackError):
        pack.build(str(tmp_path / 'dist'), repo=str(repo))

    repo = collection(tmp_path / 'links')
    (repo / 'docs' / 'sub').mkdir()
    os.symlink('..', str(repo / 'docs' / 'sub' / 'UP'))
    os.symlink('sub/up/../../../secret', str(repo / 'docs' / 'x.md'))
    commit(repo)
    assert pack.links_outside(repo=str(repo)) == ['docs/x.md -> sub/up/../../../secret']
    with pytest.raises(pack.PackError) as refused:
        pack.build(str(tmp_path / 'dist2'), repo=str(repo))
    assert 'docs/x.md -> sub/up/../../../secret' in str(refused.value)
