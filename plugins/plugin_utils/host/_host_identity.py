# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A host proves it is itself at every one of its addresses (controller only).

ssh checks a host key against the name it connects to, never against the
inventory host: at a fallback address (one of ``nix_target_hosts`` that is
not ``ansible_host``, or where an activation moved the host) a key known
for that address, another machine's, would pass. So at any address but its
own, the host is reached with ``HostKeyAlias`` set to the name known_hosts
holds its own key under (``key_name``) and ``StrictHostKeyChecking=yes``
(``fallback_options``): the key that answers must be the host's, and no key
is ever added for a fallback address (``accept-new`` adds none).

The name the host's key is known under, first found first:

- a ``HostKeyAlias`` the ssh config gives its ``ansible_host``;
- its inventory name, where a known_hosts file holds a key under it;
- its ``ansible_host`` as ssh keys it (``[address]:port`` off port 22),
  which is where a known_hosts file already holds it.

A machine that answers a fallback address with another key is named
(``impostor``): the inventory host whose key it is where a known_hosts
file says so, else a key not known for the host.
"""

import base64
import binascii
import hashlib
import hmac
import re

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._peer_ssh import (
    known_files, known_host_name)

# the attribute that holds, on an Ansible connection pointed at a fallback
# address (_reached.use_reached), the name its host's key is known under
ALIAS = '_nixdeploy_host_key_alias'
# ssh's debug line that gives the key a server answered with
SERVER_KEY = re.compile(r'Server host key: \S+ (SHA256:[A-Za-z0-9+/]+)')
# the fingerprint ssh prints when a known key changed
CHANGED_KEY = re.compile(r'\b(SHA256:[A-Za-z0-9+/]+)')
# what a fallback login adds for ssh to say the key that answered
SAY_KEY = ('-o', 'LogLevel=DEBUG1')


def fallback_options(alias):
    """The ssh options (first: ssh keeps the first value) that make the key
    answering at a fallback address the one known under ``alias``."""
    return ['-o', 'HostKeyAlias=%s' % alias, '-o', 'StrictHostKeyChecking=yes']


def key_name(target):
    """The name known_hosts holds ``target``'s own key under (``target``: a
    ``Host`` at its ``ansible_host``); see the module's docstring."""
    conf = target.ssh_config()
    alias = (conf.get('hostkeyalias') or ['none'])[0]
    if alias and alias.lower() != 'none':
        return alias
    if target.name and target.name != target.address and any(
            known_under(target.name, path) for path in known_files(conf)):
        return target.name
    if not conf.get('hostname'):
        # ssh could not say: as ssh keys the address it was given
        port = target.port or 22
        return target.address if port == 22 else '[%s]:%s' % (target.address, port)
    return known_host_name(conf)


# ------------------------------------------------------------ known_hosts
def _entries(path):
    """(host patterns, 'type base64') of each plain key line of a
    known_hosts file (no CA or revocation lines, no comments)."""
    try:
        with open(path, errors='replace') as handle:
            lines = handle.read().splitlines()
    except (IOError, OSError):
        return []
    found = []
    for line in lines:
        words = line.split()
        if len(words) < 3 or words[0].startswith(('#', '@')):
            continue
        found.append((words[0].split(','), '%s %s' % (words[1], words[2])))
    return found


def _matches(pattern, name):
    """Whether a known_hosts host pattern (plain or hashed ``|1|salt|hash``)
    is ``name``; wildcard and negated patterns are not taken as a name."""
    if pattern.startswith('|1|'):
        try:
            salt, digest = (base64.b64decode(part) for part in pattern[3:].split('|', 1))
        except (ValueError, binascii.Error):
            return False
        mac = hmac.new(salt, name.encode('utf-8'), hashlib.sha1).digest()
        return hmac.compare_digest(mac, digest)
    return pattern.lower() == name.lower()


def known_under(name, path):
    """Whether the known_hosts file ``path`` holds a key under ``name``."""
    return any(any(_matches(p, name) for p in patterns) for patterns, _key in _entries(path))


def fingerprint(key):
    """``SHA256:...`` of a 'type base64' key, as ssh prints it."""
    try:
        blob = base64.b64decode(key.split()[1])
    except (IndexError, ValueError, binascii.Error):
        return None
    return 'SHA256:' + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip('=')


def names_of(said_fingerprint, files):
    """The host patterns that known_hosts ``files`` hold the key of
    ``said_fingerprint`` under: plain names, and hashed ones (``|1|``, which
    only a name that is tried can match: ``owners``); no wildcard or
    negated pattern."""
    names = []
    for path in files:
        for patterns, key in _entries(path):
            if fingerprint(key) == said_fingerprint:
                names += [p for p in patterns
                          if not p.startswith('!') and '*' not in p and '?' not in p
                          and p not in names]
    return names


def answered_key(stderr):
    """The fingerprint of the key a server answered with, from ssh's
    words (its debug line, else the warning of a changed key), or None."""
    found = SERVER_KEY.findall(stderr or '')
    if found:
        # through a jump host the jump's own key comes first
        return found[-1]
    if 'REMOTE HOST IDENTIFICATION HAS CHANGED' in (stderr or ''):
        changed = CHANGED_KEY.findall(stderr)
        return changed[-1] if changed else None
    return None


def without_debug(stderr):
    """ssh's words with its debug lines (SAY_KEY's) left out."""
    return '\n'.join(line for line in (stderr or '').splitlines()
                     if not line.startswith('debug'))


def impostor(candidate, stderr):
    """The names (known_hosts') of the key that answered ``candidate`` (a
    ``Host`` at a fallback address) where ssh refused it, [] when no file
    ssh reads holds it."""
    said = answered_key(stderr)
    if not said:
        return []
    return names_of(said, known_files(candidate.ssh_config()))


def owners(places, names):
    """The inventory hosts of ``places`` ({host: (address, port)}: as
    ``_host.inventory_places`` gives them) that the known_hosts ``names``
    (plain or hashed) are: by name, or by address as ssh keys it (with its
    port off 22)."""
    found = []
    for host, (address, port) in sorted(places.items()):
        keyed = address if port in (None, '', 22, '22') else '[%s]:%s' % (address, port)
        if any(_matches(p, form) for p in names for form in (host, keyed)):
            found.append(host)
    return found


def refusal(address, name, names, found):
    """``10.0.0.5 answered with the key of `desktop`, not `laptop```:
    ``names``: the known_hosts names of the key, ``found``: their
    inventory hosts."""
    plain = [n for n in names if not n.startswith('|')]
    if found:
        whose = 'the key of %s' % ', '.join('`%s`' % h for h in found)
    elif plain:
        whose = 'the key known for %s' % ', '.join(plain[:3])
    elif names:
        whose = 'a key known_hosts holds for another host'
    else:
        return '%s answered with a key not known for `%s`' % (address, name)
    return '%s answered with %s, not `%s`' % (address, whose, name)
