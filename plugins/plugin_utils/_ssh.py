# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ssh master of Ansible's ssh connection to a host: where its control
socket is (nix copy rides it), and closing it so that the next command logs
in anew (nix_activate's confirmation)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess

from ansible.utils.path import unfrackpath

STOP_TIMEOUT = 10


def ssh_master(connection):
    """The control socket of Ansible's ssh connection to this host (its
    ControlPersist master, open after a command ran over it), or None: no
    ControlPersist, a ControlPath of the user's own in ssh_args, paramiko."""
    path = getattr(connection, 'control_path', None)
    if not path or not getattr(connection, '_persistent', False):
        return None
    try:
        path = path % {'directory': unfrackpath(connection.control_path_dir)}
    except (TypeError, ValueError, KeyError):
        return None
    return path if os.path.exists(path) else None


def drop_master(connection):
    """Make the next command over ``connection`` a new login.

    Ansible's ssh ``reset()`` runs two ssh processes (``-O check``, then
    ``-O stop``); this runs one ``-O stop`` over the master's own socket, or
    none when no master is open, then closes the connection object. Any other
    connection (or an ssh one without a master of Ansible's) gets its own
    ``reset()``."""
    persistent = getattr(connection, '_persistent', False) and \
        getattr(connection, 'control_path', None)
    if not persistent:
        connection.reset()
        return
    socket = ssh_master(connection)
    if socket:
        try:
            ssh = connection.get_option('ssh_executable') or 'ssh'
        except KeyError:
            ssh = 'ssh'
        # -O goes to the master over its socket: the host name is not used
        subprocess.run([ssh, '-o', 'ControlPath=%s' % socket, '-O', 'stop', 'nixdeploy-master'],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=STOP_TIMEOUT, check=False)
    connection.close()
