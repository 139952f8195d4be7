# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The words for host trouble: what ssh, sudo, Ansible's become or a host's
Nix store said when reaching a host failed, in the user's words (a changed
host key, a refused login, a password sudo asks for, a full disk, a
read-only store, a stopped nix-daemon). Every stage that reaches a host
reads its failures here."""

import re

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix_stderr


def fault_message(host, text, doing, mount=None, said=None):
    """The user's words for a store fault ``text`` tells of (a full disk, a
    read-only store, a stopped nix-daemon; ``_nix_stderr.store_fault``) met
    while ``doing`` ('during the copy'), or None when it tells of none.
    ``said``: what to quote instead of the line that told."""
    kind, line = _nix_stderr.store_fault(text)
    line = said or line
    if kind == _nix_stderr.NO_SPACE:
        return ('no space left on %s on %s %s (%s): free space there (nix-collect-garbage -d) '
                'and deploy again' % (mount or '/nix', host, doing, line))
    if kind == _nix_stderr.READ_ONLY:
        return ('the Nix store on %s is read-only %s (%s): remount it read-write (or deploy '
                'to a host whose store can change)' % (host, doing, line))
    if kind == _nix_stderr.NO_DAEMON:
        return ('the nix-daemon on %s is not running %s (%s): start it (on systemd: systemctl '
                'start nix-daemon.socket; on macOS: launchctl kickstart -k '
                'system/org.nixos.nix-daemon) or connect as a user who opens the store itself '
                '(root)' % (host, doing, line))
    return None


# ssh's (and sudo's) own words for why the connection failed, our words for
# the task message, and whether the matching line adds anything.
SSH_PROBLEMS = (
    ('REMOTE HOST IDENTIFICATION HAS CHANGED',
     'the host key changed: it does not match known_hosts, refusing to connect', False),
    ('Host key verification failed', 'host key verification failed', False),
    ('Permission denied', 'ssh authentication was refused', True),
    ('not responding', 'the link went dead (ssh timed out)', True),
    ('Connection timed out', 'the connection timed out', True),
    ('Connection refused', 'the connection was refused', True),
    ('Broken pipe', 'the connection broke', False),
    ('unexpected end-of-file', 'the connection broke', False),
)

# Ansible's words when become cannot go on without a password it lacks
# (connection/ssh.py), and sudo's own
_BECOME_REFUSALS = (
    (re.compile(r'Missing (\w+) password'), 'Ansible'),
    (re.compile(r'Incorrect (\w+) password'), 'Ansible'),
    (re.compile(r'sudo: a password is required'), 'sudo'),
    (re.compile(r'sudo: unknown user:? ?([A-Za-z0-9_.$-]*)'), 'sudo'),
)

# what become_problem's words start with
BECOME_WORDS = ('the become_user ', 'the become password', 'sudo on the target asks')


def become_problem(text):
    """The user's words when become failed on the target (a password it
    asks for and was not given or was wrong, a become_user that does not
    exist), else ''."""
    for marker, who in _BECOME_REFUSALS:
        match = marker.search(text or '')
        if not match:
            continue
        said = match.group(0) if who == 'sudo' else '%s: %s' % (who, match.group(0))
        if 'unknown user' in said:
            return ('the become_user %s does not exist on the target (%s)'
                    % (match.group(1) or '?', said))
        if 'Incorrect' in said:
            return 'the become password was refused on the target (%s)' % said
        return ('sudo on the target asks for a password and none was given (%s): allow the '
                'ssh user passwordless sudo (the copy runs sudo -n nix-daemon: give signing_key '
                'instead to copy without sudo), or give become_password (--ask-become-pass) for '
                'the activation' % said)
    return ''


def ssh_problem(stderr):
    """A short reason when ssh or sudo (not Nix) made the copy fail, else ''."""
    become = become_problem(stderr)
    if become:
        return become
    for marker, reason, quote in SSH_PROBLEMS:
        if marker in (stderr or ''):
            line = [ln.strip() for ln in stderr.splitlines() if marker in ln][0]
            return '%s (%s)' % (reason, line) if quote and line != marker else reason
    return ''
