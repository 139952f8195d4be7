# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Whether a task's connection checks the host's key (the action base asks
before anything touches a host: ``connection_problems``; the cascade for the
batch's other hosts: ``peer_problems``), and the ssh master that connection
rides: one of the collection's own per judgement (``own_master``), where its
socket is (nix copy rides it: ``ssh_master``) and closing it so that the next
command logs in anew (nix_activate's confirmation: ``drop_master``)."""

import hashlib
import json
import os
import re
import shlex
import subprocess
import textwrap

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.utils.path import makedirs_safe, unfrackpath

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._ansible_core import (
    load_name, play_context_of, ssh_persistent)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import (
    _host, _host_key_rules, _host_ssh)

STOP_TIMEOUT = 10

# ------------------------------------------------------------ transports
# ansible-core's own connection plugins, by the full name the plugin loader
# resolved (a connection's ``ansible_name``): the only ones whose host key
# checking the judge can read (2.21 has no paramiko_ssh any more). Any other
# plugin (community.docker.docker, kubectl, ansible.netcommon.*, mitogen, a
# connection_plugins/ssh.py of the playbook's own) is unknown, and unknown
# counts as unchecked: a plugin called ssh that is not ansible-core's may
# check nothing.
SSH, PARAMIKO, LOCAL = 'ssh', 'paramiko_ssh', 'local'
_BUILTIN = {'ansible.builtin.ssh': SSH, 'ansible.builtin.paramiko_ssh': PARAMIKO,
            'ansible.builtin.local': LOCAL}
# the short names of ansible_connection and of a plugin's ``transport``
_SHORT = {'ssh': SSH, 'paramiko': PARAMIKO, 'paramiko_ssh': PARAMIKO, 'local': LOCAL}
SSH_TRANSPORTS = (SSH,)
PARAMIKO_TRANSPORTS = (PARAMIKO,)


def transport_name(name):
    """ssh, paramiko_ssh or local for ansible-core's own plugins (by any of
    their names); any other name as it is."""
    text = u'%s' % (name or '')
    return _BUILTIN.get(text) or _SHORT.get(text) or text


def transport_of(connection):
    """The connection's kind: ssh, paramiko_ssh, local, or the full name of
    any other plugin. The name the plugin loader resolved decides, not the
    plugin's ``transport``: ansible-core's own resolve to ansible.builtin.*
    (by any name they are asked for), a playbook's own
    connection_plugins/ssh.py to a bare ``ssh``, which is not core's."""
    resolved = u'%s' % (getattr(connection, 'ansible_name', None) or '')
    if resolved:
        return _BUILTIN.get(resolved) or (
            resolved if '.' in resolved else 'ansible.legacy.%s' % resolved)
    return transport_name(getattr(connection, 'transport', None)
                          or load_name(connection))


def uses_ssh(transport):
    return transport in SSH_TRANSPORTS + PARAMIKO_TRANSPORTS


# ------------------------------------------------------------ host keys
# why ssh checks no host key, when Ansible's own option turns it off
HKC_OFF = ("Ansible's host_key_checking is off for it: ANSIBLE_HOST_KEY_CHECKING=False, which "
           "ansible-runner, AWX and ansible-navigator put into every job's environment (it beats "
           "ansible.cfg), or host_key_checking = False in ansible.cfg, gives its ssh "
           "-o StrictHostKeyChecking=no")
PARAMIKO_OFF = "the paramiko connection's host_key_checking is off for it"
# paramiko reads ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts only (no
# ssh_common_args): a new container, an AWX job, starts without either
PARAMIKO_AUTO_ADD = ("the paramiko connection's host_key_auto_add is on for it "
                     "(ANSIBLE_PARAMIKO_HOST_KEY_AUTO_ADD, or host_key_auto_add in "
                     "[paramiko_connection] of ansible.cfg): paramiko takes the key of any host "
                     "that ~/.ssh/known_hosts and /etc/ssh/ssh_known_hosts do not hold")
_UNKNOWN = (" is neither ansible-core's ssh nor its paramiko, the only ones whose host key "
            "checking the collection can tell: it counts as unchecked")
UNKNOWN = 'its connection %s' + _UNKNOWN
FIX = ("set ansible_host_key_checking: true for it in the inventory (group_vars/all.yml: a host "
       "variable beats ANSIBLE_HOST_KEY_CHECKING=False in the environment)")
_FIXES = {HKC_OFF: FIX, PARAMIKO_OFF: FIX,
          PARAMIKO_AUTO_ADD: 'turn host_key_auto_add off for it (or connect with ssh)'}
SSH_FIX = ('make its ssh check the key (StrictHostKeyChecking yes, ask or accept-new, and a '
           'known_hosts file that holds it)')
UNKNOWN_FIX = ('connect to it with ansible.builtin.ssh (when its own connection has a trust of '
               'its own, such as a container on this machine, opt out as below)')
OPT_OUT = 'nix_host_key_unchecked'


def _words(value):
    return _host_ssh.split_ssh_args(value) if value not in (None, '') else []


def _flag(value, default):
    return default if value in (None, '') else boolean(value, strict=False)


def judge_argv(ssh_args, common_args, extra_args, host, port=None, user=None, ssh='ssh'):
    """``ssh -G`` for the options in the order Ansible's ssh gives them (ssh
    keeps the first value of an option)."""
    options = list(ssh_args)
    if port not in (None, ''):
        options += ['-o', 'Port=%s' % port]
    if user:
        options += ['-o', 'User=%s' % user]
    return _host_ssh.ssh_argv(options + list(common_args) + list(extra_args), u'%s' % host,
                              ssh=ssh, show_config=True, end_options=True)


def judge(transport, checking, ssh_args, common_args, extra_args, host, port=None, user=None,
          ssh='ssh', auto_add=None):
    """What keeps ssh from checking ``host``'s key when Ansible connects
    with these settings (its connection's options), as phrases; [] when it
    is checked. ``ssh -G`` is asked without the StrictHostKeyChecking=no
    that host_key_checking false adds after ``ssh_args``: that one is said
    apart, with its own fix. paramiko: its own two options (``auto_add``:
    host_key_auto_add); the ``ssh -G`` part is then nix copy's own ssh."""
    problems = []
    checking = _flag(checking, True)
    if transport in PARAMIKO_TRANSPORTS:
        if checking is False:
            problems.append(PARAMIKO_OFF)
        elif _flag(auto_add, False):
            problems.append(PARAMIKO_AUTO_ADD)
        ssh_args = []  # paramiko has none
    elif checking is False and 'stricthostkeychecking' not in _host_key_rules.parse_args(ssh_args)[0]:
        problems.append(HKC_OFF)
    argv = judge_argv(ssh_args, common_args, extra_args, host, port, user, ssh)
    for problem in _host_key_rules.config_problems(argv):
        problems.append(problem if problem.startswith('`') else
                        'its ssh settings (arguments and ssh config files, as `ssh -G` reads '
                        'them) give %s' % problem)
    return problems


def _option(connection, name):
    try:
        return connection.get_option(name)
    except (KeyError, AnsibleError):
        return None


def _settings(connection, transport):
    """judge()'s arguments from the connection's options (ansible.cfg, the
    environment and the host's variables merged, as Ansible uses them)."""
    pc = play_context_of(connection)
    return dict(
        checking=_option(connection, 'host_key_checking'),
        ssh_args=_words(_ssh_args(connection)) if transport in SSH_TRANSPORTS else [],
        common_args=_words(_option(connection, 'ssh_common_args')),
        extra_args=_words(_option(connection, 'ssh_extra_args')),
        host=_option(connection, 'host') or _option(connection, 'remote_addr')
        or getattr(pc, 'remote_addr', None) or '',
        port=_option(connection, 'port'), user=_option(connection, 'remote_user'),
        ssh=_option(connection, 'ssh_executable') or 'ssh',
        auto_add=_option(connection, 'host_key_auto_add')
        if transport in PARAMIKO_TRANSPORTS else None)


def connection_problems(connection):
    """judge() for this task's connection; None for ``local`` (the
    controller itself: no host key), and for a plugin the judge does not
    know the one problem that names it."""
    transport = transport_of(connection)
    if transport == LOCAL:
        return None
    if not uses_ssh(transport):
        return [UNKNOWN % (transport or 'without a name')]
    return judge(transport, **_settings(connection, transport))


def peer_problems(connection, hostvars, target):
    """judge() for another host of the batch (``target``: its Host, from
    its variables) as its own task will judge it: None when that cannot be
    told (its connection is not this one's kind, a templated setting)."""
    transport = transport_name(hostvars.get('ansible_connection')) or transport_of(connection)
    if transport != transport_of(connection) or not uses_ssh(transport):
        return None
    names = ('host_key_checking', 'ssh_args') if transport in SSH_TRANSPORTS else (
        'host_key_checking', 'host_key_auto_add')
    values = {}
    for name in names:
        try:
            values[name] = C.config.get_config_value(
                name, plugin_type='connection', plugin_name=transport, variables=hostvars)
        except (KeyError, AnsibleError):
            return None  # cannot be told: left out (never taken as checked)
        if '{{' in u'%s' % values[name]:
            return None
    return judge(transport, values['host_key_checking'], _words(values.get('ssh_args')),
                 target.common_args, target.extra_args, target.address, port=target.port,
                 user=target.user, ssh=_option(connection, 'ssh_executable') or 'ssh',
                 auto_add=values.get('host_key_auto_add'))


def peer_checked(connection, hostvars, target):
    """Whether the cascade may send to another host of the batch: ssh
    checks its key. Any other host is left out: its own task refuses it, or
    (its opt-out) pushes to it after its own judgement."""
    return peer_problems(connection, hostvars, target) == []


def refusal(host, problems, what):
    """The failure of a host whose key is not checked (``what``: what was
    not done, e.g. 'nothing was copied'): the cause on its first line (short,
    what a summary shows), then each reason, the opt-out and the fix on a
    line of its own (the fix last: a summary shows the first and the last
    line of a message)."""
    unknown = [p for p in problems if p.endswith(_UNKNOWN)]
    fixes = []
    for problem in problems:
        fix = _FIXES.get(problem) or (UNKNOWN_FIX if problem in unknown else SSH_FIX)
        if fix not in fixes:
            fixes.append(fix)
    lead = ('nothing tells that the host key of %s is checked' if unknown else
            'ssh would not check the host key of %s') % host
    lines = ['%s: refused: %s; %s' % (host, lead, what)]
    for problem in problems:
        # a long reason in lines of a terminal's width (it is never the last line)
        lines += textwrap.wrap('why: %s' % problem, width=98, initial_indent='  ',
                               subsequent_indent='    ', break_long_words=False,
                               break_on_hyphens=False)
    lines.append('  to deploy it with its key unchecked (anyone on the way could pose as it): '
                 'set %s: true for it; its results then say host_key_unchecked: true' % OPT_OUT)
    lines.append('  to check it: %s' % ' and '.join(fixes))
    return '\n'.join(lines)


def unchecked_warning(host, problems):
    return ('%s: the host key is NOT checked (%s): %s is true for it, so it is deployed anyway; '
            'anyone on the way can pose as it' % (host, '; '.join(problems), OPT_OUT))


# ------------------------------------------------------------ masters
# ssh checks the host key when a master logs in, never when a command rides
# it. Ansible's ssh names its master by host, port and user alone
# (~/.ansible/cp/<hash>), so a master that an earlier play of the job opened
# with checking off (or an earlier run within its ControlPersist, or a
# ControlPath of the user's ssh config) would carry a later play's programs
# and nix copy to a host whose key was never checked. So once a task has
# judged its host, its connection gets FIRST in its ssh_args (ssh keeps the
# first value) a ControlPath of the collection's own, named by a digest of the
# run (Ansible's per-run local temp dir), the judged ssh settings and the
# judgement: only a task of this run judged the same way opens or rides a
# master there. The copy, the keys and the activation of a host still share
# one login (docs/concepts.md); a master that anything else opened is not
# ridden (one more login per host in a job that reached the hosts before).
_OWN = '_nixdeploy_own_master'


def _ssh_args(connection):
    """The connection's ssh_args as the job set them (without our ControlPath)."""
    value = _option(connection, 'ssh_args')
    master = getattr(connection, _OWN, None)
    return master['original'] if master and value == master['value'] else value


def judged(connection, problems):
    """Keep a task's judgement on its connection (``problems``: [] when the
    key is checked; else the host's opt-out let it go on): the task's Host
    reads it there (plugin_utils/host/_host.py JUDGED), and the connection gets
    the ssh master of that judgement (own_master)."""
    setattr(connection, _host.JUDGED, bool(problems))
    own_master(connection, problems)


def own_master(connection, problems):
    """Point the ssh connection of a judged task (``problems``: its
    judgement, [] when checked) at the master of its judgement; its path
    (None: another transport, multiplexing off, or no folder for it)."""
    if transport_of(connection) not in SSH_TRANSPORTS:
        return None
    settings = _settings(connection, SSH)
    original = _ssh_args(connection)
    words = _words(original) + settings['common_args'] + settings['extra_args']
    if (_host_key_rules.parse_args(words)[0].get('controlpath') or [''])[0].lower() == 'none':
        return None  # the user turned multiplexing off: nothing to ride
    key = json.dumps([C.DEFAULT_LOCAL_TMP, _flag(settings['checking'], True), problems,
                      judge_argv(settings['ssh_args'], settings['common_args'],
                                 settings['extra_args'], settings['host'], settings['port'],
                                 settings['user'], settings['ssh'])], default=str)
    try:
        folder = unfrackpath(_option(connection, 'control_path_dir') or '~/.ansible/cp')
        makedirs_safe(folder, 0o700)
        # as long as Ansible's own name: a socket path is short (about 100 bytes)
        path = os.path.join(folder, hashlib.sha256(key.encode('utf-8')).hexdigest()[:10])
    except (OSError, AnsibleError):
        path = None  # no master at all rather than one of Ansible's
    # ssh expands % in ControlPath
    setting = '-o %s' % shlex.quote(
        'ControlPath=%s' % (path.replace('%', '%%') if path else 'none'))
    value = setting + (' ' + original if original else '')
    connection.set_option('ssh_args', value)
    setattr(connection, _OWN, {'path': path, 'value': value, 'original': original})
    return path


def ssh_master(connection):
    """The control socket of the master this task's ssh connection opened
    or rides (own_master), when one is open; None otherwise (not judged,
    no master, paramiko): nix copy then logs in by itself."""
    master = getattr(connection, _OWN, None)
    path = master and master['path']
    return path if path and os.path.exists(path) else None


def _stop(connection, socket):
    try:
        ssh = connection.get_option('ssh_executable') or 'ssh'
    except KeyError:
        ssh = 'ssh'
    # -O goes to the master over its socket: the host name is not used
    subprocess.run(_host_ssh.ssh_argv(['-o', 'ControlPath=%s' % socket.replace('%', '%%'),
                                       '-O', 'stop'], 'nixdeploy-master', ssh=ssh),
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=STOP_TIMEOUT, check=False)


def drop_master(connection):
    """Make the next command over ``connection`` a new login.

    Ansible's ssh ``reset()`` runs two ssh processes (``-O check``, then
    ``-O stop``); this runs one ``-O stop`` over the master's own socket
    (own_master's, else Ansible's), or none when no master is open, then
    closes the connection object. Any other connection (or an ssh one
    without a master of Ansible's) gets its own ``reset()``."""
    if getattr(connection, _OWN, None) is not None:
        socket = ssh_master(connection)
    elif ssh_persistent(connection) and getattr(connection, 'control_path', None):
        socket = _ansible_master(connection)
    else:
        connection.reset()
        return
    if socket:
        _stop(connection, socket)
    connection.close()


def _ansible_master(connection):
    """The socket of Ansible's own master (a connection no task judged)."""
    try:
        path = connection.control_path % {'directory': unfrackpath(connection.control_path_dir)}
    except (TypeError, ValueError, KeyError):
        return None
    return path if os.path.exists(path) else None


def probe_master(connection, problems=None):
    """The ssh arguments that open the master a task of this host would
    open after its judgement (its judged ControlPath, then the job's
    ssh_args: ControlPersist, compression ...), for the login probe to open
    it first: the copy, keys and activation then ride it (no second login,
    and the master is the one Ansible would have made). Only for a host
    whose key ssh checks (an unchecked one is judged by its phases), and
    where the job's ssh_args keep masters (ControlPersist); else None.
    ``problems``: ``connection_problems`` when the caller has them."""
    if transport_of(connection) not in SSH_TRANSPORTS:
        return None
    if problems is None:
        problems = connection_problems(connection)
    if problems:
        return None
    # ssh keeps the first value of an option
    persist = re.findall(r'ControlPersist[= ]+(\S+)', u' '.join(_words(_ssh_args(connection))),
                         re.IGNORECASE)
    if not persist or persist[0].lower() in ('no', 'false'):
        return None
    setattr(connection, _host.JUDGED, False)
    path = own_master(connection, [])
    return _words(_option(connection, 'ssh_args')) if path else None
