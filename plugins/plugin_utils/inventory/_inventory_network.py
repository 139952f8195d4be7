# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The network forms the flake may give, as plain answers: an address with
or without brackets, a ProxyJump chain, an ssh option the allow-list
refuses and why.

Pure functions that say what they found (a value, or the reason it is
refused) and raise nothing: ``_inventory_checks`` turns a reason into the
``InventoryError`` that names the node, the field and the value.

* An IPv6 literal is taken with or without brackets (``[2001:db8::5]``,
  ``2001:db8::5``) and given on bare, as ssh's argv and Nix's store URIs
  want it. A zone index (``fe80::1%eth0``) is refused: a Nix store URI
  (``ssh://user@host``) cannot carry one, so ``nix copy`` could not reach
  the host; a link-local address without one cannot be reached at all.
  ``user@address`` and ``[address]:port`` are refused too: neither colmena
  (``user@targetHost``) nor deploy-rs (``user@hostname``) reads them, both
  have a field of their own for the user and the port.
* A ProxyJump chain (``-J``, ``-o ProxyJump=``) reaches a shell: ssh makes
  it a ProxyCommand (``ssh -l USER -p PORT -J EARLIER_HOPS ... HOST``) that
  ``/bin/sh`` runs after ssh's ``%`` expansion. So each hop must be
  ``[ssh://][user@]host[:port]`` of characters the shell and the expansion
  leave alone: a host name, a user of ``[A-Za-z0-9_.-]`` (no ``$``), digits.
  An IPv6 hop in brackets only last: ssh strips the brackets of the last
  hop, and hands the earlier ones to the shell as written, where ``[...]``
  is a glob.
"""

import ipaddress
import re
import shlex

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host_key_rules import (
    settings_problems)

HOST_NAME = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_.-]*')
MAX_HOST = 253
_JUMP_USER = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_.-]{0,255}')
_JUMP_PORT = re.compile(r'[0-9]{1,5}')

NOT_A_NAME = ('it is no host name, IPv4 or IPv6 address (letters, digits, _ . - only; an IDN in '
              'its xn-- form)')
ZONE = ('it holds an IPv6 zone index (the part after %): a zone cannot be carried in a Nix store URI '
        '(ssh://user@host), so nix copy could not reach the host; give a global or ULA (fd00::/8) '
        'address of the host, or an ssh config Host alias whose HostName is the link-local address')
LINK_LOCAL = ('it is a link-local IPv6 address, which the controller reaches only with a zone '
              'index (fe80::1%eth0), and a zone cannot be carried in a Nix store URI '
              '(ssh://user@host); give a global or ULA (fd00::/8) address of the host, or an ssh '
              'config Host alias whose HostName is the link-local address with its zone')
USER_AT = ('it is no host name: it holds a user (user@host); give the address alone, the user in '
           'its own field (targetUser, user, sshUser, -l)')
WITH_PORT = ('it holds a port ([address]:port): give the address alone, the port in its own field '
             '(port, targetPort, sshPort, -p)')
COLON = ("it holds ':' but is no IPv6 address (a port goes in its own field: port, targetPort, "
         "sshPort, -p)")


def _ipv6_reason(text):
    """Why ``text`` (no brackets) is no IPv6 address ssh and Nix can both
    reach, or None."""
    literal, percent, _zone = text.partition('%')
    try:
        address = ipaddress.IPv6Address(literal)
    except ValueError:
        return COLON
    if percent:
        return ZONE
    if address.is_link_local:
        return LINK_LOCAL
    return None


def address_form(text):
    """(the address as ssh and Nix take it, None), or (None, why it is
    refused), for a non-empty ``text`` without whitespace or a leading
    ``-`` (``_inventory_checks`` looked at those already)."""
    if text.startswith('['):
        inner, close, rest = text[1:].partition(']')
        if not close:
            return None, "its '[' has no ']'"
        if rest.startswith(':'):
            return None, WITH_PORT
        if rest:
            return None, "it holds text after ']'"
        if ':' not in inner:
            return None, ('it is no host name: brackets hold an IPv6 address only (give a host '
                          'name or IPv4 without them)')
        reason = _ipv6_reason(inner)
        return (None, reason) if reason else (inner, None)
    if '@' in text:
        return None, USER_AT
    if ':' in text:
        reason = _ipv6_reason(text)
        return (None, reason) if reason else (text, None)
    if len(text) > MAX_HOST or not HOST_NAME.fullmatch(text):
        return None, NOT_A_NAME
    return text, None


def same_address(one, other):
    """Whether two checked addresses are the same (IPv6 by value: ``2001:DB8::5``
    is ``2001:db8:0::5``)."""
    if ':' in one and ':' in other:
        return ipaddress.IPv6Address(one) == ipaddress.IPv6Address(other)
    return one.lower().rstrip('.') == other.lower().rstrip('.')


def _hop_reason(hop, last):
    """Why one hop of a ProxyJump chain is refused, or None."""
    text = hop[6:] if hop.lower().startswith('ssh://') else hop
    user, at, host = text.rpartition('@')
    if at and not _JUMP_USER.fullmatch(user):
        return 'its user is no user name (letters, digits, _ . - only)'
    port = None
    if host.startswith('['):
        inner, close, rest = host[1:].partition(']')
        if not close or (rest and not rest.startswith(':')) or ':' not in inner \
                or _ipv6_reason(inner):
            return 'its brackets hold no IPv6 address ssh and Nix can reach (no zone index)'
        if not last:
            return ('an IPv6 address is taken in the last hop only (ssh hands the earlier hops to '
                    '/bin/sh as written, where [ ] is a glob): give this hop a host name')
        port = rest[1:] if rest else None
    else:
        if host.count(':') > 1:
            return 'an IPv6 address in a hop needs brackets ([2001:db8::1])'
        host, colon, port = host.partition(':')
        port = port if colon else None
        if len(host) > MAX_HOST or not HOST_NAME.fullmatch(host):
            return 'its host is no host name (letters, digits, _ . - only)'
    if port is not None and not (_JUMP_PORT.fullmatch(port) and 0 < int(port) < 65536):
        return 'its port is not a number 1..65535'
    return None


def jump_reason(value):
    """Why a ProxyJump chain (``-J`` or ``-o ProxyJump``'s value) is refused,
    or None: ``none``, or hops ``[ssh://][user@]host[:port]`` joined by ``,``."""
    if value.lower() == 'none':
        return None
    hops = value.split(',')
    for index, hop in enumerate(hops):
        reason = _hop_reason(hop, index == len(hops) - 1)
        if reason:
            return 'its hop %r: %s' % (hop, reason)
    return None


# -o options refused for what they do (lower case, as ssh compares them);
# any other one off the allow-list is refused as unknown
_COMMANDS = frozenset(('proxycommand', 'localcommand', 'permitlocalcommand',
                       'knownhostscommand', 'remotecommand', 'match'))
_HOST_KEYS = frozenset(('stricthostkeychecking', 'userknownhostsfile', 'globalknownhostsfile',
                        'updatehostkeys', 'hostkeyalias', 'verifyhostkeydns', 'checkhostip',
                        'hostkeyalgorithms', 'revokedhostkeys'))
_CONFIG_FILES = frozenset(('include',))
# flags refused for what they do
_FLAG_REASONS = {
    '-F': 'it names an ssh config file, which can run commands (ProxyCommand, Match exec) and '
          'turn host key checking off',
}
RUNS_COMMAND = ('it can run a command on this controller (%s), which the flake does not choose; '
                'set it in a file of yours: ~/.ssh/config or ansible_ssh_common_args in group_vars/')
KEYS_OFF = ('it turns host key checking off (%s): ssh would trust whatever answers at the '
            'address, so the flake may not choose it')
KEYS_CHANGED = ('it changes how ssh checks host keys (%s), which is the controller\'s choice: '
                'set it in ~/.ssh/config or ansible_ssh_common_args in group_vars/')


def option_reason(name, value):
    """Why the -o option ``name`` (with ``value``) is refused for what it
    does, or None when it is merely not on the allow-list."""
    low = name.lower()
    if low in _COMMANDS:
        return RUNS_COMMAND % name
    if low in _HOST_KEYS:
        off = settings_problems({low: value.split()})
        return KEYS_OFF % '; '.join(off) if off else KEYS_CHANGED % name
    if low in _CONFIG_FILES:
        return _FLAG_REASONS['-F'].replace('names an ssh config file', 'includes ssh config files')
    return None


def flag_reason(flag):
    """Why the ssh flag ``flag`` (``-F``) is refused for what it does, or None."""
    return _FLAG_REASONS.get(flag)


def joined(args):
    """ssh argv items as one string that Ansible's ``shlex.split`` (and the
    collection's, for the copy) gives back item for item."""
    return ' '.join(shlex.quote(arg) for arg in args)
