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

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import write_atomic
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._printable import printable


def _listed(path):
    try:
        with open(path) as handle:
            return [line.strip() for line in handle if line.strip()]
    except (IOError, OSError):
        return []


def update(path, unreached, reached):
    """Rewrite the file at ``path``: its hosts minus ``reached``, plus
    ``unreached`` (host -> why); the hosts it lists now."""
    names = [name for name in _listed(path) if name not in reached and name not in unreached]
    names += sorted(unreached)
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
