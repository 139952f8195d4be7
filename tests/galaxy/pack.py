# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's tarball from what git tracks, never from the work tree.

`ansible-galaxy collection build` packs every file of the folder it is given
that galaxy.yml's build_ignore does not name: an operator's untracked
group_vars beside the demo inventory, an ignored `.vault-pass`, an editor's
`all.yml~` that `git status` does not even show. Galaxy is public. So every
packing of this checkout (`make release`, the Galaxy import check, `make ee`,
the tests that install the tarball) goes through here:

    pack.py check                  refuse (exit 2, naming them) when `git status
                                   --porcelain --ignored` lists anything but the
                                   tooling's own local state (LOCAL_STATE, all
                                   of it under build_ignore too): the release's
                                   guard. Stricter than "what the tarball could
                                   take": a secret beside the demo inventory, a
                                   .vault-pass or a backup is build_ignore'd
                                   and never packed (only tracked files are),
                                   and still stops a release until the operator
                                   moves it out of the release checkout
    pack.py export DEST [--rev R]  the tracked files into DEST (an empty folder):
                                   the commit R's (`git archive`), or without
                                   --rev the work tree's content of the files
                                   git tracks (`git ls-files`), nothing else
    pack.py build OUT [--rev R]    export into a private temp folder, then
                                   `ansible-galaxy collection build` there; the
                                   tarball lands in OUT, its path is printed

ansible-galaxy is the one beside this interpreter (the project's venv), or
GALAXY. Standard library only.
"""

import fnmatch
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# what ansible-galaxy leaves out whatever galaxy.yml says (ansible/galaxy/collection)
GALAXY_IGNORES = ['MANIFEST.json', 'FILES.json', 'galaxy.yml', 'galaxy.yaml', '.git', '*.pyc',
                  '*.retry', 'tests/output', 'nixdeploy-fleet-*.tar.gz']
GALAXY_IGNORED_DIRS = frozenset(['CVS', '.bzr', '.hg', '.git', '.svn', '__pycache__', '.tox'])


# what the repository's own tooling leaves in a checkout (venvs, the lab, test
# and build output, caches: .gitignore's first entries), each also under
# build_ignore; the only untracked or ignored paths a release tolerates
LOCAL_STATE = ['.venv', '.venv-*', '.lab', '.ansible', '.collections', '*.pytest_cache',
               '*__pycache__', '*.pyc', '.cache', '*/.cache', 'tests/output', 'dist', 'reports',
               'benchmarks/results', 'changelogs/.plugin-cache.yaml', 'nixdeploy-fleet-*.tar.gz']


class PackError(Exception):
    """What the caller is told, then exit 2."""


def git(*args, **kwargs):
    proc = subprocess.run(['git', '-C', kwargs.pop('repo', REPO)] + list(args),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False, **kwargs)
    if proc.returncode != 0:
        said = proc.stderr.decode('utf-8', 'replace').strip()
        raise PackError('git %s failed: %s' % (' '.join(args), said))
    return proc.stdout


def build_ignore(repo=REPO):
    """galaxy.yml's build_ignore patterns, read without a YAML library: the
    list items under the key (the file is ours and keeps them one a line)."""
    patterns, inside = [], False
    with open(os.path.join(repo, 'galaxy.yml')) as handle:
        for line in handle:
            if line.startswith('build_ignore:'):
                inside = True
                continue
            if inside:
                stripped = line.strip()
                if stripped.startswith('- '):
                    item = stripped[2:].strip()
                    if item[:1] in ('"', "'") and item[-1:] == item[:1]:
                        item = item[1:-1]
                    patterns.append(item)
                elif stripped and not stripped.startswith('#'):
                    break
    if not patterns:
        raise PackError('galaxy.yml has no build_ignore list')
    return patterns


def matches(path, patterns):
    """Whether ``path`` (relative, '/'-separated) or a folder above it
    matches a pattern (fnmatch on the whole relative path, as ansible-galaxy
    does: its `*` crosses folders)."""
    parts = path.strip('/').split('/')
    return any(fnmatch.fnmatchcase('/'.join(parts[:end]), p)
               for end in range(1, len(parts) + 1) for p in patterns)


def ignored_by_build(path, patterns):
    """Whether ansible-galaxy leaves ``path`` out: it matches ``patterns``
    (build_ignore) or ansible-galaxy's own, or a folder above it is one
    ansible-galaxy always skips (``path`` itself too: git names an ignored
    folder with its trailing '/')."""
    folders = path.split('/')[:-1]
    return matches(path, list(patterns) + GALAXY_IGNORES) or \
        any(name in GALAXY_IGNORED_DIRS for name in folders)


def takeable(repo=REPO):
    """The entries `git status --porcelain --ignored` lists (changed,
    untracked, ignored; every untracked file on its own) that are not the
    tooling's own local state under build_ignore."""
    out = git('status', '--porcelain=v1', '-z', '--ignored', '--untracked-files=all', repo=repo)
    fields = out.decode('utf-8', 'surrogateescape').split('\0')
    patterns = build_ignore(repo)
    found, idx = [], 0
    while idx < len(fields):
        entry = fields[idx]
        idx += 1
        if len(entry) < 4:
            continue
        status, path = entry[:2], entry[3:]
        if status[0] in 'RC':
            idx += 1  # the origin of a rename or copy follows
        if not (matches(path, LOCAL_STATE) and ignored_by_build(path, patterns)):
            found.append('%s %s' % (status, path))
    return found


def check(repo=REPO):
    found = takeable(repo)
    if found:
        raise PackError('a release is cut from a checkout holding only what git tracks (and '
                        'the tooling\'s own venvs, lab and output); move these out of it or '
                        'commit them:\n  ' + '\n  '.join(found))


def export(dest, rev=None, repo=REPO):
    """The tracked files (of ``rev``, else the work tree's tracked files)
    into ``dest``."""
    os.makedirs(dest, exist_ok=True)
    if rev:
        archive = git('archive', '--format=tar', rev, repo=repo)
        subprocess.run(['tar', '-xf', '-', '-C', dest], input=archive, check=True)
        return
    names = git('ls-files', '-z', '--cached', repo=repo).decode('utf-8', 'surrogateescape')
    for name in sorted(set(n for n in names.split('\0') if n)):
        source = os.path.join(repo, name)
        if not os.path.lexists(source) or os.path.isdir(source):
            continue  # deleted in the work tree (or a submodule): not shipped
        target = os.path.join(dest, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)


def galaxy_bin():
    return os.environ.get('GALAXY') or os.path.join(os.path.dirname(sys.executable),
                                                    'ansible-galaxy')


def build(out, rev=None, repo=REPO):
    """The tarball of the tracked files, in ``out``; its path."""
    os.makedirs(out, exist_ok=True)
    out = os.path.abspath(out)
    scratch = tempfile.mkdtemp(prefix='nixdeploy-pack.')
    try:
        tree = os.path.join(scratch, 'fleet')
        export(tree, rev, repo)
        proc = subprocess.run([galaxy_bin(), 'collection', 'build', '--force', '--output-path',
                               out, tree], cwd=scratch, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, universal_newlines=True, check=False)
        if proc.returncode != 0:
            raise PackError('ansible-galaxy collection build failed:\n%s' % proc.stdout)
        built = [line.rsplit(' ', 1)[-1] for line in proc.stdout.splitlines()
                 if line.startswith('Created collection for ')]
        if len(built) != 1 or not os.path.isfile(built[0]):
            raise PackError('ansible-galaxy collection build named no tarball:\n%s' % proc.stdout)
        return built[0]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv):
    args = list(argv)
    rev = None
    if '--rev' in args:
        at = args.index('--rev')
        if at + 1 >= len(args):
            raise PackError('--rev takes a commit')
        rev = args[at + 1]
        del args[at:at + 2]
    if args == ['check']:
        check()
    elif len(args) == 2 and args[0] == 'export':
        export(args[1], rev)
    elif len(args) == 2 and args[0] == 'build':
        print(build(args[1], rev))
    else:
        raise PackError('usage: pack.py check | export DEST [--rev REV] | build OUT [--rev REV]')


if __name__ == '__main__':
    try:
        main(sys.argv[1:])
    except PackError as exc:
        sys.stderr.write('pack.py: %s\n' % exc)
        sys.exit(2)
