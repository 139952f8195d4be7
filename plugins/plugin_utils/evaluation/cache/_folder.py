# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The evaluation cache's folder (``_cache``), kept safe from other
accounts: opening it, and reading, writing, touching and removing its files.

The folder is opened once (``open_folder``), without following a link at
any step, and only when it and every folder above it are as OpenSSH wants
a secure path: the user's or root's, writable by no one else (a sticky
folder such as /tmp is allowed above it). Every function after that takes
the open folder's descriptor as its first argument and works relative to
it, so swapping a name on the way cannot hand the job another folder:

- ``read`` gives the bytes of a file only when it is a regular file this
  user wrote there (owner, mode, one link) and not too large;
- ``write`` writes a file whole or not at all (a temporary file, then a
  rename): a concurrent job reads the old file or the new one, never half
  of one;
- ``prune`` removes the files not used for a month, at most once a day;
- ``hold`` and ``wait_unheld``: a job that has ended and still keeps its
  records holds a lock file, which the next job's look-up waits on.

These functions know nothing of what the files hold (bytes in, bytes out);
``_entries`` names the files and checks their content.
"""

import errno
import fcntl
import os
import secrets
import stat
import time

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError

# entries not read or written for this long go (at most once a day, by STAMP)
MAX_AGE = 30 * 24 * 3600
PRUNE_EVERY = 24 * 3600
STAMP = '.pruned'
# held (shared) by the process of a job that has ended while it still keeps
# records (reuse across commits); a look-up waits until no one holds it
RECORDING = '.recording'
TMP_PREFIX = '.tmp-'
# the ending of every file name in the folder: each holds one JSON document
SUFFIX = '.json'

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeFolder(NixdeployError):
    """The cache folder, or a folder above it, could be swapped by another
    account."""


def open_folder(folder):
    """An open descriptor of ``folder`` (made 0700 where missing), reached
    without following a link at any step, each folder above it checked as
    OpenSSH checks a secure path (owned by the user or root, writable by no
    one else, except a sticky folder: there no one else can rename or
    replace what the user made), and ``folder`` itself the user's own and
    writable by no one else. The folders above it are resolved once first
    (a home behind a link); a link swapped in after that fails the walk."""
    folder = os.path.abspath(folder)
    parent = _resolved(os.path.dirname(folder))
    parts = [p for p in parent.split('/') if p] + [os.path.basename(folder)]
    uid = os.geteuid()
    fd = os.open('/', _DIR_FLAGS)
    where, part = '/', ''
    try:
        for part in parts:
            info = os.fstat(fd)
            if info.st_uid not in (0, uid) or (
                    info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX):
                raise UnsafeFolder('%s is writable by another account (a shared folder above '
                                   'the cache needs the sticky bit, as /tmp has: chmod +t %s)'
                                   % (where, where))
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                try:
                    os.mkdir(part, 0o700, dir_fd=fd)
                except FileExistsError:
                    pass
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
            where = os.path.join(where, part)
        info = os.fstat(fd)
        if info.st_uid != uid or info.st_mode & 0o022:
            raise UnsafeFolder('%s is not this user\'s own, or others may write it' % where)
        if info.st_mode & 0o077:
            # the user's own: nobody else reads its keys either
            os.fchmod(fd, 0o700)
        return fd
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafeFolder('%s is a link or no folder (a link is never followed)'
                               % os.path.join(where, part))
        raise UnsafeFolder('%s: %s' % (os.path.join(where, part), exc.strerror or exc))
    except UnsafeFolder:
        os.close(fd)
        raise


def _resolved(path):
    """``path`` with its links resolved one by one, each link owned by the
    user or root (a link another account made is not followed: the kernel's
    protected_symlinks does not guard a readlink)."""
    uid = os.geteuid()
    done, todo, hops = '/', [p for p in path.split('/') if p], 0
    while todo:
        part = todo.pop(0)
        if part in ('', '.'):
            continue
        if part == '..':
            done = os.path.dirname(done)
            continue
        here = os.path.join(done, part)
        try:
            info = os.lstat(here)
        except FileNotFoundError:
            return os.path.join(here, *todo)
        except OSError as exc:
            raise UnsafeFolder('%s: %s' % (here, exc.strerror or exc))
        if not stat.S_ISLNK(info.st_mode):
            done = here
            continue
        hops += 1
        if info.st_uid not in (0, uid) or hops > 40:
            raise UnsafeFolder('%s is a link another account made' % here)
        target = os.readlink(here)
        if target.startswith('/'):
            done = '/'
        todo = [p for p in target.split('/') if p] + todo
    return done


def read(fd, name, limit, remove=True):
    """The bytes of file ``name`` in the open folder ``fd``, or None: only a
    regular file this user wrote there (owner, mode, one link) of at most
    ``limit`` bytes; a file of another kind goes (``remove``)."""
    try:
        file_fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    except OSError:
        return None
    try:
        info = os.fstat(file_fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid() \
                or info.st_mode & 0o022 or info.st_nlink > 1:
            # not a file this user wrote here (planted while the folder
            # was not safe, or hard-linked in; a file replaced since it
            # was opened has no link left and is read as it was): gone, a miss
            if remove:
                unlink(fd, name)
            return None
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(file_fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        raw = b''.join(chunks)
    except OSError:
        return None
    finally:
        os.close(file_fd)
    if len(raw) > limit:
        return None
    return raw


def write(fd, name, raw):
    """Write the bytes ``raw`` to file ``name`` in the open folder ``fd``
    (0600), whole or not at all: a temporary file, synced, then renamed
    over ``name``. False when the file system refused."""
    tmp = '%s%s%s' % (TMP_PREFIX, secrets.token_hex(8), SUFFIX)
    try:
        file_fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                          | os.O_CLOEXEC, 0o600, dir_fd=fd)
    except OSError:
        return False
    try:
        with os.fdopen(file_fd, 'wb') as out:
            out.write(raw)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
        return True
    except OSError:
        unlink(fd, tmp)
        return False


def present(fd, name):
    """Whether something is at ``name`` in the open folder ``fd``: anything
    but a sure "no such file" counts as there."""
    try:
        os.lstat(name, dir_fd=fd)
    except FileNotFoundError:
        return False
    except OSError:
        pass
    return True


def touch(fd, name, now):
    """Set the times of file ``name`` in the open folder ``fd`` to ``now``,
    so that ``prune`` keeps a file in use; a failure is ignored."""
    try:
        os.utime(name, (now, now), dir_fd=fd, follow_symlinks=False)
    except OSError:
        pass


def unlink(fd, name):
    """Remove file ``name`` from the open folder ``fd``; a failure is ignored."""
    try:
        os.unlink(name, dir_fd=fd)
    except OSError:
        pass


def prune(fd, now, is_entry):
    """Remove from the open folder ``fd`` the files ``is_entry`` (a function
    of a file name) accepts that were not used for MAX_AGE, and the
    temporary files a killed writer left, at most once every PRUNE_EVERY
    (the time of the STAMP file); True when it looked."""
    try:
        if now - os.stat(STAMP, dir_fd=fd, follow_symlinks=False).st_mtime < PRUNE_EVERY:
            return False
    except OSError:
        pass
    try:
        os.close(os.open(STAMP, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=fd))
        os.utime(STAMP, (now, now), dir_fd=fd, follow_symlinks=False)
        names = os.listdir(fd)
    except OSError:
        return False
    for name in names:
        if name.startswith(TMP_PREFIX):
            limit = PRUNE_EVERY
        elif is_entry(name):
            limit = MAX_AGE
        else:
            continue
        try:
            if now - os.stat(name, dir_fd=fd, follow_symlinks=False).st_mtime > limit:
                unlink(fd, name)
        except OSError:
            pass
    return True


def _lock_file(fd, name):
    return os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                   dir_fd=fd)


def hold(fd, name):
    """Hold a shared lock on file ``name`` of the open folder ``fd`` until
    this process ends (its descriptor stays open); False when it could not."""
    try:
        lock_fd = _lock_file(fd, name)
    except OSError:
        return False
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        os.close(lock_fd)
        return False
    return True


def wait_unheld(fd, name, bound):
    """Wait until no process holds file ``name`` of the open folder ``fd``,
    for at most ``bound`` seconds: True when no one held it by then."""
    try:
        lock_fd = _lock_file(fd, name)
    except OSError:
        return True
    deadline = time.monotonic() + bound
    try:
        while True:
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except OSError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.1)
    finally:
        # closing the descriptor drops a lock taken on it
        os.close(lock_fd)
