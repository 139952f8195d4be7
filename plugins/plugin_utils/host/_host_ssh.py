# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A target reached over the controller's own ssh: the one builder of an ssh
argv (``ssh_argv``, ``ssh -G`` included), the checks of the user's ssh
options (``check_secure``: none may turn host key checking off, by the
rules of plugin_utils/host/_host_key_rules.py; ``check_token``: none Nix
cannot pass on), which a ``Host`` (``_host.py``) uses for its ssh options,
its ssh argv and the environment and store URI of Nix's ssh. Also what a
``Host`` raises (``AddressError``, ``NoAnswer``, ``LoginRefused``) and the
one check of an address (``bare_address``).
"""

import re
import shlex

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _host_key_rules

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


def check_token(token, where):
    # Nix 2.8 splits NIX_SSHOPTS on whitespace with no quoting, so an argument
    # holding a space (ProxyCommand="ssh -W ...") would reach ssh cut in pieces.
    if re.search(r'\s', token):
        raise AddressError(
            '%s holds %r, which contains whitespace: Nix splits NIX_SSHOPTS on '
            'whitespace and cannot pass it to ssh intact. Put that setting in '
            '~/.ssh/config (or use a form without spaces, e.g. -o ProxyJump=user@bastion).'
            % (where, token))


def check_secure(tokens, where, destination=None):
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
