# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The words for host trouble: what ssh, sudo, Ansible's become or a host's
Nix store said when reaching a host failed, in the user's words (a changed
host key, a refused login, a password sudo asks for, a full disk, a
read-only store, a stopped nix-daemon). Every stage that reaches a host
reads its failures here."""

import re

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._printable import printable
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
    # ssh's own refusal is login_refused's; a bare one says as much as it can
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
                'ssh user passwordless sudo (the copy runs sudo -n nix-daemon: give signing_key, the deploy role\'s '
                'nix_signing_key, instead to copy without sudo), or give become_password (--ask-become-pass) for '
                'the activation' % said)
    return ''


# ssh's words when the server refused every way of logging in it offered
# ("root@10.0.0.2: Permission denied (publickey,password)."): the methods in
# parentheses tell it from a file's "Permission denied"
_LOGIN_REFUSED = re.compile(r'(?:([A-Za-z0-9_.][A-Za-z0-9_.$-]*)@([^\s:@]+|\[[^\]\s]+\]): )?'
                            r'(Permission denied \([A-Za-z0-9_,.@-]*\))')
# what a refused login needs (the message's last line)
LOGIN_FIX = ('to fix: the key ssh offers (ansible_ssh_private_key_file or your ssh-agent) must be '
             'in the authorized_keys of the user it logs in as (ansible_user)')
# ssh's words for a host it has no key of ("No ED25519 host key is known for
# 10.0.0.2 and you have requested strict checking.")
_KEY_UNKNOWN = re.compile(r'No \S+ host key is known for (\S+)')
# the lines of ssh's changed-key banner that only shout
_BANNER = re.compile(r'^(@|IT IS POSSIBLE THAT SOMEONE|Someone could be eaves|It is also possible '
                     r'that a host key|The fingerprint for|SHA256:|Please contact your system|'
                     r'Add correct host key in|Failed to connect to the host via ssh:\s*$)')
SAID_LINES = 5
SAID_CHARS = 160


def _said(text):
    """ssh's own lines of ``text`` worth showing, at most SAID_LINES, each
    at most SAID_CHARS, without the carriage returns of its terminal output
    and Ansible's prefix, each ``printable`` (text only)."""
    out = []
    for line in re.split(r'\r?\n|\r', text or ''):
        line = line.strip()
        if line.startswith('Failed to connect to the host via ssh:'):
            line = line[len('Failed to connect to the host via ssh:'):].strip()
        if not line or _BANNER.search(line) or line.startswith('Warning: Permanently added'):
            continue
        if len(line) > SAID_CHARS:
            line = line[:SAID_CHARS - 3].rstrip() + '...'
        out.append(printable(line))
    return out[-SAID_LINES:]


def host_key_refusal(text, address=None):
    """The user's words, in short lines, when ssh refused a host's key (it
    changed, or known_hosts has none): the cause, what ssh said, the way
    out; else ''. The first line keeps ``SSH_PROBLEMS``' words."""
    if 'REMOTE HOST IDENTIFICATION HAS CHANGED' in (text or ''):
        lead = 'the host key changed: it does not match known_hosts, refusing to connect'
        fix = ('to fix: if the host was reinstalled, check its new key and replace its line '
               '(ssh-keygen -R %s -f <known_hosts>); if not, someone may pose as it'
               % (address or '<address>'))
    elif _KEY_UNKNOWN.search(text or ''):
        unknown = _KEY_UNKNOWN.search(text).group(1)
        lead = 'host key verification failed: known_hosts has no key of %s' % unknown
        fix = ('to fix: add its key to the known_hosts file ssh reads, checked against the '
               'host\'s own (ssh-keyscan %s; ssh-keygen -lf on the host)' % unknown)
    elif 'Host key verification failed' in (text or ''):
        lead, fix = 'host key verification failed', None
    else:
        return ''
    lines = [lead] + ['  ssh said: %s' % line for line in _said(text)]
    if fix:
        lines.append('  %s' % fix)
    return '\n'.join(lines)


def login_refused(text, destination=None):
    """The user's words when ssh's login was refused (a wrong key or user:
    ``ssh login refused for root@web1: key or user (Permission denied
    (publickey))``), else ''. The user and host are ssh's own, else
    ``destination`` (``user@host``), else the host is not named."""
    match = _LOGIN_REFUSED.search(text or '')
    if not match:
        return ''
    who = '%s@%s' % (match.group(1), match.group(2)) if match.group(1) else destination
    return 'ssh login refused%s: key or user (%s)' % (' for %s' % who if who else '',
                                                      match.group(3))


def ssh_problem(stderr):
    """A short reason when ssh or sudo (not Nix) made the copy fail, else ''."""
    become = become_problem(stderr)
    if become:
        return become
    refused = login_refused(stderr)
    if refused:
        return refused
    for marker, reason, quote in SSH_PROBLEMS:
        if marker in (stderr or ''):
            line = [ln.strip() for ln in stderr.splitlines() if marker in ln][0]
            return '%s (%s)' % (reason, line) if quote and line != marker else reason
    return ''
