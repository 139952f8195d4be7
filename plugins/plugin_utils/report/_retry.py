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

import os
import re
import stat

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import write_atomic
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._printable import printable


# a name -l @file reads as that host alone: a line is a host pattern there,
# where *, ~, !, &, : and , select other hosts (a flake may name a node so)
PLAIN_NAME = re.compile(r'(?!(all|ungrouped)\Z)[A-Za-z0-9_][A-Za-z0-9_.-]*\Z')


def _listed(path):
    """The names the file lists; OSError when ``path`` is there but no
    regular file (a link would have the run read, then rewrite, whatever
    it points at: a clone's, a shared folder's)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return []
    if not stat.S_ISREG(mode):
        raise OSError('%s is not a regular file: neither read nor written' % path)
    with open(path) as handle:
        return [line.strip() for line in handle if PLAIN_NAME.match(line.strip())]


def update(path, unreached, reached):
    """Rewrite the file at ``path``: its hosts minus ``reached``, plus
    ``unreached`` (host -> why); the hosts it lists now. A name that -l
    would read as more than one host is left out (the closing line still
    names it)."""
    names = [name for name in _listed(path) if name not in reached and name not in unreached]
    names += sorted(name for name in unreached if PLAIN_NAME.match(name))
    if not names:
        if os.path.exists(path):
            os.remove(path)
        return []
    write_atomic(path, ''.join('%s\n' % name for name in names), 0o644)
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
