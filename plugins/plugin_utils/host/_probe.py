# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Can the controller reach a host at all, and at which of its addresses?

Asked once a run, beside the host's evaluation (plugins/action/nix_eval.py),
so that nothing is built or copied for a host that is off, and so that a
host with several addresses (``nix_target_hosts``: LAN, Wi-Fi, a tunnel) is
reached at the first one that answers for the rest of the run.

The probe is one ssh login per address, with the host's own connection
(``Host``: user, port, key, ssh options, its jump host) and a time limit;
it reads ssh's exit code and ssh's messages on stderr (which say why a
login failed; decoded with errors replaced). Where the platform's system
profile is known, its one program also reads the profile's current
generation number (``readlink``: no write), printed in one framed line,
which is all of the host's output it reads (``generation_of``): the
generation a host that fails or stops later is known to be on. A host
that answers with a key ssh refuses is never "unreachable" (docs/security.md):
where Ansible's ssh checks its key as the probe does, the next address is
tried (another machine may hold this one now) and where none logs in the host
fails now, before its build (``host_key_message``), in the words its copy
would have said; where its key is not checked (``nix_host_key_unchecked``:
Ansible's ssh logs in with StrictHostKeyChecking=no, which the probe's own
ssh lacks) it is reached, and the phases that log in judge it, honouring the
opt-out. A host that refuses the
login (a wrong ``ansible_user`` or key) is there but no phase could log in:
the next address is tried, and where none logs in the host fails now,
before its build (``login_refused_message``), not at its copy.
At any address but its ``ansible_host`` only its own key passes
(plugin_utils/host/_host_identity.py): another one is named, and the next
address is tried.

The address found is kept in a file of the run (under Ansible's local temp
folder, which lives as long as the ``ansible-playbook`` process): every later
task of the collection points its connection there, and the batch's work
for other hosts (the cascade) reaches the host there (``_reached``).
"""

import os
import re
import shlex
import time

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._printable import printable
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _diagnosis, _host_identity
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._peer_ssh import (
    TimedOut, run_no_tty)

# seconds one address may take to answer (the role variable nix_probe_timeout)
PROBE_TIMEOUT = 10
# what the probe runs once logged in where no profile is to be read
PROBE_PROGRAM = 'exit 0\n'
# the line framing the generation the probe read (nothing else is read):
# this word, the probe's own unguessable mark (_script.new_mark), the number
GENERATION_MARK = 'nixdeploy-probe-generation'
# ssh's exit code for its own failures (the remote command's are others)
SSH_FAILED = 255

# the host answered with a key ssh refuses (changed, unknown)
HOST_KEY = 'host key'
# Why a login failed, from ssh's own words: (reason, markers). The first
# reason whose marker one of ssh's lines holds is the one given.
REASONS = (
    (HOST_KEY, ('Host key verification failed', 'REMOTE HOST IDENTIFICATION HAS CHANGED',
                'host key is known')),
    ('login refused', ('Permission denied',)),
    ('no route', ('No route to host', 'Network is unreachable')),
    ('connection refused', ('Connection refused',)),
    ('timeout', ('timed out',)),
    ('unknown name', ('Could not resolve hostname', 'Name or service not known',
                      'Temporary failure in name resolution', 'nodename nor servname')),
    ('connection closed', ('Connection closed by', 'Connection reset by',
                           'kex_exchange_identification')),
)
# a reason that says too little: ssh's words were lost (see reach)
VAGUE = 'connection closed'
# ssh's words when it could not open a connection at all (refused, timed
# out, no route; a name that does not resolve): nothing it was to run
# started on the host
NOT_CONNECTED = ('ssh: connect to host ', 'Could not resolve hostname')
# the host refused the login: it is there, but nothing can log in
LOGIN_REFUSED = 'login refused'
# what the host itself answered with: it is there (its own key, not a jump's)
ANSWERED = (HOST_KEY, LOGIN_REFUSED)
# where nothing listened: ssh names the port it tried ("ssh: connect to host
# 10.0.0.5 port 2222: Connection refused")
REFUSED_PORT = re.compile(r'\bport (\d+): Connection refused')
SSH_PORT = 22
# through a jump host: the jump logged in but could not open the way on
FORWARDING = ('stdio forwarding failed', 'channel 0: open failed')
# through a jump host: the jump's own ssh failed (the outer ssh then says so)
JUMP_CLOSED = 'Connection closed by UNKNOWN port 65535'
# a fallback address answered with a key that is not the host's own
NOT_ITS_KEY = 'not its host key'


class Tried(object):
    """One address the probe tried: how it went and how long it took
    (``key_names``: where another host's key answered, the names known_hosts
    holds that key under)."""

    __slots__ = ('address', 'reason', 'said', 'seconds', 'key_names', 'port', 'refusal')

    def __init__(self, address, reason, said, seconds, key_names=(), port=None, refusal=''):
        self.address, self.reason, self.said, self.seconds = address, reason, said, seconds
        self.key_names = list(key_names)
        # the port the connection used (its ansible_port, else ssh's own)
        self.port = port
        # a refused host key: the words the copy would say (cause, ssh's
        # lines, the fix), for host_key_message
        self.refusal = refusal

    def line(self):
        """``10.0.0.5: no route (ssh: connect to host ... No route to host)``;
        where another key answered, what ``name_owners`` said of it; where
        nothing listened, which port to check."""
        if self.reason == NOT_ITS_KEY and self.said:
            return self.said
        text = '%s: %s' % (self.address, self.reason)
        text = '%s (%s)' % (text, self.said) if self.said else text
        port = self.refused_port()
        if port is not None:
            text += ': nothing listens on port %s of %s: check ansible_port' % (port, self.address)
        return text

    def refused_port(self):
        """The port where nothing listened (a refused connection), else None:
        the one ssh names, else the connection's."""
        if self.reason != 'connection refused':
            return None
        named = REFUSED_PORT.search(self.said or '')
        return named.group(1) if named else (self.port or SSH_PORT)

    def as_dict(self):
        return {'address': self.address, 'reason': self.reason, 'said': self.said,
                'seconds': round(self.seconds, 2)}


def has_jump(target):
    """Whether ``target``'s ssh options (a ``Host``'s) name a jump host
    (ProxyJump, ``-J``)."""
    words = list(target.common_args) + list(target.extra_args)
    for i, word in enumerate(words):
        if word == '-J' or word.startswith('-J') and len(word) > 2:
            return True
        option = word if word.startswith('-o') and len(word) > 2 else (
            words[i + 1] if word == '-o' and i + 1 < len(words) else '')
        if option.lstrip('-o').strip().lower().startswith(('proxyjump', 'proxycommand')):
            return True
    return False


def reason_of(stderr, jumped=False):
    """(reason, ssh's line that says it) for a failed login, from ssh's own
    words; through a jump host (``jumped``) it says which hop failed."""
    text = stderr or ''
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason, said = None, printable(lines[-1])[:160] if lines else ''
    for name, markers in REASONS:
        found = [line for line in lines if any(marker in line for marker in markers)]
        if found:
            reason, said = name, printable(found[0])[:160]
            break
    if jumped and any(marker in text for marker in FORWARDING):
        return 'the jump host could not reach it' + (' (%s)' % reason if reason else ''), said
    if jumped and JUMP_CLOSED in text:
        return 'jump failed' + (' (%s)' % reason if reason else ''), said
    return reason or 'ssh failed', said


def never_connected(text):
    """Whether ssh's words ``text`` say it could not open a connection."""
    return any(marker in (text or '') for marker in NOT_CONNECTED)


def probe_program(profile, mark):
    """The probe's one program: with ``profile`` (the platform's system
    profile, a path of the platform table) the number N of the
    ``NAME-N-link`` it points to, in one line framed with ``mark`` (a
    login's greeting cannot forge it: ``_script.new_mark``; nothing when it
    is no such link: a host never deployed); it always exits 0."""
    if not profile:
        return PROBE_PROGRAM
    name = shlex.quote(os.path.basename(profile))
    return ('link=$(readlink -- %s 2>/dev/null) || exit 0\n'
            'case $link in %s-*-link) n=${link#%s-}; printf \'%s %%s\\n\' "${n%%-link}" ;; esac\n'
            'exit 0\n' % (shlex.quote(profile), name, name, _frame(mark)))


def _frame(mark):
    return '%s-%s' % (GENERATION_MARK, mark)


def generation_of(stdout, mark):
    """The generation number the probe's program framed with ``mark`` in
    ``stdout`` (the host's output: only the framed line is read), or None."""
    framed = re.compile(r'^%s ([0-9]{1,9})$' % re.escape(_frame(mark)))
    for line in (stdout or '').splitlines():
        found = framed.match(line.strip())
        if found:
            return int(found.group(1))
    return None


def reach(target, addresses, timeout=PROBE_TIMEOUT, master=None, keys_checked=False,
          program=PROBE_PROGRAM, heard=None):
    """The first of ``addresses`` at which ``target`` (a ``Host``) logs in,
    within ``timeout`` seconds each: (address or None, [Tried, ...] for
    the addresses that failed before it). ``master``: the ssh arguments of
    the master the host's later tasks ride at its own address
    (``_host_key_judge.probe_master``): the probe's login there opens it,
    so the probe costs no login of its own. ``keys_checked``: Ansible's ssh
    checks the host's key as the probe's does, so a key refused at its own
    address is the host's failure (else its phases judge it). ``program``:
    what the login runs (``probe_program``); ``heard`` (a dict): gets its
    ``stdout`` where a login went through."""
    tried = []
    jumped = has_jump(target)
    for address in addresses:
        candidate = target.at(address)
        started = time.monotonic()
        opens = master if master and address == target.address else None
        rc, out, err = _login(candidate, timeout, opens, program)
        if rc == SSH_FAILED and opens and VAGUE in reason_of(err, jumped)[0]:
            # a master's own process keeps no stderr of a jump host's ssh:
            # once more without it, for ssh's own words (the way answered)
            rc, out, err = _login(candidate, timeout, program=program)
        seconds = time.monotonic() - started
        if rc != SSH_FAILED:
            # logged in: whatever the shell's exit code, the host answered
            if heard is not None:
                heard['stdout'] = out
            return address, tried
        reason, said = reason_of(_host_identity.without_debug(err), jumped)
        if reason == HOST_KEY and candidate.key_alias:
            # a fallback address answered with a key that is not the
            # host's own: another machine holds it now (or the host's key
            # is unknown there); passed over, and named
            names = _host_identity.impostor(candidate, err)
            tried.append(Tried(address, NOT_ITS_KEY, _host_identity.refusal(
                address, target.name, names, []), seconds, names))
            continue
        if reason == LOGIN_REFUSED:
            # the host is there, but refuses this user or key: another of
            # its addresses may log in (another sshd, another network's
            # rules); where none does, the host fails (login_refused_message)
            tried.append(Tried(address, reason, said, seconds))
            continue
        if reason == HOST_KEY and keys_checked:
            # its key is refused where every phase would refuse it too: the
            # next address may prove the host's own key (another machine
            # may hold this one now); where none does, the host fails
            # (host_key_message), never unreachable
            tried.append(Tried(address, reason, said, seconds, refusal=_diagnosis.host_key_refusal(
                _host_identity.without_debug(err), address)))
            continue
        if reason in ANSWERED:
            # the host answered there, with a key ssh refuses: no network
            # matter, and never one to pass over. The phases that log in
            # judge it (an opt-out is honoured there)
            return address, tried
        tried.append(Tried(address, reason, said, seconds, port=target.port))
    return None, tried


def _login(candidate, timeout, master=None, program=PROBE_PROGRAM):
    """One login probe of ``candidate`` (a Host at one address): (ssh's
    exit code, the program's stdout, ssh's stderr)."""
    # first: ssh keeps the first value of an option, so the probe's own
    # bound wins over a longer ConnectTimeout of the inventory's (and its
    # master over the collection's NO_MASTER)
    first = ['-o', 'ConnectTimeout=%d' % max(1, timeout)] + list(master or ())
    if candidate.key_alias:
        # at a fallback address ssh says the key that answered (a refused
        # one is named)
        first += list(_host_identity.SAY_KEY)
    try:
        # the process bound covers a jump host's own login too, which
        # ConnectTimeout does not reach
        rc, out, err = run_no_tty(candidate.ssh_argv('sh', first=first),
                                  stdin_data=program, timeout=timeout + 5)
    except TimedOut:
        rc, out, err = SSH_FAILED, '', 'timed out after %ss' % (timeout + 5)
    return rc, out, err


def name_owners(name, tried, places):
    """Say of each address of ``tried`` where another key answered whose
    key it is: the inventory host that known_hosts holds it for (``name``:
    the host probed; ``places``: what gives {host: (address, port)} of the
    inventory, asked only then: ``_host.inventory_places``)."""
    refused = [t for t in tried if t.reason == NOT_ITS_KEY and t.key_names]
    known = places() if refused else {}
    for entry in refused:
        entry.said = _host_identity.refusal(entry.address, name, entry.key_names,
                                            _host_identity.owners(known, entry.key_names))


def login_refused_message(target, tried):
    """Where no address logged in and one refused the login (``tried``),
    the message of the host's failure: the user and address ssh was refused
    as, ssh's words, how the other addresses went, and the fix; else ''.
    ``target``: the ``Host`` probed (its user, when ssh names none)."""
    refused = [t for t in tried if t.reason == LOGIN_REFUSED]
    if not refused:
        return ''
    first = refused[0]
    destination = '%s@%s' % (target.user, first.address) if target.user else first.address
    text = _diagnosis.login_refused(first.said, destination) or (
        'ssh login refused for %s: key or user (%s)' % (destination, first.said))
    others = [t for t in tried if t is not first]
    if others:
        text += '; %s' % '; '.join(t.line() for t in others)
    return '%s: nothing was built or copied for it\n  %s' % (text, _diagnosis.LOGIN_FIX)


def host_key_message(tried):
    """Where no address logged in and the host's own address answered with
    a key ssh refuses (``tried``), the message of the host's failure: the
    copy's words (cause first, ssh's lines, the fix last), how the other
    addresses went; else ''."""
    refused = [t for t in tried if t.reason == HOST_KEY and t.refusal]
    if not refused:
        return ''
    first = refused[0]
    lines = first.refusal.split('\n')
    lead = '%s (at %s): nothing was built or copied for it' % (lines[0], first.address)
    others = [t for t in tried if t is not first]
    if others:
        lead += '; %s' % '; '.join(t.line() for t in others)
    return '\n'.join([lead] + lines[1:])


def unreachable_message(name, tried):
    """One message naming the host, each address and why it failed."""
    if len(tried) == 1:
        return '%s is unreachable at %s' % (name, tried[0].line())
    return '%s is unreachable at each of its %d addresses: %s' % (
        name, len(tried), '; '.join(t.line() for t in tried))
