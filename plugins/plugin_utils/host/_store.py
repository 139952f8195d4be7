# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Store paths, and the ssh-ng store URI + ssh options of a target.

A ``Target`` is built from the same connection vars Ansible itself uses
(``ansible_host``, ``ansible_port``, ``ansible_user``, the private key and the
ssh args), either from an action plugin's live connection or from hostvars,
so one inventory drives both Ansible's ssh and Nix's ssh. Host key checking
is never turned off here: the user's own ssh args are passed on verbatim,
ones that turn it off are refused (``_check_secure``, by the rules of
plugin_utils/host/_host_keys.py), and our defaults only add timeouts and BatchMode.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import re
import shlex

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _host_keys

try:
    from urllib.parse import quote as _url_quote
except ImportError:  # pragma: no cover - Python 2 controllers are not supported
    from urllib import quote as _url_quote

STORE_DIR = '/nix/store'
# /nix/store/<32 base32 chars>-<name>; the name alphabet is Nix's own.
_STORE_PATH = re.compile(r'^/nix/store/[0-9a-df-np-sv-z]{32}-[A-Za-z0-9+\-._?=]+$')

# Added after the user's own ssh args; ssh keeps the FIRST value of an
# option, so anything the inventory sets wins over these.
#  BatchMode: Nix's ssh has no terminal; a password prompt must fail, not hang.
#  ServerAlive*: a dead link fails the copy in ~15 s instead of TCP's minutes.
DEFAULT_SSH_OPTIONS = (
    '-o', 'BatchMode=yes',
    '-o', 'ConnectTimeout=10',
    '-o', 'ServerAliveInterval=5',
    '-o', 'ServerAliveCountMax=3',
)


# Before the user's own ssh args (ssh keeps the first value): the collection's
# own ssh (nix copy, builders, cascade probes) never rides an ssh master it
# was not given (nix_env's ``master``: one the action judged), such as one
# opened with host key checking off by an earlier play or by a ControlPath of
# the user's ssh config, and never leaves one behind: ssh checks the host key
# when a master logs in, never when a client rides it.
NO_MASTER = ('-o', 'ControlMaster=no', '-o', 'ControlPath=none')


# longest file name made of a host name (file systems allow 255 bytes)
MAX_NAME = 200


def file_name(name):
    """``name`` (an inventory host name: data) as ONE file name, on the
    controller (nix_build's GC roots) and on a target (the copy's GC root):
    '/' or a leading '.' ('..') must not place it elsewhere, so they are
    %-escaped like every character outside [A-Za-z0-9_.~-]."""
    text = _url_quote(u'%s' % name, safe='')
    if text.startswith('.'):
        text = '%2E' + text[1:]
    if len(text) > MAX_NAME:
        # file names stop at 255 bytes; a digest keeps long names apart
        digest = hashlib.sha256(text.encode('utf-8')).hexdigest()[:16]
        text = '%s-%s' % (text[:MAX_NAME - 17], digest)
    return text


# the attribute that holds, on an action's connection, the host's opt-out as
# the action judged it (plugin_utils/run/_action.py judge_host_keys: the one
# place that reads nix_host_key_unchecked): true when its key is not checked
# and the opt-out lets the task go on
JUDGED = '_nixdeploy_host_key_unchecked'


class StoreError(Exception):
    """A target's connection vars cannot be turned into a safe store URI."""


def is_store_path(path):
    """Whether ``path`` is a top-level store path (not a file inside one)."""
    return bool(path) and bool(_STORE_PATH.match(str(path)))


def store_path_of(path):
    """The top-level store path of ``path`` (which may point inside one)."""
    text = str(path or '')
    parts = text.split('/')
    if len(parts) >= 4 and text.startswith(STORE_DIR + '/'):
        candidate = '/'.join(parts[:4])
        if is_store_path(candidate):
            return candidate
    raise StoreError('not a Nix store path: %r' % (text,))


def split_ssh_args(text):
    """Split an ``ansible_ssh_*_args`` string the way Ansible's ssh plugin does."""
    if not text:
        return []
    if isinstance(text, (list, tuple)):
        return [str(t) for t in text]
    return shlex.split(str(text))


def _check_token(token, where):
    # Nix 2.8 splits NIX_SSHOPTS on whitespace with no quoting, so an argument
    # holding a space (ProxyCommand="ssh -W ...") would reach ssh cut in pieces.
    if re.search(r'\s', token):
        raise StoreError(
            '%s holds %r, which contains whitespace: Nix splits NIX_SSHOPTS on '
            'whitespace and cannot pass it to ssh intact. Put that setting in '
            '~/.ssh/config (or use a form without spaces, e.g. -o ProxyJump=user@bastion).'
            % (where, token))


def _check_secure(tokens, where, destination=None):
    """Refuse ssh options that turn host key checking off (any spelling:
    plugin_utils/host/_host_keys.py); an ssh config file given with ``-F`` can
    say anything, so ``ssh -G`` is asked what it says for ``destination``."""
    problems = _host_keys.args_problems(tokens)
    config_files = _host_keys.parse_args(tokens)[1]
    if not problems and destination and config_files:
        problems = ['%s (the ssh config %s, as `ssh -G` reads it)' % (p, ', '.join(config_files))
                    for p in _host_keys.config_problems(
                        ['ssh', '-G'] + list(tokens) + ['--', destination])]
    if problems:
        raise StoreError(
            '%s: %s: that turns host key checking off, and the collection never copies or '
            'builds over ssh without it' % (where, '; '.join(problems)))


class Target:
    """Where and how to reach one target's store over ssh."""

    def __init__(self, host, port=None, user=None, private_key_file=None,
                 ssh_common_args=None, ssh_extra_args=None, become=False,
                 become_user=None, become_method=None, name=None, host_key_unchecked=False):
        if not host:
            raise StoreError('no host address for %s' % (name or 'target'))
        self.host = _bare_host(str(host), name)
        self.port = int(port) if port not in (None, '') else None
        self.user = str(user) if user else None
        if self.user and not re.match(r'^[A-Za-z0-9_.][A-Za-z0-9_.\-$]*$', self.user):
            raise StoreError('%s: unsafe ssh user name %r' % (name or self.host, self.user))
        self.private_key_file = str(private_key_file) if private_key_file else None
        self.common_args = split_ssh_args(ssh_common_args)
        self.extra_args = split_ssh_args(ssh_extra_args)
        self.become = bool(become)
        self.become_user = become_user or 'root'
        self.become_method = become_method or 'sudo'
        self.name = name or self.host
        # the host's opt-out (nix_host_key_unchecked): its ssh options may
        # leave its key unchecked (the action judged and warned)
        self._host_key_unchecked = bool(host_key_unchecked)
        # from_connection: the connection whose judgement says it instead
        self._judged_on = None

    @property
    def host_key_unchecked(self):
        """Whether the host's ssh options may leave its key unchecked: as
        given, or as the action judged its connection, read when the options
        are made (nix_build makes its Target before its first program, where
        the host is judged); never before a judgement."""
        if self._judged_on is not None:
            return bool(getattr(self._judged_on, JUDGED, False))
        return self._host_key_unchecked

    # ------------------------------------------------------------ builders
    @classmethod
    def from_connection(cls, connection, task_vars=None, host_key_unchecked=None):
        """From an action plugin's ``self._connection`` (ssh connection).
        ``host_key_unchecked``: the host's opt-out as the action judged it
        (None: as the judgement on the connection says, JUDGED)."""
        task_vars = task_vars or {}
        transport = getattr(connection, 'transport', None) or getattr(connection, '_load_name', '')
        name = task_vars.get('inventory_hostname')
        if str(transport).rsplit('.', maxsplit=1)[-1] not in ('ssh', 'paramiko', 'paramiko_ssh'):
            raise StoreError('%s: connection %r is not ssh; nix_copy_closure copies '
                             'over ssh-ng only' % (name or 'target', transport))

        def opt(*names):
            for option in names:
                try:
                    value = connection.get_option(option)
                except KeyError:
                    continue
                if value not in (None, ''):
                    return value
            return None

        pc = getattr(connection, '_play_context', None)
        host = opt('host', 'remote_addr') or getattr(pc, 'remote_addr', None) or name
        become_plugin = getattr(connection, 'become', None)
        become_user = become_method = None
        if become_plugin is not None:
            become_method = getattr(become_plugin, 'name', None)
            try:
                become_user = become_plugin.get_option('become_user')
            except KeyError:
                become_user = None
        target = cls(
            host=host,
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
        return target

    @classmethod
    def from_hostvars(cls, hostvars, templar=None, name=None):
        """From one host's hostvars (for plugins that bypass the host loop)."""
        def var(*names):
            for key in names:
                if key in hostvars and hostvars[key] not in (None, ''):
                    value = hostvars[key]
                    if templar is not None:
                        value = templar.template(value)
                    return value
            return None

        name = name or var('inventory_hostname')
        become = var('ansible_become')
        return cls(
            host=var('ansible_host', 'ansible_ssh_host') or name,
            port=var('ansible_port', 'ansible_ssh_port'),
            user=var('ansible_user', 'ansible_ssh_user', 'ansible_remote_user'),
            private_key_file=var('ansible_ssh_private_key_file', 'ansible_private_key_file'),
            ssh_common_args=var('ansible_ssh_common_args'),
            ssh_extra_args=var('ansible_ssh_extra_args'),
            become=_truthy(become),
            become_user=var('ansible_become_user'),
            become_method=var('ansible_become_method'),
            name=name,
        )

    # ------------------------------------------------------------ outputs
    @property
    def destination(self):
        """``user@host`` (IPv6 without brackets: ssh takes them literally)."""
        return '%s@%s' % (self.user, self.host) if self.user else self.host

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
            _check_secure(self.common_args, '%s: ansible_ssh_common_args' % self.name)
            # in the order ssh gets them: the first value of an option is the one it keeps
            _check_secure(opts + self.common_args + self.extra_args,
                          '%s: ansible_ssh_common_args and ansible_ssh_extra_args' % self.name,
                          self.destination)
        return opts + list(NO_MASTER) + self.common_args + self.extra_args + list(
            DEFAULT_SSH_OPTIONS)

    def nix_env(self, master=None):
        """Environment for a Nix command that talks to this target over ssh
        (use it with ``store_uri()``, which may carry the key).

        ``master``: the control socket of an ssh connection already open to
        this target, for Nix's ssh to ride instead of logging in again: only
        one the action judged (plugin_utils/host/_ssh.py ssh_master: the master of
        the task's own judgement); ssh connects by itself when the master has
        gone. Left out when its path holds whitespace (NIX_SSHOPTS)."""
        opts = self.ssh_options(for_nix=True)
        for token in opts:
            _check_token(token, '%s: the ssh options' % self.name)
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
        return 'Target(%s, port=%s, become=%s)' % (self.destination, self.port, self.become)


def _bare_host(host, name):
    host = host.strip()
    if host.startswith('[') and host.endswith(']'):
        host = host[1:-1]
    # Anything here ends up in a URI and in ssh's argv: no option-looking
    # names, no URI delimiters, no whitespace.
    if not re.match(r'^[A-Za-z0-9_.:%\-]+$', host) or host.startswith('-'):
        raise StoreError('%s: unsafe or malformed host address %r' % (name or 'target', host))
    return host


def _truthy(value):
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ('1', 'true', 'yes', 'on', 'y')


def remote_program(nix_dir, via_sudo=False, become_user=None):
    daemon = '%s/nix-daemon' % nix_dir.rstrip('/')
    if not via_sudo:
        return [daemon]
    words = ['sudo', '-n']
    if become_user and become_user != 'root':
        words += ['-u', become_user]
    return words + ['--', daemon]
