# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ssh master of Ansible's ssh connection to a host: where its control
socket is (nix copy rides it), and closing it so that the next command logs
in anew (nix_activate's confirmation); and whether that connection checks
the host's key (the action base asks before anything touches a host:
``connection_problems``; the cascade for the batch's other hosts:
``peer_problems``)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import subprocess

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.utils.path import unfrackpath

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _host_keys, _store

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


# ------------------------------------------------------------ host keys
SSH_TRANSPORTS = ('ssh',)
PARAMIKO_TRANSPORTS = ('paramiko', 'paramiko_ssh')
# why ssh checks no host key, when Ansible's own option turns it off
HKC_OFF = ("Ansible's host_key_checking is off for it: ANSIBLE_HOST_KEY_CHECKING=False, which "
           "ansible-runner, AWX and ansible-navigator put into every job's environment (it beats "
           "ansible.cfg), or host_key_checking = False in ansible.cfg, gives its ssh "
           "-o StrictHostKeyChecking=no")
PARAMIKO_OFF = "the paramiko connection's host_key_checking is off for it"
FIX = ("set ansible_host_key_checking: true for it in the inventory (group_vars/all.yml: a host "
       "variable beats ANSIBLE_HOST_KEY_CHECKING=False in the environment)")
OPT_OUT = 'nix_host_key_unchecked'


def transport_of(connection):
    """The connection plugin's short name (ssh, paramiko_ssh, local...)."""
    name = getattr(connection, 'transport', None) or getattr(connection, '_load_name', '') or ''
    return str(name).rsplit('.', maxsplit=1)[-1]


def uses_ssh(transport):
    return transport in SSH_TRANSPORTS + PARAMIKO_TRANSPORTS


def _words(value):
    return _store.split_ssh_args(value) if value not in (None, '') else []


def judge(transport, checking, ssh_args, common_args, extra_args, host, port=None, user=None,
          ssh='ssh'):
    """What keeps ssh from checking ``host``'s key when Ansible connects
    with these settings (its connection's options), as phrases; [] when it
    is checked. ``ssh -G`` is asked with the arguments in the order
    Ansible's ssh gives them (ssh keeps the first value), without the
    StrictHostKeyChecking=no that host_key_checking false adds after
    ``ssh_args``: that one is said apart, with its own fix."""
    problems = []
    checking = True if checking in (None, '') else boolean(checking, strict=False)
    if transport in PARAMIKO_TRANSPORTS:
        if checking is False:
            problems.append(PARAMIKO_OFF)
        ssh_args = []  # paramiko has none; nix copy's own ssh takes the others
    elif checking is False and 'stricthostkeychecking' not in _host_keys.parse_args(ssh_args)[0]:
        problems.append(HKC_OFF)
    argv = [ssh or 'ssh', '-G'] + list(ssh_args)
    if port not in (None, ''):
        argv += ['-o', 'Port=%s' % port]
    if user:
        argv += ['-o', 'User=%s' % user]
    argv += list(common_args) + list(extra_args) + ['--', u'%s' % host]
    for problem in _host_keys.config_problems(argv):
        problems.append(problem if problem.startswith('`') else
                        'its ssh settings (arguments and ssh config files, as `ssh -G` reads '
                        'them) give %s' % problem)
    return problems


def _option(connection, name):
    try:
        return connection.get_option(name)
    except (KeyError, AnsibleError):
        return None


def connection_problems(connection):
    """judge() for this task's connection (its options hold ansible.cfg,
    the environment and the host's variables merged, as Ansible's ssh
    uses them); None for a connection without ssh (local: no host key)."""
    transport = transport_of(connection)
    if not uses_ssh(transport):
        return None
    pc = getattr(connection, '_play_context', None)
    return judge(transport, _option(connection, 'host_key_checking'),
                 _words(_option(connection, 'ssh_args')) if transport in SSH_TRANSPORTS else [],
                 _words(_option(connection, 'ssh_common_args')),
                 _words(_option(connection, 'ssh_extra_args')),
                 _option(connection, 'host') or _option(connection, 'remote_addr')
                 or getattr(pc, 'remote_addr', None) or '',
                 port=_option(connection, 'port'), user=_option(connection, 'remote_user'),
                 ssh=_option(connection, 'ssh_executable') or 'ssh')


def peer_problems(connection, hostvars, target):
    """judge() for another host of the batch (``target``: its Target, from
    its variables) as its own task will judge it: None when that cannot be
    told (its connection is not this one's kind, a templated setting)."""
    transport = str(hostvars.get('ansible_connection') or transport_of(connection)).rsplit('.', 1)[-1]
    if transport != transport_of(connection) or not uses_ssh(transport):
        return None
    values = {}
    for name in ('host_key_checking', 'ssh_args'):
        try:
            values[name] = C.config.get_config_value(
                name, plugin_type='connection', plugin_name=transport, variables=hostvars)
        except (KeyError, AnsibleError):
            return None  # cannot be told: left out (never taken as checked)
        if '{{' in u'%s' % values[name]:
            return None
    return judge(transport, values['host_key_checking'], _words(values['ssh_args'])
                 if transport in SSH_TRANSPORTS else [], target.common_args, target.extra_args,
                 target.host, port=target.port, user=target.user,
                 ssh=_option(connection, 'ssh_executable') or 'ssh')


def peer_checked(connection, hostvars, target):
    """Whether the cascade may send to another host of the batch: ssh
    checks its key. Any other host is left out: its own task refuses it, or
    (its opt-out) pushes to it after its own judgement."""
    return peer_problems(connection, hostvars, target) == []


def refusal(host, problems, what):
    """The failure of a host whose key ssh would not check (``what``: what
    was not done, e.g. 'nothing was copied')."""
    fixes = [FIX] if HKC_OFF in problems or PARAMIKO_OFF in problems else []
    if len(fixes) < len(problems):
        fixes.append('make its ssh check the key (StrictHostKeyChecking yes, ask or accept-new, '
                     'and a known_hosts file that holds it)')
    return ('%s: refused: ssh would not check the host key of %s (%s); %s. To check it, %s. '
            'To deploy it with its key unchecked (anyone on the way could pose as it), set %s: '
            'true for it: its results then say host_key_unchecked: true'
            % (host, host, '; '.join(problems), what, ' and '.join(fixes), OPT_OUT))


def unchecked_warning(host, problems):
    return ('%s: the host key is NOT checked (%s): %s is true for it, so it is deployed anyway; '
            'anyone on the way can pose as it' % (host, '; '.join(problems), OPT_OUT))
