# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The collection's tarball from the objects of a git commit, never from the work tree.

`ansible-galaxy collection build` packs every file of the folder it is given
that galaxy.yml's build_ignore does not name: an operator's untracked
group_vars beside the demo inventory, an ignored `.vault-pass`, an editor's
`all.yml~` that `git status` does not even show. It also follows a symbolic
link whose target lies outside that folder and stores the target's content as
a regular file. And a tracked file marked `git update-index --skip-worktree`
or `--assume-unchanged` may hold local content in the work tree that `git
status` and `git diff` never show. Galaxy is public. So every packing of this
checkout (`make release`, the Galaxy import check, `make ee`, the tests that
install the tarball) goes through here, and takes the files from git's
objects of one commit (`git ls-tree`, `git cat-file`), never from the work
tree, and no attribute or filter of the local repository applies:

    pack.py check                  refuse (exit 2, naming them) when `git status
                                   --porcelain --ignored` lists anything but the
                                   tooling's own local state (LOCAL_STATE, all
                                   of it under build_ignore too), when a tracked
                                   file is marked skip-worktree or
                                   assume-unchanged (git would hide its local
                                   changes), when a symbolic link of HEAD
                                   points outside the tree, when two of its
                                   paths differ only in case, or when a file of
                                   HEAD is not in the work tree as HEAD holds
                                   it, its bytes read (no link followed) and
                                   hashed anew as git hashes a blob (no stat
                                   data, no filter: git status trusts both):
                                   the release's guard.
                                   Stricter than "what the tarball could take":
                                   a secret beside the demo inventory, a
                                   .vault-pass or a backup is build_ignore'd
                                   and never packed (only committed files are),
                                   and still stops a release until the operator
                                   moves it out of the release checkout
    pack.py export DEST [--rev R]  the files of commit R (default HEAD) into
                                   DEST (an empty folder), from git's raw
                                   objects (no filter, no attribute); refused
                                   when one of its symbolic links points
                                   outside the tree or two paths differ only
                                   in case
    pack.py build OUT [--rev R] [--release]
                                   export into a private temp folder, then
                                   `ansible-galaxy collection build` there; the
                                   tarball lands in OUT, its path is printed.
                                   --release (make release): R's tree plus the
                                   release's own edits, the work tree's
                                   galaxy.yml, CHANGELOG.md and
                                   changelogs/changelog.yaml edited
                                   (RELEASE_WRITES) and fragments removed
                                   (RELEASE_REMOVES): each file under
                                   RELEASE_EDITS whose bytes, hashed anew,
                                   differ from R's blob, or that is gone, is
                                   one of those (any other is refused, named)
                                   and is put into a temporary index by its
                                   raw bytes (`git hash-object --no-filters`, `git
                                   update-index --cacheinfo`), and the tree
                                   written there checked to be R's at every
                                   other path; refused while an attribute
                                   (filter, text, eol, ident,
                                   working-tree-encoding) or core.autocrlf
                                   converts a release path; no other file of
                                   the work tree is read

A symbolic link is resolved inside the tree as git stores it: its target
relative to the link's folder, through the tree's other links. One that is
absolute, climbs above the tree's top or loops is refused, naming the link and
its target, whether build_ignore would leave it out or not. A link that stays
inside is packed as ansible-galaxy packs it (a link in the tarball).

ansible-galaxy is the one beside this interpreter (the project's venv), or
GALAXY. Standard library only.
"""

import errno
import fnmatch
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import unicodedata

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
# what `make release` changes itself before it builds the tarball: galaxy.yml's
# version, and antsibull-changelog release's CHANGELOG.md, changelogs/changelog.yaml
# and the fragments it removes. A release build takes these from the work tree
# (files the commit tracks only), every other file from the commit.
RELEASE_EDITS = ['galaxy.yml', 'CHANGELOG.md', 'changelogs']
# of those, the files the release's tools write (sed on galaxy.yml, and
# changelogs/config.yaml's output and changes_file): the only ones a release
# takes edited; and the folder whose files it only removes (keep_fragments:
# false). Any other path of the work tree that differs from the commit's blob
# stops a release, named.
RELEASE_WRITES = ['galaxy.yml', 'CHANGELOG.md', 'changelogs/changelog.yaml']
RELEASE_REMOVES = 'changelogs/fragments/'
# attributes with which git changes a file's bytes between the work tree and
# its blob (a clean filter, line ends, $Id$, another encoding): on a release
# path the work tree's bytes are then not what git holds or would commit
CONVERTING = ['filter', 'text', 'eol', 'ident', 'working-tree-encoding']
CONVERTING_REFUSED = ('attributes or settings that have git convert files between the work tree '
                      'and its objects, on files a release takes from the work tree (%s): '
                      'their bytes there are not what git holds, and a release ships no '
                      'filter\'s output; remove them (.gitattributes, .git/info/attributes, '
                      'core.attributesFile, core.autocrlf) or cut the release from a clone '
                      'without them:\n  ' % ', '.join(RELEASE_EDITS))
# git's file mode of a symbolic link, of a submodule, and of regular files
# (with the mode an export gives each: `git archive`'s, umask 002)
LINK_MODE = '120000'
GITLINK_MODE = '160000'
FILE_MODES = {'100644': 0o664, '100755': 0o775}
# links followed while one link is resolved before it counts as a loop (Linux's limit)
MAX_LINK_HOPS = 40


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


def flagged(repo=REPO):
    """The tracked files whose index entry tells git not to look at the work
    tree (`git ls-files -v`: tag S for skip-worktree, a lower-case tag for
    assume-unchanged): `git status` and `git diff HEAD` show none of their
    local changes, so a release guard built on them cannot see a secret there."""
    out = git('ls-files', '-v', '-z', repo=repo).decode('utf-8', 'surrogateescape')
    found = []
    for entry in out.split('\0'):
        if len(entry) < 3:
            continue
        tag, path = entry[0], entry[2:]
        if tag == 'S':
            found.append('%s (skip-worktree)' % path)
        elif tag.islower():
            found.append('%s (assume-unchanged)' % path)
    return found


def entries_of(rev='HEAD', repo=REPO):
    """[(mode, kind, oid, path)] of every entry of ``rev``'s tree (`git
    ls-tree -r`): git's objects, never the work tree, the index or an
    attribute."""
    out = git('ls-tree', '-r', '-z', '--full-tree', rev, repo=repo)
    found = []
    for entry in out.decode('utf-8', 'surrogateescape').split('\0'):
        if not entry:
            continue
        meta, path = entry.split('\t', 1)
        mode, kind, oid = meta.split()
        found.append((mode, kind, oid, path))
    return found


def blobs(oids, repo=REPO):
    """[bytes] of the blobs ``oids``, in order, as git holds them (one `git
    cat-file --batch`: no filter, no attribute applies)."""
    if not oids:
        return []
    data = git('cat-file', '--batch', repo=repo, input=('\n'.join(oids) + '\n').encode())
    found, at = [], 0
    for oid in oids:
        header_end = data.index(b'\n', at)
        header = data[at:header_end].split()
        if len(header) != 3 or header[1] != b'blob':
            raise PackError('git cat-file gave no blob for %s' % oid)
        size = int(header[2])
        found.append(data[header_end + 1:header_end + 1 + size])
        at = header_end + 1 + size + 1  # the blob, then a newline
    return found


def links_of(rev='HEAD', repo=REPO, entries=None):
    """{path: target} of every symbolic link in ``rev``'s tree: git keeps a
    link as a blob holding its target."""
    links = [(oid, path) for mode, _kind, oid, path in
             (entries_of(rev, repo) if entries is None else entries) if mode == LINK_MODE]
    targets = blobs([oid for oid, _path in links], repo)
    return dict((path, body.decode('utf-8', 'surrogateescape'))
                for (_oid, path), body in zip(links, targets))


def fold(name):
    """``name`` as a case-insensitive file system (macOS's, Windows') sees
    it: one composed form, case folded."""
    return unicodedata.normalize('NFC', name).casefold()


def resolve(link, links):
    """Where the link ``link`` leads in the tree, its target taken relative to
    the link's folder and every link met on the way followed (as the kernel
    does in an export of the tree): the path from the tree's top ('' for the
    top itself), or None when it leaves the tree (an absolute target, more
    '..' than folders), loops, or passes a name that is a link only where
    case is not told apart (`docs/sub/up` for the link `docs/sub/UP`)."""
    folder = link.split('/')[:-1]  # git stores no link above a tracked path
    folded = set(fold(name) for name in links)
    target = links[link]
    if target.startswith('/'):
        return None
    pending = list(reversed(target.split('/')))
    hops = 0
    while pending:
        part = pending.pop()
        if part in ('', '.'):
            continue
        if part == '..':
            if not folder:
                return None
            folder.pop()
            continue
        step = '/'.join(folder + [part])
        if step not in links and fold(step) in folded:
            # another link on a case-insensitive file system: refused
            return None
        if step in links:
            hops += 1
            if hops > MAX_LINK_HOPS or links[step].startswith('/'):
                return None
            # its target is relative to its own folder: where we stand
            pending.extend(reversed(links[step].split('/')))
            continue
        folder.append(part)
    return '/'.join(folder)


def links_outside(rev='HEAD', repo=REPO, entries=None):
    """'path -> target' of each symbolic link of ``rev`` that leads outside
    the tree (resolve)."""
    links = links_of(rev, repo, entries)
    return ['%s -> %s' % (path, links[path]) for path in sorted(links)
            if resolve(path, links) is None]


def clashes(rev='HEAD', repo=REPO, entries=None):
    """'name, name' of each set of paths of ``rev`` (files, links, folders)
    that differ only in case (``fold``): one file on a case-insensitive file
    system, so what a link there reaches is not what git holds."""
    seen = {}
    for _mode, _kind, _oid, path in (entries_of(rev, repo) if entries is None else entries):
        parts = path.split('/')
        for end in range(1, len(parts) + 1):
            name = '/'.join(parts[:end])
            seen.setdefault(fold(name), set()).add(name)
    return sorted(', '.join(sorted(names)) for names in seen.values() if len(names) > 1)


CLASHES = ('paths git tracks that differ only in case: a case-insensitive file system (macOS, '
           'Windows) makes them one, and a link may then reach what git does not hold; rename '
           'one of each:\n  ')
LINKS_OUTSIDE = ('symbolic links git tracks that point outside the collection tree (an '
                 'absolute target, one that climbs above the tree, a loop, or one that reaches '
                 'another link only where case is not told apart): '
                 'ansible-galaxy would pack the file they point at; remove them or point '
                 'them inside the tree:\n  ')


def check(repo=REPO, rev='HEAD'):
    problems = []
    found = takeable(repo)
    if found:
        problems.append('a release is cut from a checkout holding only what git tracks (and '
                        'the tooling\'s own venvs, lab and output); move these out of it or '
                        'commit them:\n  ' + '\n  '.join(found))
    marked = flagged(repo)
    if marked:
        problems.append('tracked files marked skip-worktree or assume-unchanged: git hides '
                        'their local changes from `git status` and `git diff`, so the release '
                        'checks cannot see what they hold (the tarball takes their committed '
                        'content); clear the mark (`git update-index --no-skip-worktree '
                        '--no-assume-unchanged PATH`) and commit or move away what they hold:'
                        '\n  ' + '\n  '.join(marked))
    entries = entries_of(rev, repo)
    outside = links_outside(rev, repo, entries)
    if outside:
        problems.append(LINKS_OUTSIDE + '\n  '.join(outside))
    clash = clashes(rev, repo, entries)
    if clash:
        problems.append(CLASHES + '\n  '.join(clash))
    changed = ['%s (%s)' % (path, why) for _mode, path, _now, why in differing(entries, repo)]
    if changed:
        problems.append(DIFFERING + '\n  '.join(changed))
    if problems:
        raise PackError('\n'.join(problems))


DIFFERING = ('tracked files whose bytes in the work tree are not the commit\'s blob, read '
             'and hashed anew (git status and git diff trust the index\'s stat data and a '
             'filter\'s output, and may say clean): commit or restore them (`git checkout '
             'HEAD -- PATH` with no filter set):\n  ')


def release_tree(rev='HEAD', repo=REPO):
    """The tree of ``rev`` with the release's own edits (release_edits),
    written through a temporary index: ``rev``'s tree read into it (`git
    read-tree`), each edit put in by its blob (`git update-index`), the tree
    written (`git write-tree`) and checked against ``rev``'s
    (same_outside_edits). Nothing goes through git's clean filters or
    end-of-line conversion, and the branch, the real index and the work tree
    are not touched. Refused while a tracked file is marked skip-worktree or
    assume-unchanged (check), while an attribute or core.autocrlf would
    have git change the bytes of a release path (converting), or while a
    release path the release does not write differs from its blob
    (release_edits)."""
    return staged_release(rev, repo)[0]


def staged_release(rev='HEAD', repo=REPO):
    """(release_tree's tree, the edits in it: release_edits)."""
    marked = flagged(repo)
    if marked:
        raise PackError('tracked files marked skip-worktree or assume-unchanged; a release '
                        'takes nothing from the work tree while git hides its changes there '
                        '(see `pack.py check`):\n  ' + '\n  '.join(marked))
    entries = entries_of(rev, repo)
    paths = [path for _m, _k, _o, path in release_entries(entries)]
    scratch = tempfile.mkdtemp(prefix='nixdeploy-pack-index.')
    try:
        env = dict(os.environ, GIT_INDEX_FILE=os.path.join(scratch, 'index'))
        git('read-tree', rev, repo=repo, env=env)
        # the index holds rev's tree: `check-attr --cached` reads its
        # committed .gitattributes, the plain run the work tree's
        refused = converting(paths, repo, env)
        if refused:
            raise PackError(CONVERTING_REFUSED + '\n  '.join(refused))
        edits = release_edits(entries, repo)
        for mode, oid, path in edits:
            if oid is None:
                git('update-index', '--force-remove', '--', path, repo=repo, env=env)
            else:
                git('update-index', '--cacheinfo', '%s,%s,%s' % (mode, oid, path),
                    repo=repo, env=env)
        tree = git('write-tree', repo=repo, env=env).decode().strip()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    same_outside_edits(tree, entries, edits, repo)
    return tree, edits


def release_entries(entries):
    """The entries of ``entries`` under RELEASE_EDITS."""
    return [entry for entry in entries
            if any(entry[3] == top or entry[3].startswith(top + '/') for top in RELEASE_EDITS)]


def converting(paths, repo, env):
    """'path: attribute=value' for each attribute of CONVERTING set on one of
    ``paths`` from any source git reads (the work tree's and the committed
    .gitattributes, .git/info/attributes, core.attributesFile, the system's),
    and 'core.autocrlf=value' when that converts line ends of every file."""
    found = []
    for cached in ([], ['--cached']):
        out = git('check-attr', '-z', '--stdin', *(cached + CONVERTING), repo=repo, env=env,
                  input=b''.join(os.fsencode(path) + b'\0' for path in paths))
        fields = out.decode('utf-8', 'surrogateescape').split('\0')
        for at in range(0, len(fields) - 2, 3):
            path, name, value = fields[at:at + 3]
            said = '%s: %s=%s' % (path, name, value)
            if value != 'unspecified' and said not in found:
                found.append(said)
    autocrlf = git('config', '--default', 'false', '--get', 'core.autocrlf', repo=repo,
                   env=env).decode().strip()
    if autocrlf.lower() not in ('false', 'no', 'off', '0', ''):
        found.append('core.autocrlf=%s (the repository\'s or your git config)' % autocrlf)
    return found


def release_edits(entries, repo=REPO):
    """[(mode, oid, path)]: each file of ``entries`` (a tree's) under
    RELEASE_EDITS whose bytes in the work tree differ from its blob, with the blob of those bytes
    written as they are (`git hash-object -w --no-filters`) and the mode it
    has in ``entries``; oid None for a fragment the release removed. Refused,
    naming each, when any other path differs: a file the release's tools do
    not write (RELEASE_WRITES) edited, one of them gone, a fragment edited
    rather than removed, a link or a file in another's place."""
    edits, refused = [], []
    for mode, path, now, why in differing(release_entries(entries), repo):
        if now is None and path.startswith(RELEASE_REMOVES) and why == 'gone':
            edits.append((mode, None, path))
        elif now is not None and path in RELEASE_WRITES:
            oid = git('hash-object', '-w', '--no-filters', '--stdin', repo=repo, input=now)
            edits.append((mode, oid.decode().strip(), path))
        else:
            refused.append('%s (%s)' % (path, why))
    if refused:
        raise PackError('a release edits only %s and removes fragments under %s; these '
                        'release paths differ from the commit too (read and hashed anew: '
                        'git status may say clean):\n  %s'
                        % (', '.join(RELEASE_WRITES), RELEASE_REMOVES, '\n  '.join(refused)))
    return edits


def differing(entries, repo=REPO):
    """[(mode, path, bytes or None, why)] of each entry of ``entries`` (a
    tree's) that the work tree does not hold as git holds it: a regular file
    whose bytes, read without following a link and hashed as git hashes a
    blob (no filter, no stat data), are not its oid (``bytes`` are those),
    or that is gone or not a regular file (``bytes`` None); a link whose
    target is not its blob, or that is no link. A submodule is not looked at."""
    hashed = object_hash(repo)
    found = []
    for mode, _kind, oid, path in entries:
        if mode == GITLINK_MODE:
            continue
        try:
            if mode == LINK_MODE:
                why = link_differs(path, oid, hashed, repo)
                if why:
                    found.append((mode, path, None, why))
                continue
            now = work_tree_bytes(path, repo)
        except PackError as exc:
            found.append((mode, path, None, str(exc)))
            continue
        if now is None:
            found.append((mode, path, None, 'gone'))
        elif blob_id(now, hashed) != oid:
            found.append((mode, path, now, 'other bytes'))
    return found


def object_hash(repo=REPO):
    """hashlib's constructor for the repository's object format (sha1, or
    sha256 for a repository made so)."""
    name = git('rev-parse', '--show-object-format', repo=repo).decode().strip()
    if name not in ('sha1', 'sha256'):
        raise PackError('a repository of object format %r: not one this knows' % name)
    return getattr(hashlib, name)


def blob_id(data, hashed):
    """The oid git gives a blob of ``data``: the hash of its header and bytes."""
    return hashed(b'blob %d\0' % len(data) + data).hexdigest()


def link_differs(path, oid, hashed, repo=REPO):
    """Why the work tree's ``path`` is not the link whose target is blob
    ``oid`` ('' when it is): it is gone, or no link, or points elsewhere."""
    fd = folder_of(path, repo)
    if fd is None:
        return 'gone'
    try:
        target = os.readlink(path.split('/')[-1], dir_fd=fd)
    except FileNotFoundError:
        return 'gone'
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            return 'not a symbolic link'
        raise
    finally:
        os.close(fd)
    return '' if blob_id(os.fsencode(target), hashed) == oid else 'another target'


def folder_of(path, repo=REPO):
    """A descriptor of the work tree's folder holding ``path``, each folder
    opened in turn without following a link, or None when one is gone."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | getattr(os, 'O_CLOEXEC', 0)
    fd = os.open(repo, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in path.split('/')[:-1]:
            inner = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = inner
    except FileNotFoundError:
        os.close(fd)
        return None
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise PackError('%s in the work tree is reached through a symbolic link or a file '
                            'in place of a folder: git reads only the files it tracks there'
                            % path)
        raise
    return fd


def work_tree_bytes(path, repo=REPO):
    """The bytes of the work tree's file at ``path`` (from the tree's top), or
    None when it or a folder above it is gone. Each folder is opened in turn
    without following a link (folder_of), and the file too (git never reads a
    tracked file through a link): a link, a folder or a fifo in the way is
    refused, named, rather than read where it points."""
    fd = folder_of(path, repo)
    if fd is None:
        return None
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, 'O_CLOEXEC', 0)
    try:
        inner = os.open(path.split('/')[-1], flags, dir_fd=fd)
        os.close(fd)
        fd = inner
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PackError('%s in the work tree is not a regular file: a release takes the '
                            'edits it makes to the files git tracks there' % path)
        with os.fdopen(fd, 'rb') as handle:
            fd = None
            return handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise PackError('%s in the work tree is reached through a symbolic link or a file '
                            'in place of a folder: a release reads only the files git tracks '
                            'there' % path)
        raise
    finally:
        if fd is not None:
            os.close(fd)


def same_outside_edits(tree, entries, edits, repo=REPO):
    """Refuse ``tree`` unless it is ``entries`` (rev's) with ``edits`` and
    nothing else: every other path keeps its mode and blob, none is added."""
    expected = dict((path, (mode, oid)) for mode, _kind, oid, path in entries)
    for mode, oid, path in edits:
        if oid is None:
            del expected[path]
        else:
            expected[path] = (mode, oid)
    written = dict((path, (mode, oid)) for mode, _kind, oid, path in entries_of(tree, repo))
    differ = sorted(path for path in set(expected) | set(written)
                    if expected.get(path) != written.get(path))
    if differ:
        raise PackError('the release tree %s is not the commit plus the release\'s edits at: %s'
                        % (tree, ', '.join(differ)))


def edited(edits):
    """The paths of ``edits`` (release_edits), one removed said so."""
    return ', '.join('%s%s' % (path, '' if oid else ' removed')
                     for _mode, oid, path in edits) or 'none'


def export(dest, rev='HEAD', repo=REPO):
    """The files of ``rev`` (a commit or tree) into ``dest`` from git's raw
    objects (`git ls-tree`, `git cat-file --batch`): each regular file with
    its executable bit (0664 or 0775, as `git archive` and tar wrote them),
    each link as git holds it, a submodule as an empty folder (as `git
    archive` leaves it). No attribute applies (.gitattributes, the local
    .git/info/attributes, the repository's config): no smudge filter
    (git-crypt unlocked on the release machine), no export-subst, no
    export-ignore, no end-of-line conversion. Refused when one of its links
    leads outside, when two paths differ only in case, or when a path is not
    one git would check out."""
    entries = entries_of(rev, repo)
    outside = links_outside(rev, repo, entries)
    if outside:
        raise PackError(LINKS_OUTSIDE + '\n  '.join(outside))
    clash = clashes(rev, repo, entries)
    if clash:
        raise PackError(CLASHES + '\n  '.join(clash))
    # a committed .gitattributes that asks `git archive` to leave out or fill
    # in a file: not applied here, so refused rather than silently dropped
    marked = [path for (_m, _k, _o, path), body in zip(*attributes_of(entries, repo))
              if b'export-ignore' in body or b'export-subst' in body]
    if marked:
        raise PackError('committed .gitattributes with export-ignore or export-subst, which '
                        'this export does not apply (it ships git\'s objects as they are): '
                        'remove those attributes or leave the files out by galaxy.yml\'s '
                        'build_ignore:\n  ' + '\n  '.join(marked))
    for _mode, _kind, _oid, path in entries:
        if any(part in ('', '.', '..') or part.lower() == '.git' for part in path.split('/')):
            raise PackError('the tree of %s holds a path git would not check out: %r'
                            % (rev, path))
    os.makedirs(dest, exist_ok=True)
    files = [entry for entry in entries if entry[0] in FILE_MODES]
    links = [entry for entry in entries if entry[0] == LINK_MODE]
    unknown = [entry for entry in entries
               if entry[0] not in FILE_MODES and entry[0] not in (LINK_MODE, GITLINK_MODE)]
    if unknown:
        raise PackError('the tree of %s holds entries of a kind git does not check out: %s'
                        % (rev, ', '.join('%s (%s)' % (e[3], e[0]) for e in unknown)))
    for mode, _kind, _oid, path in entries:
        if mode == GITLINK_MODE:
            os.makedirs(os.path.join(dest, path), mode=0o775, exist_ok=True)
    # regular files first, links last: no file is ever written through a link
    for (mode, _kind, _oid, path), body in zip(files, blobs([e[2] for e in files], repo)):
        target = os.path.join(dest, path)
        os.makedirs(os.path.dirname(target), mode=0o775, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, 'wb') as out:
            out.write(body)
        os.chmod(target, FILE_MODES[mode])
    for (_mode, _kind, _oid, path), body in zip(links, blobs([e[2] for e in links], repo)):
        target = os.path.join(dest, path)
        os.makedirs(os.path.dirname(target), mode=0o775, exist_ok=True)
        os.symlink(os.fsdecode(body), target)
    # its folders as `git archive` and tar leave them, whatever the umask
    for top, folders, _names in os.walk(dest):
        for name in folders:
            if not os.path.islink(os.path.join(top, name)):
                os.chmod(os.path.join(top, name), 0o775)


def attributes_of(entries, repo=REPO):
    """(the .gitattributes entries of ``entries``, their committed blobs)."""
    found = [e for e in entries if e[3].split('/')[-1] == '.gitattributes' and e[0] in FILE_MODES]
    return found, blobs([e[2] for e in found], repo)


def galaxy_bin():
    return os.environ.get('GALAXY') or os.path.join(os.path.dirname(sys.executable),
                                                    'ansible-galaxy')


def build(out, rev='HEAD', repo=REPO, release=False):
    """The tarball of ``rev``'s files (with the release's edits when
    ``release``), in ``out``; its path."""
    if release:
        rev = release_tree(rev, repo)
    os.makedirs(out, exist_ok=True)
    out = os.path.abspath(out)
    # the real path: ansible-galaxy keeps a link as a link when the link's
    # real path lies under the folder it was given
    scratch = os.path.realpath(tempfile.mkdtemp(prefix='nixdeploy-pack.'))
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
    rev = 'HEAD'
    if '--rev' in args:
        at = args.index('--rev')
        if at + 1 >= len(args):
            raise PackError('--rev takes a commit')
        rev = args[at + 1]
        del args[at:at + 2]
    release = '--release' in args
    if release:
        args.remove('--release')
    if args == ['check'] and rev == 'HEAD' and not release:
        check()
    elif len(args) == 2 and args[0] == 'export' and not release:
        export(args[1], rev)
    elif len(args) == 2 and args[0] == 'build':
        if release:
            tree, edits = staged_release(rev)
            sys.stderr.write('pack.py: the tarball holds tree %s: %s plus the release\'s edits '
                             '(%s); once they are committed, `git rev-parse HEAD^{tree}` '
                             'prints the same\n' % (tree, rev, edited(edits)))
            rev = tree
        elif git('status', '--porcelain', '--untracked-files=no').strip():
            sys.stderr.write('pack.py: note: the tarball holds the files of %s as committed; '
                             'the work tree\'s uncommitted changes are not in it\n' % rev)
        print(build(args[1], rev))
    else:
        raise PackError('usage: pack.py check | export DEST [--rev REV] | '
                        'build OUT [--rev REV] [--release]')


if __name__ == '__main__':
    try:
        main(sys.argv[1:])
    except PackError as exc:
        sys.stderr.write('pack.py: %s\n' % exc)
        sys.exit(2)
