"""A throw-away copy of a checkout, for the faults to go into.

The faults never touch the checkout the script runs from: a crash or a kill
mid-fault could otherwise leave one in the code. The copy holds the files git
would show of the checkout as it is (tracked ones with their uncommitted
changes, and new ones git does not ignore), and is a git repository of its
own with them committed, so a test that reads the checkout's git finds one.
"""

import hashlib
import os
import shutil
import subprocess
import tempfile

# a commit of the copy's own; no user configuration is read for it
GIT_IDENTITY = ('-c', 'user.name=nixdeploy mutations', '-c', 'user.email=mutations@invalid',
                '-c', 'commit.gpgsign=false')


def _listed(repo):
    out = subprocess.run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'],
                         cwd=repo, check=True, stdout=subprocess.PIPE).stdout
    # a tracked file deleted in the work tree is listed but absent
    return sorted({name for name in out.decode('utf-8').split('\0')
                   if name and os.path.lexists(os.path.join(repo, name))})


def make(repo, parent=None):
    """Copy ``repo``'s files into a new folder under ``parent`` (the temp
    folder); returns the copy's path. ``remove`` takes it away."""
    root = tempfile.mkdtemp(prefix='nixdeploy-mutations-', dir=parent)
    copy = os.path.join(root, 'checkout')
    try:
        _fill(repo, copy)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return copy


def _fill(repo, copy):
    """``repo``'s files into ``copy``, committed there."""
    os.makedirs(copy)
    for name in _listed(repo):
        source, target = os.path.join(repo, name), os.path.join(copy, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        # links stay links, modes stay (target programs are executable)
        shutil.copy2(source, target, follow_symlinks=False)
    git = ['git'] + list(GIT_IDENTITY)
    for args in (['init', '-q'], ['add', '-A'], ['commit', '-q', '-m', 'the checkout under test']):
        subprocess.run(git + args, cwd=copy, check=True, stdout=subprocess.DEVNULL)


def collections_tree(copy):
    """The folder where the copy's tests link it as the collection: named as
    tests/collection.py names it for a checkout at ``copy``."""
    return os.path.join(tempfile.gettempdir(), 'nixdeploy-test-collections-%s'
                        % hashlib.sha256(copy.encode('utf-8')).hexdigest()[:12])


def remove(copy):
    """The copy, its logs, and the link its tests made to it."""
    shutil.rmtree(os.path.dirname(copy), ignore_errors=True)
    shutil.rmtree(collections_tree(copy), ignore_errors=True)
