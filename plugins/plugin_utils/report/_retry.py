# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The file of hosts the login probe could not reach, for ``-l @file``.

Ansible's retry files list a run's failed hosts; this one lists the hosts
that were off or out of reach, so that the next run can try just them
(``ansible-playbook deploy.yml -l @nixdeploy-unreachable.txt``). A run that
covers only some hosts (``-l web1``) must not forget the others: each run
adds the hosts it could not reach and takes out the ones it reached; what
it did not try stays. With no host left the file goes.
"""

import errno
import os
import re
import secrets
import stat

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._printable import printable


# a name -l @file reads as that host alone: a line is a host pattern there,
# where *, ~, !, &, : and , select other hosts (a flake may name a node so)
PLAIN_NAME = re.compile(r'(?!(all|ungrouped)\Z)[A-Za-z0-9_][A-Za-z0-9_.-]*\Z')
# the file's permissions: a list of host names, for the user's next -l
MODE = 0o644
# at most what a file of host names holds: a larger one is not the run's
MAX_BYTES = 1024 * 1024
CLOEXEC = getattr(os, 'O_CLOEXEC', 0)


class Refused(NixdeployError, OSError):
    """The path holds something other than a regular file of the user's own:
    neither read nor written, left as it is; the words say what it is."""


def _listed(path):
    """The names the file at ``path`` lists ([] when there is none). It is
    opened once, without following a link, and checked on that descriptor:
    a link there (planted before the run or swapped in while it reads, in a
    folder others can write) would have the run copy lines of whatever it
    points at into a file anyone can read. Refused: a link, a folder, a
    fifo (never waited on), a file of another user or with a second name."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | CLOEXEC)
    except FileNotFoundError:
        return []
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Refused('it is a symbolic link')
        raise
    with os.fdopen(fd, 'rb') as handle:
        _own_file(os.fstat(handle.fileno()))
        text = handle.read(MAX_BYTES).decode('utf-8', 'replace')
    return [line.strip() for line in text.splitlines() if PLAIN_NAME.match(line.strip())]


def _own_file(info):
    """Refuse ``info`` (an fstat) unless it is a regular file of this user
    with no other name: where the kernel lets anyone hard-link a file it
    cannot read, a private file of the user's linked into the folder would
    otherwise pass as the user's own list."""
    if not stat.S_ISREG(info.st_mode):
        raise Refused('it is not a regular file')
    if info.st_uid != os.geteuid():
        raise Refused('it belongs to another user (uid %d)' % info.st_uid)
    if info.st_nlink > 1:
        raise Refused('it has other names (hard links)')


def _write(path, text):
    """``text`` in a new file put at ``path`` by a rename in its folder: a
    reader sees the old list or the new one, and whatever the path held (a
    link swapped in since it was read) is replaced, never written through.
    The temp file is created anew (O_EXCL, no link followed) and given its
    permissions on its descriptor."""
    folder = os.path.dirname(path) or '.'
    tmp = None
    try:
        while tmp is None:
            name = os.path.join(folder, '.%s.%s' % (os.path.basename(path), secrets.token_hex(8)))
            try:
                fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                             CLOEXEC, 0o600)
            except FileExistsError:
                continue
            tmp = name
        with os.fdopen(fd, 'w') as handle:
            handle.write(text)
            os.fchmod(handle.fileno(), MODE)
        os.rename(tmp, path)
    except BaseException:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise


def update(path, unreached, reached):
    """Rewrite the file at ``path``: its hosts minus ``reached``, plus
    ``unreached`` (host -> why); the hosts it lists now. A name that -l
    would read as more than one host is left out (the closing line still
    names it). Refused (left alone) when ``path`` holds anything but a
    regular file of this user's."""
    names = [name for name in _listed(path) if name not in reached and name not in unreached]
    names += sorted(name for name in unreached if PLAIN_NAME.match(name))
    if not names:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
        return []
    _write(path, ''.join('%s\n' % name for name in names))
    return names


def line(unreached, path):
    """The closing words on unreachable hosts (None without any): each
    host with why, and how to try them again."""
    if not unreached:
        return None
    hosts = ', '.join(printable(name) for name in sorted(unreached))
    text = 'nixdeploy: %d unreachable (nothing was built or copied for %s): %s' % (
        len(unreached), 'it' if len(unreached) == 1 else 'them', hosts)
    if path:
        text += '; to try again: -l @%s' % path
    return text
