# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The checks of every value from the flake that reaches ssh.

The flake's data is untrusted: any module of any input can set a node's
address, user, port or deploy-rs ``sshOpts``. Ansible hands ``ansible_host``
to ssh as one argument, which ssh reads as an OPTION when it begins with
``-`` (``-oProxyCommand=...`` runs a command on the controller); deploy-rs
``sshOpts`` become ssh arguments as they are. So the inventory plugin lets
through only:

* an address that is a host name (``[A-Za-z0-9_]`` then ``[A-Za-z0-9_.-]``,
  253 characters at most: DNS names, ssh_config aliases, IPv4) or an IPv6
  literal (``ipaddress`` reads it), with or without brackets, given on
  without them; no zone index (``fe80::1%eth0``: a Nix store URI cannot
  carry one), no ``user@`` and no ``:port`` (``_inventory_network``);
* a user of ``[A-Za-z0-9_.]`` then ``[A-Za-z0-9_.$-]`` (``deploy``,
  ``nix-on-droid``, ``user.name``, ``host$``), as ``_host.Host`` wants it;
* a port: an integer (or a string of digits) 1..65535;
* ssh options (deploy-rs ``sshOpts``, colmena ``deployment.sshOptions``,
  an inventory entry's ``sshOptions``: one allow-list) on ``SSH_FLAGS`` and
  ``SSH_OPTIONS``, and a ProxyJump chain (``-J``, ``-o ProxyJump``) of
  plain hops: what cannot run a command the flake chose, read or write a
  file of the controller, open a forward or weaken host key checking.
  Anything else is refused, unknown options included; an option that runs
  a command or turns host key checking off says so.

And a node's name, which becomes the Ansible host name, must be
``printable`` (plugin_utils/common/_printable.py: it is shown in every summary
line, message and warning, where a control character, ESC, a newline or a
bidi control would act on the operator's terminal) and hold no ``/``
(operators key file paths, ``host_vars/NAME``, and git refs, publish's
per-host channel refs, by host name), nor be empty.

A refusal is an ``InventoryError`` naming the field and the value (``shown``:
escaped, so a control character is visible); the caller skips the node (or
fails under ``strict``).
"""

import re
import unicodedata

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._printable import is_printable
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory._inventory_error import (
    InventoryError)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.inventory._inventory_network import (
    address_form, flag_reason, jump_reason, option_reason, same_address)

_USER = re.compile(r'[A-Za-z0-9_.][A-Za-z0-9_.$-]*')
_DIGITS = re.compile(r'[0-9]{1,5}')
MAX_USER = 256

# ssh flags without an argument that change nothing of what ssh runs, reads
# or trusts: -4/-6 (address family), -C (compression), -a/-k/-x (no agent,
# GSSAPI or X11 forwarding), -q (quiet). They may be bundled (-4C).
SSH_FLAGS = frozenset('46Cakqx')


def _yes_no(value):
    return value.lower() in ('yes', 'no')


def _count(value):
    return bool(re.match(r'\A[0-9]{1,6}\Z', value))


def _one_of(*words):
    return lambda value: value.lower() in words


def _ipqos(value):
    # one DSCP name or number (a second, for bulk, would hold a space, which
    # Nix's NIX_SSHOPTS cannot carry)
    return bool(re.match(r'\A[A-Za-z0-9]{1,16}\Z', value))


# -o options (lower case, as ssh compares them) -> (ssh's spelling, value check).
# Port and User are checked as the port and user are, and become the host's.
SSH_OPTIONS = {
    'port': ('Port', None),
    'user': ('User', None),
    'connecttimeout': ('ConnectTimeout', _count),
    'connectionattempts': ('ConnectionAttempts', _count),
    'serveraliveinterval': ('ServerAliveInterval', _count),
    'serveralivecountmax': ('ServerAliveCountMax', _count),
    'tcpkeepalive': ('TCPKeepAlive', _yes_no),
    'compression': ('Compression', _yes_no),
    'batchmode': ('BatchMode', _yes_no),
    'identitiesonly': ('IdentitiesOnly', _yes_no),
    'addressfamily': ('AddressFamily', _one_of('any', 'inet', 'inet6')),
    'ipqos': ('IPQoS', _ipqos),
    # a chain of plain hops (_inventory_network.jump_reason); -J is the same
    'proxyjump': ('ProxyJump', lambda value: jump_reason(value) is None),
    'loglevel': ('LogLevel', _one_of('quiet', 'fatal', 'error', 'info', 'verbose',
                                     'debug', 'debug1', 'debug2', 'debug3')),
}


def shown(value):
    """``value`` for a message: repr'd, so whitespace, control and format
    characters (``\\n``, ``\\x1b``, ``\\u2028``, ``\\u202e``) are visible."""
    text = value if isinstance(value, str) else u'%s' % (value,)
    return repr(text)


def node_label(name):
    """A node (or key) name for a message: as it is when it is printable
    without whitespace, else ``shown``."""
    text = u'%s' % (name,)
    if text and text.isprintable() and not any(c.isspace() for c in text):
        return text
    return shown(text)


def _odd_char(text):
    """Why ``text`` holds a character no name has, or None."""
    for char in text:
        if char.isspace():
            return 'it holds whitespace'
        if unicodedata.category(char)[0] in ('C', 'Z'):
            return 'it holds a control or format character'
    return None


def _refuse(what, value, origin, reason):
    raise InventoryError('refused %s %s from %s: %s' % (what, shown(value), origin, reason))


def _leading(what, value, origin, text):
    if not isinstance(value, str):
        _refuse(what, value, origin, 'it is not a string')
    if not text:
        _refuse(what, value, origin, 'it is empty')
    if text.startswith('-'):
        _refuse(what, value, origin, "it begins with '-', which ssh reads as an option")
    odd = _odd_char(text)
    if odd:
        _refuse(what, value, origin, odd)


def check_address(value, origin):
    """``value`` as an ssh address: a host name, IPv4 or IPv6 literal
    (brackets taken off: ``[2001:db8::5]`` -> ``2001:db8::5``)."""
    text = value if isinstance(value, str) else ''
    _leading('address', value, origin, text)
    address, reason = address_form(text)
    if reason:
        _refuse('address', value, origin, reason)
    return address


def check_target_hosts(value, origin):
    """An inventory entry's ``targetHosts``: a non-empty list of addresses
    in order, each checked (brackets taken off)."""
    if not isinstance(value, list):
        _refuse('address list', value, origin, 'it is not a list of addresses')
    if not value:
        _refuse('address list', value, origin, 'it is empty: give one address or more, or leave '
                'it out')
    return [check_address(item, '%s[%d]' % (origin, index)) for index, item in enumerate(value)]


def check_host_name(name):
    """``name`` (a node's) as an Ansible host name: not empty, printable, no
    ``/``."""
    origin = 'the node name (the Ansible host name)'
    if not isinstance(name, str) or not name:
        _refuse('host name', name, origin, 'it is empty' if name == '' else 'it is not a string')
    if not is_printable(name):
        _refuse('host name', name, origin, 'it holds a control character, a newline or a '
                'bidi control, which a terminal would act on where the name is shown')
    if '/' in name:
        _refuse('host name', name, origin, "it holds '/' (host names name files and git refs)")
    return name


def check_user(value, origin):
    """``value`` as an ssh user name."""
    text = value if isinstance(value, str) else ''
    _leading('ssh user', value, origin, text)
    if len(text) > MAX_USER or not _USER.fullmatch(text):
        _refuse('ssh user', value, origin, 'it is no user name (letters, digits, _ . - $ only)')
    return text


def check_port(value, origin):
    """``value`` as a port number (None when not given)."""
    if value is None or value == '':
        return None
    if isinstance(value, bool) or not (isinstance(value, int)
                                       or (isinstance(value, str) and _DIGITS.fullmatch(value))):
        _refuse('port', value, origin, 'it is not a number')
    port = int(value)
    if not 0 < port < 65536:
        _refuse('port', value, origin, 'it is out of range 1..65535')
    return port


def _option(text):
    """``Name=value``, ``Name value`` or ``Name = value`` (as ssh reads
    ``-o``) as (name, value), or None."""
    match = re.match(r'\A[ \t]*([A-Za-z0-9]+)(?:[ \t]*=[ \t]*|[ \t]+)(.*?)[ \t]*\Z', text, re.S)
    return (match.group(1), match.group(2)) if match else None


def ssh_opts(tokens, origin):
    """ssh options (argv items: deploy-rs ``sshOpts``, colmena's or an
    inventory entry's ``sshOptions``) through the allow-list.

    Returns (port, user, args): the port and user they give (checked; ``-p``,
    ``-o Port``, ``-l``, ``-o User``), None when they give none, and the other
    options as ssh arguments in one spelling (``-o Name=value``; ``-J``
    becomes ``-o ProxyJump=``)."""
    if not isinstance(tokens, (list, tuple)):
        _refuse('ssh options', tokens, origin, 'they are not a list of ssh arguments')
    ports, users, args = [], [], []
    idx = 0
    while idx < len(tokens):
        token = tokens[idx]
        idx += 1
        if not isinstance(token, str):
            _refuse('ssh option', token, origin, 'it is not a string')
        if len(token) > 1 and token[0] == '-' and set(token[1:]) <= SSH_FLAGS:
            args.append(token)
            continue
        flag, attached = token[:2], token[2:]
        if flag not in ('-o', '-p', '-l', '-J'):
            _refuse('ssh option', token, origin, flag_reason(flag) or 'it is not on the '
                    'allow-list of ssh options (docs/inventory.md)')
        argument, idx = _flag_argument(tokens, idx, token, attached, origin)
        if flag == '-p':
            ports.append(check_port(argument, '%s (-p)' % origin))
            continue
        if flag == '-l':
            users.append(check_user(argument, '%s (-l)' % origin))
            continue
        _named_option(token, flag, attached, argument, origin, (ports, users, args))
    for what, given in (('port', ports), ('ssh user', users)):
        if len(set(given)) > 1:
            _refuse(what, given, origin, 'they give more than one')
    return (ports[0] if ports else None), (users[0] if users else None), args


def _flag_argument(tokens, idx, token, attached, origin):
    """The argument of the flag ``token`` (written after it, or the next
    token; refused when missing) and the index of the token after it."""
    if attached:
        argument = attached
    elif idx < len(tokens) and isinstance(tokens[idx], str):
        argument = tokens[idx]
        idx += 1
    else:
        argument = ''
    if not argument:
        _refuse('ssh option', token, origin, 'its value is missing')
    return argument, idx


def _named_option(token, flag, attached, argument, origin, found):
    """An ``-o`` option (or ``-J``, ProxyJump's) through the allow-list,
    added to ``found`` (ports, users, args) by what it gives."""
    ports, users, args = found
    # the option as the flake wrote it
    written = token if attached else ('-J ' + argument if flag == '-J' else argument)
    parsed = _option(('ProxyJump=' if flag == '-J' else '') + argument)
    known = SSH_OPTIONS.get(parsed[0].lower()) if parsed else None
    if known is None:
        _refuse('ssh option', written, origin, (parsed and option_reason(*parsed)) or
                'it is not on the allow-list of ssh options (docs/inventory.md)')
    name, valid = known
    value = parsed[1]
    if not value:
        _refuse('ssh option', written, origin, 'its value is missing')
    if name == 'Port':
        ports.append(check_port(value, '%s (-o Port)' % origin))
    elif name == 'User':
        users.append(check_user(value, '%s (-o User)' % origin))
    elif name == 'ProxyJump' and jump_reason(value):
        _refuse('ssh option', written, origin, jump_reason(value))
    elif not valid(value):
        _refuse('ssh option', written, origin, 'its value is not one %s takes here' % name)
    else:
        args.extend(['-o', '%s=%s' % (name, value)])


# Field -> its check, for check_connection.
_CHECKS = (('address', check_address), ('user', check_user), ('port', check_port))


def check_connection(fields, name, name_is_address=False):
    """Check the connection fields of one node in place (address, user,
    port; ``fields['origin']`` says where each came from) and, with
    ``name_is_address`` (no address: Ansible connects to the inventory
    host name), the name itself as an address."""
    origin = fields.get('origin') or {}
    for field, check in _CHECKS:
        value = fields.get(field)
        if value is not None and value != '':
            fields[field] = check(value, origin.get(field, field))
    if name_is_address and not fields.get('address'):
        check_address(name, 'the host name (no address given: ssh connects to it)')
    hosts = fields.get('target_hosts')
    if hosts and fields.get('address') and not same_address(fields['address'], hosts[0]):
        _refuse('address', fields['address'], origin.get('address', 'address'),
                'it is not the first of %s %s: give the address once, or first in that list'
                % (origin.get('target_hosts', 'targetHosts'),
                   '[%s]' % ', '.join(shown(host) for host in hosts)))
    return fields


# Connection vars the inventory's ``compose`` may set -> their check.
_COMPOSED = (('ansible_host', check_address), ('ansible_ssh_host', check_address),
             ('ansible_user', check_user), ('ansible_ssh_user', check_user),
             ('ansible_port', check_port), ('ansible_ssh_port', check_port))


def check_composed(compose, hostvars):
    """The connection vars that ``compose`` (the inventory config's
    expressions, which may read the flake's data) set, checked as the
    plugin's own are; returns those the check changed ({var: value}: an
    IPv6 ``ansible_host`` without its brackets)."""
    changed = {}
    for var, check in _COMPOSED:
        if var in (compose or {}) and hostvars.get(var) not in (None, ''):
            value = hostvars[var]
            # a composed value may be a str subclass (ansible-core's tagged
            # strings) or a native int
            if isinstance(value, str):
                value = u'%s' % (value,)
            checked = check(value, 'compose %s' % var)
            if isinstance(value, str) and checked != value and check is check_address:
                changed[var] = checked
    return changed
