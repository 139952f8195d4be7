# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where each host is reached for the rest of the run: the address the
login probe (``_probe.reach``) found and the ``HostKeyAlias`` it is reached
with there, kept as one small file a host in the run's Ansible temp folder;
every later task of the collection points its connection there
(``use_reached``), and the batch's work for other hosts (the cascade)
reaches the host there (``reached``)."""

import hashlib
import os
import shlex

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _run_files
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._ansible_core import (
    play_context_of)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import write_atomic
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._folders import private_folder
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _host_identity


def _reached_path(base_dir, name):
    digest = hashlib.sha256(name.encode('utf-8')).hexdigest()[:32]
    return os.path.join(base_dir, _run_files.REACHED_FOLDER, digest)


def keep_reached(base_dir, name, address, alias=None):
    """Keep ``address`` as where host ``name`` is reached for the rest of
    the run, and ``alias``, the ``HostKeyAlias`` it is reached with there
    (a fallback address's; one small file, a line each; atomic)."""
    path = _reached_path(base_dir, name)
    private_folder(os.path.dirname(path))
    write_atomic(path, '%s\n%s\n' % (address, alias or ''))


def reached_as(base_dir, name):
    """(address, alias) the probe found for host ``name`` this run, (None,
    None) when it did not run, has not answered yet, or reached it
    nowhere; alias None at its own address."""
    try:
        with open(_reached_path(base_dir, name)) as handle:
            lines = handle.read().splitlines()
    except (IOError, OSError):
        return None, None
    address = lines[0].strip() if lines else ''
    alias = lines[1].strip() if len(lines) > 1 and address else ''
    return address or None, alias or None


def reached(base_dir, name):
    """The address the probe found for host ``name`` this run, or None."""
    return reached_as(base_dir, name)[0]


def use_reached(connection, address, alias=None):
    """Point Ansible's ``connection`` (and its play context) at ``address``:
    every program the task runs over it goes there; with ``alias`` (a
    fallback address) only where the host's own key answers, which is
    kept on the connection for the task's own ssh and Nix's."""
    try:
        connection.set_option('host', address)
    except KeyError:
        pass
    play_context = play_context_of(connection)
    if play_context is not None:
        play_context.remote_addr = address
    if alias and getattr(connection, _host_identity.ALIAS, None) != alias:
        _prove_at(connection, alias)


def _prove_at(connection, alias):
    """Put the options that prove the host first in the ssh_args of
    Ansible's ssh ``connection`` (ssh keeps the first value: they win over
    the job's StrictHostKeyChecking, Ansible's host_key_checking among
    them)."""
    try:
        ssh_args = connection.get_option('ssh_args') or ''
    except KeyError:
        ssh_args = None
    if ssh_args is not None:
        proven = ' '.join(shlex.quote(w) for w in _host_identity.fallback_options(alias))
        connection.set_option('ssh_args', ('%s %s' % (proven, ssh_args)).strip())
    setattr(connection, _host_identity.ALIAS, alias)
