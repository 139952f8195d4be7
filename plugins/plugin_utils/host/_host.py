# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One target as the controller reaches it: the only way it does (``Host``).

A ``Host`` is built from the connection vars Ansible itself uses: from an
action's live connection (the task's own host, ``of_task``), another
inventory host's hostvars (``from_hostvars``) or a store URI
(``from_store_uri``), so one inventory drives Ansible's ssh, Nix's and ours.

Its two transports: a target program over Ansible's connection (``sh``, the
action's executor, with become) and plain ssh (``ssh_argv``/``ssh``: cascade
peers and hops, builders). Its ssh options are
computed in one place (``ssh_options``); ``_host_ssh.ssh_argv`` is the one
builder of an ssh argv in the collection, ``ssh -G`` included. Host key checking is
never turned off here: the user's own ssh args are passed on verbatim, ones
that turn it off are refused (``_host_ssh.check_secure``, by the rules of
plugin_utils/host/_host_key_rules.py) unless the action judged the host and its
opt-out let it go on (``JUDGED``), and our defaults only add timeouts and
BatchMode. Connection vars that make no such address raise ``AddressError``.
"""

import functools
import os
import re
import shlex
import threading
from urllib.parse import parse_qs, quote as _url_quote, urlsplit

from ansible import constants as C
from ansible.errors import AnsibleConnectionFailure

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._ansible_core import (
    load_name, play_context_of)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import (
    _diagnosis, _host_identity, _reached)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host_ssh import (
    DEFAULT_SSH_OPTIONS, NO_MASTER, AddressError, LoginRefused, NoAnswer, bare_address,
    check_secure, check_token, split_ssh_args, ssh_argv)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._peer_ssh import run_no_tty

# The time limit of a target program whose caller gives none (a probe, a key
# upload): a session over a link that died never ends by itself.
PROGRAM_TIMEOUT = 300


# the attribute that holds, on an action's connection, the host's opt-out as
# the action judged it (plugin_utils/task/_action.py judge_host_keys: the one
# place that reads nix_host_key_unchecked): true when its key is not checked
# and the opt-out lets the task go on
JUDGED = '_nixdeploy_host_key_unchecked'

# the connections whose host the controller's own ssh and Nix's can reach
SSH_CONNECTIONS = ('ssh', 'paramiko', 'paramiko_ssh')
# Where a host is reached, as Ansible's variables say it: each field of a
# Host and the variables that give it, first one first (Ansible's own
# names and their older aliases). The one list: another host's Host
# (from_hostvars) and the cascade's read it; a new way to reach a host is
# a row here (and nix_target_hosts, tried by the probe: _probe.py).
CONNECTION_VARS = (
    ('address', ('ansible_host', 'ansible_ssh_host')),
    ('port', ('ansible_port', 'ansible_ssh_port')),
    ('user', ('ansible_user', 'ansible_ssh_user', 'ansible_remote_user')),
    ('private_key_file', ('ansible_ssh_private_key_file', 'ansible_private_key_file')),
    ('common_args', ('ansible_ssh_common_args',)),
    ('extra_args', ('ansible_ssh_extra_args',)),
)
# every variable ``from_hostvars`` reads of a host (its name aside): what a
# batch's server is given of another host, never its whole hostvars
HOSTVARS_READ = tuple(name for _field, names in CONNECTION_VARS for name in names) + (
    'ansible_become', 'ansible_become_user', 'ansible_become_method')
# what of_task reads of the connection when first asked (require_ssh; its
# address is read without it: __getattr__)
_SSH_FIELDS = ('port', 'user', 'private_key_file', 'common_args', 'extra_args',
               'become', 'become_user', 'become_method', '_host_key_unchecked', '_judged_on')


class Host(object):
    """One target: where and how the controller reaches it."""

    # of_task: the action's executor (_low_level_execute_command) and what
    # runs before its first program (the action's host key judgement)
    connection = None
    _execute = None
    _before = None
    _pending = None
    # whether a program of ``sh`` ran on the host: a login refused after
    # that (a new system that refuses it) is a connection its callers retry
    _reached = False
    # at a fallback address: the name known_hosts holds the host's own key
    # under (plugin_utils/host/_host_identity.py); None at its ansible_host
    key_alias = None

    def __init__(self, address, port=None, user=None, private_key_file=None,
                 ssh_common_args=None, ssh_extra_args=None, become=False,
                 become_user=None, become_method=None, name=None, host_key_unchecked=False):
        if not address:
            raise AddressError('no host address for %s' % (name or 'target'))
        # where ssh logs in (ansible_host, else the inventory name)
        self.address = bare_address(str(address), name)
        self.port = int(port) if port not in (None, '') else None
        self.user = str(user) if user else None
        if self.user and not re.match(r'^[A-Za-z0-9_.][A-Za-z0-9_.\-$]*\Z', self.user):
            raise AddressError('%s: unsafe ssh user name %r' % (name or self.address, self.user))
        self.private_key_file = str(private_key_file) if private_key_file else None
        self.common_args = split_ssh_args(ssh_common_args)
        self.extra_args = split_ssh_args(ssh_extra_args)
        self.become = bool(become)
        self.become_user = become_user or 'root'
        self.become_method = become_method or 'sudo'
        self.name = name or self.address
        # the host's opt-out (nix_host_key_unchecked): its ssh options may
        # leave its key unchecked (the action judged and warned)
        self._host_key_unchecked = bool(host_key_unchecked)
        # from_connection: the connection whose judgement says it instead
        self._judged_on = None

    @property
    def host_key_unchecked(self):
        """Whether the host's ssh options may leave its key unchecked: as
        given, or as the action judged its connection, read when the options
        are made (nix_build makes its Host before its first program, where
        the host is judged); never before a judgement."""
        self.require_ssh()
        if self._judged_on is not None:
            return bool(getattr(self._judged_on, JUDGED, False))
        return self._host_key_unchecked

    # ------------------------------------------------------------ builders
    @classmethod
    def of_task(cls, connection, task_vars, execute, before=None):
        """A task's own host: its programs run over Ansible's ``connection``
        (``execute``: the action's ``_low_level_execute_command``; ``before``
        runs before each, the action's host key judgement). Its address is
        read from the connection when first asked (``require_ssh``): a
        connection the controller's ssh cannot take (local, docker) still
        runs programs."""
        target = cls.__new__(cls)
        target.connection, target._execute, target._before = connection, execute, before
        target._pending = dict(task_vars or {})
        target.name = target._pending.get('inventory_hostname')
        return target

    def require_ssh(self):
        """This host, its address read (of_task); AddressError when the
        controller's own ssh and Nix's cannot reach it."""
        if self._pending is not None:
            known = Host.from_connection(self.connection, self._pending)
            self.__dict__.update(vars(known))
            self._pending = None
        return self

    def __getattr__(self, name):
        if self.__dict__.get('_pending') is None:
            raise AttributeError(name)
        if name == 'address':
            # where Ansible's connection reaches a task's own host, whatever
            # its kind (a health check tried from the controller asks it
            # there): read without requiring ssh
            return connection_address(self.connection, self.name)
        # an ssh field of_task has not read yet
        if name in _SSH_FIELDS:
            return getattr(self.require_ssh(), name)
        raise AttributeError(name)

    @classmethod
    def from_connection(cls, connection, task_vars=None, host_key_unchecked=None):
        """From an action plugin's ``self._connection`` (ssh connection).
        ``host_key_unchecked``: the host's opt-out as the action judged it
        (None: as the judgement on the connection says, JUDGED)."""
        task_vars = task_vars or {}
        transport = getattr(connection, 'transport', None) or load_name(connection) or ''
        name = task_vars.get('inventory_hostname')
        if str(transport).rsplit('.', maxsplit=1)[-1] not in SSH_CONNECTIONS:
            raise AddressError('%s: connection %r is not ssh; nix_copy_closure copies '
                               'over ssh-ng only' % (name or 'target', transport))

        opt = functools.partial(_connection_option, connection)
        pc = play_context_of(connection)
        address = connection_address(connection, name)
        become_plugin = getattr(connection, 'become', None)
        become_user = become_method = None
        if become_plugin is not None:
            become_method = getattr(become_plugin, 'name', None)
            try:
                become_user = become_plugin.get_option('become_user')
            except KeyError:
                become_user = None
        target = cls(
            address=address,
            port=opt('port') or getattr(pc, 'port', None),
            user=opt('remote_user') or getattr(pc, 'remote_user', None),
            private_key_file=opt('private_key_file') or getattr(pc, 'private_key_file', None),
            ssh_common_args=opt('ssh_common_args'),
            ssh_extra_args=opt('ssh_extra_args'),
            become=become_plugin is not None or bool(getattr(pc, 'become', False)),
            become_user=become_user or getattr(pc, 'become_user', None),
            become_method=(become_method or getattr(pc, 'become_method', None)
                           or 'sudo').rsplit('.', maxsplit=1)[-1],
            name=name, host_key_unchecked=bool(host_key_unchecked),
        )
        if host_key_unchecked is None:
            target._judged_on = connection
        # pointed at a fallback address (_reached.use_reached): the host's
        # own key is the one that must answer there
        target.key_alias = getattr(connection, _host_identity.ALIAS, None)
        return target

    @classmethod
    def from_hostvars(cls, hostvars, templar=None, name=None):
        """From one host's hostvars (another host of the batch, a builder),
        at the address the run's login probe reached it at when that is
        not its ``ansible_host`` (plugin_utils/host/_probe.py)."""
        def var(*names):
            for key in names:
                if key in hostvars and hostvars[key] not in (None, ''):
                    value = hostvars[key]
                    if templar is not None:
                        value = templar.template(value)
                    return value
            return None

        name = name or var('inventory_hostname')
        fields = dict((field, var(*names)) for field, names in CONNECTION_VARS)
        reached, alias = _reached.reached_as(C.DEFAULT_LOCAL_TMP, name)
        fields['address'] = reached or fields['address'] or name
        target = cls(
            address=fields['address'], port=fields['port'], user=fields['user'],
            private_key_file=fields['private_key_file'],
            ssh_common_args=fields['common_args'], ssh_extra_args=fields['extra_args'],
            become=_truthy(var('ansible_become')),
            become_user=var('ansible_become_user'),
            become_method=var('ansible_become_method'),
            name=name,
        )
        # reached at a fallback address: its own key must answer there
        target.key_alias = alias
        return target

    @classmethod
    def from_store_uri(cls, uri):
        """From an ``ssh://`` or ``ssh-ng://`` store URI (a builder). Nix's
        own ssh for it takes NIX_SSHOPTS from the controller's environment:
        so does this host's."""
        parts = urlsplit(uri)
        query = parse_qs(parts.query)
        try:
            port = parts.port
        except ValueError:
            raise AddressError('%s: malformed port' % uri)
        return cls(parts.hostname, port=port, user=parts.username,
                   private_key_file=(query.get('ssh-key') or [None])[0],
                   ssh_common_args=os.environ.get('NIX_SSHOPTS'), name=uri)

    def at(self, address):
        """This host reached at another ``address`` (one of its
        ``nix_target_hosts``): the same user, port, key and ssh options,
        over the controller's own ssh only (Ansible's connection still
        points at the first address); at any address but its own, its own
        key must answer (``alias_at``)."""
        known = self.require_ssh()
        address = bare_address(str(address), self.name)
        other = Host.__new__(Host)
        other.__dict__.update(vars(known))
        other.__dict__.update(connection=None, _execute=None, _before=None, address=address,
                              key_alias=known.alias_at(address))
        return other

    def alias_at(self, address):
        """The ``HostKeyAlias`` this host is reached with at ``address``:
        the one it has (it is at a fallback address already), else at any
        address but its own the name its own key is known under, else None."""
        known = self.require_ssh()
        if known.key_alias or address == known.address:
            return known.key_alias
        return _host_identity.key_name(known)

    def move_to(self, address):
        """Reach this task's own host at ``address`` (another of its
        ``nix_target_hosts``) from now on: Ansible's connection too, so
        its next program logs in there, and only where its own key
        answers. The ``HostKeyAlias`` it is reached with there, or None."""
        address = bare_address(str(address), self.name)
        alias = self.alias_at(address)
        _reached.use_reached(self.connection, address, alias)
        self.address, self.key_alias = address, alias
        return alias

    # ------------------------------------------------------------ over Ansible's connection
    def sh(self, script, in_data=None, sudoable=False, timeout=PROGRAM_TIMEOUT):
        """Run a rendered target program (plugin_utils/host/_script.py) with sh
        over Ansible's connection: (rc, stdout, stderr). The one way the
        controller runs a program on a target. It runs as one group, because
        Ansible appends ``&& sleep 0`` to the command; ``in_data``: its
        stdin; ``sudoable``: with the task's become; NoAnswer when it gives
        no answer within ``timeout`` seconds (the caller decides whether to
        log in anew). The action judges the host's key before the first one
        (``before``)."""
        if self._before is not None:
            self._before()
        reply = {}

        def run():
            try:
                reply['out'] = self._execute('{\n%s\n}' % script.strip('\n'),
                                             sudoable=sudoable, in_data=in_data or None)
            except Exception as exc:  # pylint: disable=broad-except
                reply['error'] = exc

        worker = threading.Thread(target=run, name='nixdeploy-sh')
        worker.daemon = True
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            raise NoAnswer('no answer from the host within %ss' % timeout)
        if 'error' in reply:
            error = reply['error']
            if not self._reached and isinstance(error, AnsibleConnectionFailure):
                refused = self._refusal(str(error))
                if refused:
                    raise LoginRefused(refused)
            raise error
        self._reached = True
        out = reply['out']
        return out.get('rc'), out.get('stdout', ''), out.get('stderr', '')

    @property
    def reached(self):
        """Whether a program of ``sh`` ran on the host (in this task)."""
        return self._reached

    def tries_again(self):
        """Whether Ansible's connection runs a command again after ssh
        failed (its ``reconnection_retries``): an earlier try may then have
        started it, whatever the last one said."""
        retries = _connection_option(self.connection, 'reconnection_retries')
        try:
            return int(retries or 0) > 0
        except (TypeError, ValueError):
            return True

    def _refusal(self, text):
        """The message when ssh refused the first login (``text``: what the
        connection said): a wrong key or user, a host key it does not
        trust; else ''."""
        try:
            destination, address = self.destination, self.address
        except NixdeployError:
            destination = address = None
        key = _diagnosis.host_key_refusal(text, address)
        if key:
            return key
        refused = _diagnosis.login_refused(text, destination)
        return '%s\n  %s' % (refused, _diagnosis.LOGIN_FIX) if refused else ''

    # ------------------------------------------------------------ over plain ssh
    @property
    def destination(self):
        """``user@host`` (IPv6 without brackets: ssh takes them literally)."""
        return '%s@%s' % (self.user, self.address) if self.user else self.address

    def ssh_argv(self, command='sh', first=()):
        """``ssh [first] <options> dest command``; ssh keeps the first value
        of an option, so ``first`` wins over the inventory's."""
        return ssh_argv(list(first) + self.ssh_options(), self.destination, command)

    def ssh(self, stdin_data, first=(), command='sh'):
        """Run ``command`` (sh: the program comes on stdin, whatever the
        login shell is) over the controller's own ssh, with no terminal:
        (rc, stdout, stderr)."""
        return run_no_tty(self.ssh_argv(command, first), stdin_data=stdin_data)

    def ssh_config(self):
        """``ssh -G``: {option: [values]} as ssh would connect to this host."""
        rc, out, _err = run_no_tty(ssh_argv(self.ssh_options(), self.destination,
                                            show_config=True))
        conf = {}
        if rc == 0:
            for line in out.splitlines():
                key, _sep, value = line.strip().partition(' ')
                if key:
                    conf.setdefault(key.lower(), []).append(value.strip())
        return conf

    def _key_in_uri(self):
        # NIX_SSHOPTS cannot carry a path with spaces ("Application Support");
        # the URI's ssh-key parameter can (Nix hands it to ssh as one argument).
        return bool(self.private_key_file) and bool(re.search(r'\s', self.private_key_file))

    def ssh_options(self, for_nix=False):
        """ssh argv options (no ``ssh``, no destination), checked for safety.
        ``for_nix``: leave out a key that ``store_uri`` carries instead."""
        opts = []
        if self.port:
            opts += ['-p', str(self.port)]
        if self.private_key_file and not (for_nix and self._key_in_uri()):
            opts += ['-i', self.private_key_file]
        if not self.host_key_unchecked:
            check_secure(self.common_args, '%s: ansible_ssh_common_args' % self.name)
            # in the order ssh gets them: the first value of an option is the one it keeps
            check_secure(opts + self.common_args + self.extra_args,
                         '%s: ansible_ssh_common_args and ansible_ssh_extra_args' % self.name,
                         self.destination)
        # at a fallback address, first (ssh keeps the first value): the
        # host's own key must answer there, and none is added for it
        proven = _host_identity.fallback_options(self.key_alias) if self.key_alias else []
        return proven + opts + list(NO_MASTER) + self.common_args + self.extra_args + list(
            DEFAULT_SSH_OPTIONS)

    # ------------------------------------------------------------ its store
    def nix_env(self, master=None):
        """Environment for a Nix command that talks to this host over ssh
        (use it with ``store_uri()``, which may carry the key).

        ``master``: the control socket of an ssh connection already open to
        this host, for Nix's ssh to ride instead of logging in again: only
        one the action judged (plugin_utils/host/_host_key_judge.py ssh_master: the master of
        the task's own judgement); ssh connects by itself when the master has
        gone. Left out when its path holds whitespace (NIX_SSHOPTS)."""
        opts = self.ssh_options(for_nix=True)
        for token in opts:
            check_token(token, '%s: the ssh options' % self.name)
        if master and not re.search(r'\s', master):
            # first: ssh takes the first value of an option it is given (and
            # expands % in a ControlPath)
            opts = ['-o', 'ControlPath=%s' % master.replace('%', '%%'),
                    '-o', 'ControlMaster=no'] + opts
        return {'NIX_SSHOPTS': ' '.join(opts)}

    def store_uri(self, remote_program=None, compress=False, remote_store=None,
                  scheme='ssh-ng'):
        """``ssh-ng://user@host?remote-program=...``.

        ``remote_program`` is a list of argv words (or one string) run by the
        remote shell with ``--stdio`` appended, e.g. ``['sudo', '-n', '--',
        '/nix/var/nix/profiles/default/bin/nix-daemon']``; every word is
        shell-quoted because Nix hands the command line to the remote shell.
        """
        params = []
        if remote_program:
            words = [remote_program] if isinstance(remote_program, str) else list(remote_program)
            params.append(('remote-program', ' '.join(shlex.quote(str(w)) for w in words)))
        if self._key_in_uri():
            params.append(('ssh-key', self.private_key_file))
        if remote_store:
            params.append(('remote-store', str(remote_store)))
        if compress:
            params.append(('compress', 'true'))
        uri = '%s://%s' % (scheme, self.destination)
        if params:
            uri += '?' + '&'.join('%s=%s' % (k, _url_quote(v, safe='/')) for k, v in params)
        return uri

    def __repr__(self):
        return 'Host(%s)' % (self.name if self._pending is not None else self.destination)


def _connection_option(connection, *names):
    """The first of ``names`` an Ansible connection has a value for, or None."""
    for option in names:
        try:
            value = connection.get_option(option)
        except KeyError:
            continue
        if value not in (None, ''):
            return value
    return None


def connection_address(connection, name):
    """The address an Ansible ``connection`` reaches its host at (``name``:
    the inventory name, its default)."""
    play_context = play_context_of(connection)
    return (_connection_option(connection, 'host', 'remote_addr')
            or getattr(play_context, 'remote_addr', None) or name)


def inventory_places(hostvars):
    """{host: (address, port)} of each host of ``hostvars`` ({host: its
    variables}) as the inventory gives them, not where the probe reached
    it: where known_hosts holds its own key (``_host_identity.owners``)."""
    rows = dict(CONNECTION_VARS)
    places = {}
    for host in hostvars or {}:
        try:
            facts = hostvars[host]
            address = [facts[n] for n in rows['address'] if facts.get(n) not in (None, '')]
            port = [facts[n] for n in rows['port'] if facts.get(n) not in (None, '')]
        except Exception:  # pylint: disable=broad-except
            continue  # a variable that cannot be read (a failing template) names nobody
        places[host] = (u'%s' % (address[0] if address else host), port[0] if port else None)
    return places


def _truthy(value):
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ('1', 'true', 'yes', 'on', 'y')
