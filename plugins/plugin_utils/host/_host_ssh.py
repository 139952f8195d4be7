# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A target reached over the controller's own ssh: the one builder of an ssh
argv (``ssh_argv``, ``ssh -G`` included), the checks of the user's ssh
options (``_check_secure``: none may turn host key checking off, by the
rules of plugin_utils/host/_host_key_rules.py; ``_check_token``: none Nix
cannot pass on), and ``HostSsh``, the part of a ``Host`` (``_host.py``) that
runs ssh and Nix's ssh-ng to it: its ssh options, its ssh argv and ``ssh -G``
answer, the environment and store URI of Nix's ssh. Also what a ``Host``
raises (``AddressError``, ``NoAnswer``, ``LoginRefused``) and the one check of
an address (``bare_address``).
"""

import re
import shlex
from urllib.parse import quote as _url_quote

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import (
    _host_identity, _host_key_rules)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._peer_ssh import run_no_tty

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


def split_ssh_args(text):
    """Split an ``ansible_ssh_*_args`` string the way Ansible's ssh plugin does."""
    if not text:
        return []
    if isinstance(text, (list, tuple)):
        return [str(t) for t in text]
    return shlex.split(str(text))


class AddressError(NixdeployError):
    """A host's connection vars (or a builder's name or store URI) make no
    address the controller's ssh and Nix can use safely: none, one that would
    read as an option or break a URI, a connection that is not ssh, ssh
    options that turn host key checking off or that Nix cannot pass on."""


class NoAnswer(NixdeployError):
    """A target program gave no answer within its time limit."""

    def __init__(self, *args, **context):
        context.setdefault('connection_lost', True)
        super(NoAnswer, self).__init__(*args, **context)


class LoginRefused(NixdeployError):
    """ssh's first login to the host was refused (a wrong key or user, a
    host key ssh does not trust): the host answered, so it is a failed
    host, not a lost connection."""


# Before the user's own ssh args (ssh keeps the first value): the collection's
# own ssh (nix copy, builders, cascade probes) never rides an ssh master it
# was not given (nix_env's ``master``: one the action judged), such as one
# opened with host key checking off by an earlier play or by a ControlPath of
# the user's ssh config, and never leaves one behind: ssh checks the host key
# when a master logs in, never when a client rides it.
NO_MASTER = ('-o', 'ControlMaster=no', '-o', 'ControlPath=none')


def ssh_argv(options, destination, command=None, ssh=None, show_config=False,
             end_options=False):
    """The one ssh argv: ``ssh [-G] options [--] destination [command]``.
    ``show_config``: ``ssh -G`` (what ssh would use; it connects nowhere);
    ``end_options``: ``--`` first (a destination never passes for an
    option); ``ssh``: Ansible's ssh_executable."""
    argv = [ssh or 'ssh'] + (['-G'] if show_config else []) + list(options)
    argv += ['--', destination] if end_options else [destination]
    return argv + ([command] if command is not None else [])


def bare_address(address, name=None):
    """``address`` as ssh and Nix take it (no brackets, no spaces around);
    AddressError when it is none (``name``: whose, for the message)."""
    host = str(address).strip()
    if host.startswith('[') and host.endswith(']'):
        host = host[1:-1]
    # Anything here ends up in a URI and in ssh's argv: no option-looking
    # names, no URI delimiters, no whitespace.
    if not re.match(r'^[A-Za-z0-9_.:%\-]+\Z', host) or host.startswith('-'):
        raise AddressError('%s: unsafe or malformed host address %r' % (name or 'target', host))
    return host


def _check_token(token, where):
    # Nix 2.8 splits NIX_SSHOPTS on whitespace with no quoting, so an argument
    # holding a space (ProxyCommand="ssh -W ...") would reach ssh cut in pieces.
    if re.search(r'\s', token):
        raise AddressError(
            '%s holds %r, which contains whitespace: Nix splits NIX_SSHOPTS on '
            'whitespace and cannot pass it to ssh intact. Put that setting in '
            '~/.ssh/config (or use a form without spaces, e.g. -o ProxyJump=user@bastion).'
            % (where, token))


def _check_secure(tokens, where, destination=None):
    """Refuse ssh options that turn host key checking off (any spelling:
    plugin_utils/host/_host_key_rules.py); an ssh config file given with ``-F`` can
    say anything, so ``ssh -G`` is asked what it says for ``destination``."""
    problems = _host_key_rules.args_problems(tokens)
    config_files = _host_key_rules.parse_args(tokens)[1]
    if not problems and destination and config_files:
        problems = ['%s (the ssh config %s, as `ssh -G` reads it)' % (p, ', '.join(config_files))
                    for p in _host_key_rules.config_problems(
                        ssh_argv(tokens, destination, show_config=True, end_options=True))]
    if problems:
        raise AddressError(
            '%s: %s: that turns host key checking off, and the collection never copies or '
            'builds over ssh without it' % (where, '; '.join(problems)))


class HostSsh:
    """A ``Host``'s plain ssh (cascade peers and hops, builders, Nix's
    ssh-ng): what it is built from is the ``Host``'s (``host``, ``port``,
    ``user``, ``private_key_file``, ``common_args``, ``extra_args``,
    ``name``, ``become_user``, ``host_key_unchecked``, ``key_alias``)."""

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
            _check_secure(self.common_args, '%s: ansible_ssh_common_args' % self.name)
            # in the order ssh gets them: the first value of an option is the one it keeps
            _check_secure(opts + self.common_args + self.extra_args,
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
