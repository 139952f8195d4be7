# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Copying a closure to a target: what is missing, who is trusted, how to send.

The controller side of ``nixdeploy.fleet.nix_copy_closure``. One probe over
the Ansible connection (a short sh script, no Python on the target) finds the
target's nix, tells whether its user may skip signature checks, and answers
the one validity query for the whole closure. Then ``nix copy --to ssh-ng://``
sends only the missing paths (push/substitute), or the target fetches them
from binary caches itself (cache). In cascade mode (``_cascade.py`` plans,
``_peer.py`` drives) the same probe runs over plain ssh and ``hop_script``
runs ``nix copy`` ON a host that holds the closure, to the next host.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import shlex

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _nix
from ansible_collections.nixdeploy.fleet.plugins.module_utils._platforms import known_nix_dirs_sh
from ansible_collections.nixdeploy.fleet.plugins.module_utils._store import is_store_path

_MARK = 'nixdeploy-copy-probe'

UNSIGNED_MARKERS = ('lacks a valid signature', 'lacks a signature')


class CopyError(Exception):
    """A copy failed; ``message`` names the host and the reason."""

    def __init__(self, message, stderr=''):
        super(CopyError, self).__init__(message)
        self.message = message
        self.stderr = stderr or ''


# ------------------------------------------------------------------ probe
def probe_script(remote_nix_dir=None, paths=None):
    """sh that finds nix, reports the user's trust facts and, reading store
    paths on stdin (or given as ``paths``), prints those the target's store
    does not hold."""
    if remote_nix_dir:
        search = 'for d in %s; do' % shlex.quote(remote_nix_dir)
    else:
        # $USER/$HOME expand on the target; the list itself is ours, not inventory data.
        search = ('for d in "$(command -v nix-store 2>/dev/null | sed \'s,/[^/]*$,,\')" %s; do'
                  % known_nix_dirs_sh())
    return '\n'.join([
        'USER=${USER:-$(id -un)}',
        'nixdir=',
        search,
        '  if [ -n "$d" ] && [ -x "$d/nix-store" ]; then nixdir=$d; break; fi',
        'done',
        'if [ -z "$nixdir" ]; then echo "%s no-nix"; exit 3; fi' % _MARK,
        'echo "%s nix_dir=$nixdir"' % _MARK,
        'echo "%s uid=$(id -u)"' % _MARK,
        'echo "%s user=$(id -un)"' % _MARK,
        'echo "%s groups=$(id -Gn | tr \' \' \',\')"' % _MARK,
        # Nix opens the store directly (trusting its caller) when it may write
        # /nix/var/nix and NIX_REMOTE does not point at a daemon.
        'if [ -w /nix/var/nix ] && [ -z "${NIX_REMOTE:-}" ]; then w=yes; else w=no; fi',
        'echo "%s store_writable=$w"' % _MARK,
        't=$("$nixdir/nix" --extra-experimental-features nix-command show-config 2>/dev/null'
        ' | sed -n \'s/^trusted-users = //p\')',
        'echo "%s trusted_users=$t"' % _MARK,
        # a cascade sender runs nix copy, and nix runs ssh from PATH
        'echo "%s ssh=$(command -v ssh 2>/dev/null)"' % _MARK,
        'echo "%s ssh_version=$(ssh -V 2>&1 </dev/null | sed -n 1p)"' % _MARK,
        _paths_line(paths),
        'echo "%s invalid-begin"' % _MARK,
        # store paths were checked on the controller: no spaces, no globs
        '"$nixdir/nix-store" --check-validity --print-invalid $paths || exit 4',
        'echo "%s invalid-end"' % _MARK,
    ])


def _paths_line(paths):
    if paths is None:
        return 'paths=$(cat)'
    bad = [p for p in paths if not is_store_path(p)]
    if bad:
        raise CopyError('not a store path: %r' % (bad[0],))
    return 'paths=%s' % shlex.quote(' '.join(paths))


def stdin_free(script):
    """``script`` as one compound command that reads nothing from stdin, for
    ``ssh host sh`` with the script on stdin: sh reads the whole group before
    running it, so nothing inside can swallow the rest of the script."""
    return '(\n%s\n) </dev/null\n' % script


def parse_probe(stdout):
    """Probe output -> dict(nix_dir, uid, user, groups, store_writable,
    trusted_users, invalid) or None when no nix was found."""
    facts = {'invalid': []}
    inside = False
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith(_MARK + ' '):
            item = line[len(_MARK) + 1:]
            if item == 'no-nix':
                return None
            if item == 'invalid-begin':
                inside = True
            elif item == 'invalid-end':
                inside = False
                facts['complete'] = True
            else:
                key, _sep, value = item.partition('=')
                facts[key] = value
        elif inside and is_store_path(line):
            facts['invalid'].append(line)
    facts['uid'] = int(facts['uid']) if facts.get('uid', '').isdigit() else None
    facts['groups'] = [g for g in facts.get('groups', '').split(',') if g]
    facts['trusted_users'] = facts.get('trusted_users', '').split()
    facts['store_writable'] = facts.get('store_writable') == 'yes'
    return facts


_OPENSSH = re.compile(r'OpenSSH_(\d+)\.(\d+)')


def openssh_version(text):
    """(major, minor) from ``ssh -V``'s output, or None when not OpenSSH."""
    match = _OPENSSH.search(text or '')
    return (int(match.group(1)), int(match.group(2))) if match else None


def is_trusted(facts):
    """Whether the target's daemon (or store) lets this user skip signatures."""
    if facts.get('uid') == 0 or facts.get('store_writable'):
        return True
    user = facts.get('user')
    groups = set(facts.get('groups') or [])
    for entry in facts.get('trusted_users') or []:
        if entry == '*' or entry == user or (entry.startswith('@') and entry[1:] in groups):
            return True
    return False


# ------------------------------------------------------------------ plan
def plan_trust(facts, check_sigs, signing_key, become, become_method, become_user):
    """Decide how the copy gets past the target's signature check.

    Returns (no_check_sigs, via_sudo, how). ``how`` is a word for the result:
    trusted | sudo | signed | unsigned.
    """
    trusted = is_trusted(facts)
    if check_sigs == 'false':
        return True, False, 'trusted' if trusted else 'unsigned'
    if check_sigs == 'true':
        return False, False, 'signed' if signing_key else 'unsigned'
    if trusted:
        return True, False, 'trusted'
    if signing_key:
        return False, False, 'signed'
    if become and (become_method or 'sudo') == 'sudo':
        # root's nix-daemon --stdio opens the store directly and trusts its
        # caller, so the copy needs no signatures; sudo must not ask (-n).
        return True, True, 'sudo'
    return False, False, 'unsigned'


def remote_program(nix_dir, via_sudo=False, become_user=None):
    daemon = '%s/nix-daemon' % nix_dir.rstrip('/')
    if not via_sudo:
        return [daemon]
    words = ['sudo', '-n']
    if become_user and become_user != 'root':
        words += ['-u', become_user]
    return words + ['--', daemon]


# ------------------------------------------------------------------ closure
def closure(opts, path, store=None):
    """[{'path', 'narSize'}] of ``path``'s closure in ``store`` (default: local)."""
    args = ['-r', '--json']
    if store:
        args += ['--store', store]
    info = _nix.Runner(opts).json(
        'path-info', args + [path],
        'cannot read the closure of %s%s' % (path, ' from ' + store if store else ''))
    if isinstance(info, dict):  # newer Nix: {path: info}
        info = [dict(v or {}, path=k) for k, v in info.items()]
    return [{'path': i['path'], 'narSize': int(i.get('narSize') or 0)} for i in info
            if i.get('valid', True)]


def sign(opts, path, key_file):
    _nix.Runner(opts).check('store sign', ['-r', '-k', key_file, path],
                            'cannot sign the closure of %s' % path)


def push(opts, path, uri, env, no_check_sigs=False, substitute=False, timeout=None):
    """``nix copy --to uri path``; returns the store paths Nix said it sent,
    or None when its output did not say (e.g. ``--quiet`` in nix_args)."""
    args = ['--to', uri]
    if no_check_sigs:
        args.append('--no-check-sigs')
    if substitute:
        # Before Nix 2.20 (NixOS/nix#9591, fixed by #9600) ssh-ng stores ignore
        # --substitute-on-destination and ask the target to substitute only when
        # builders-use-substitutes is set; pass both so every version substitutes.
        args += ['--substitute-on-destination', '--option', 'builders-use-substitutes', 'true']
    argv, rc, _out, err = _nix.Runner(opts, timeout).run('copy', args + [path], env=env)
    if rc != 0:
        raise _nix.NixError('nix copy to %s failed' % uri, argv=argv, rc=rc, stderr=err)
    return sent_paths(err)


_COPYING = re.compile(r"^copying path '(/nix/store/[^']+)' to ")
_COPYING_N = re.compile(r'^copying (\d+) paths')


def sent_paths(stderr):
    """The paths ``nix copy`` reported sending, from its progress lines."""
    told, sent = False, []
    for line in (stderr or '').splitlines():
        line = line.strip()
        if _COPYING_N.match(line):
            told = True
        match = _COPYING.match(line)
        if match:
            told = True
            sent.append(match.group(1))
    return sent if told else None


def fetch_script(nix_dir, path, caches):
    """sh run on the target: fetch ``path``'s closure from the first cache
    that has it (signatures checked by the target against its own keys)."""
    nix = shlex.quote('%s/nix' % nix_dir.rstrip('/'))
    lines = ['set -u', 'errs=']
    for cache in caches:
        lines.append(
            'if %s --extra-experimental-features nix-command copy --from %s %s 2>err.$$; then'
            ' rm -f err.$$; exit 0; fi' % (nix, shlex.quote(cache), shlex.quote(path)))
        lines.append("printf 'from %%s:\\n' %s >&2; cat err.$$ >&2" % shlex.quote(cache))
    lines.append('rm -f err.$$; exit 1')
    # run in a private temp dir so err files never collide
    return 'cd "$(mktemp -d)" && (\n%s\n); rc=$?; cd / ; exit $rc' % '\n'.join(lines)


# ------------------------------------------------------------------ cascade hop
HOP_ALIAS = 'nixdeploy-receiver'


def hop_script(nix_dir, known_keys, uri, path, port=None, no_check_sigs=False):
    """sh run ON a sender: ``nix copy --to <receiver's ssh-ng URI> path``.

    The receiver's host key is checked against ``known_keys`` ('type base64'
    lines the controller took from its own known_hosts), under the alias
    HOP_ALIAS, in a private temp folder the script removes on exit. Login
    uses the agent the controller forwarded for this hop only. Exit codes:
    96 no forwarded agent, 97 no temp folder, 98 no nix or ssh here (the
    sender cannot send); 255 never (it means the controller lost the sender).
    """
    nix = shlex.quote('%s/nix' % nix_dir.rstrip('/'))
    lines = ' '.join(shlex.quote('%s %s' % (HOP_ALIAS, key)) for key in known_keys)
    sshopts = ['-o UserKnownHostsFile=$d/known_hosts', '-o GlobalKnownHostsFile=/dev/null',
               '-o StrictHostKeyChecking=yes', '-o HostKeyAlias=%s' % HOP_ALIAS,
               '-o UpdateHostKeys=no', '-o ForwardAgent=no', '-o ControlMaster=no',
               '-o ControlPath=none', '-o BatchMode=yes', '-o ConnectTimeout=10',
               '-o ServerAliveInterval=5', '-o ServerAliveCountMax=3']
    if port:
        sshopts.append('-p %d' % int(port))
    copy = ['"$nix"', '--extra-experimental-features', 'nix-command', 'copy', '--to',
            shlex.quote(uri)]
    if no_check_sigs:
        copy.append('--no-check-sigs')
    copy.append(shlex.quote(path))
    return '\n'.join([
        'set -u',
        'nix=%s' % nix,
        'if [ ! -x "$nix" ] || ! command -v ssh >/dev/null 2>&1; then',
        '  echo "nixdeploy hop: no nix at $nix or no ssh client on PATH" >&2; exit 98; fi',
        'if [ -z "${SSH_AUTH_SOCK:-}" ] || [ ! -S "$SSH_AUTH_SOCK" ]; then',
        '  echo "nixdeploy hop: no forwarded ssh agent (sshd AllowAgentForwarding)" >&2; exit 96; fi',
        'umask 077',
        'd="${TMPDIR:-/tmp}/nixdeploy-hop.$$"',
        # $d goes into NIX_SSHOPTS, which Nix splits on whitespace
        'case $d in *[!A-Za-z0-9/._-]*) d=/tmp/nixdeploy-hop.$$ ;; esac',
        'mkdir "$d" || exit 97',
        'trap \'rm -rf "$d"\' EXIT',
        'trap \'rm -rf "$d"; exit 1\' HUP INT TERM',
        "printf '%%s\\n' %s >\"$d/known_hosts\"" % lines,
        'NIX_SSHOPTS="%s"' % ' '.join(sshopts),
        'export NIX_SSHOPTS',
        ' '.join(copy),
        'rc=$?',
        # keep 255 (ssh's own exit) and our own codes for what they mean
        'case $rc in 255|96|97|98) rc=1 ;; esac',
        'exit $rc',
    ])


def unsigned_message(host, who, stderr):
    return ('%s: the target refuses unsigned paths (its nix-daemon checks signatures for '
            'the non-trusted user %s). Fix it either way: give signing_key (a key made with '
            'nix-store --generate-binary-cache-key whose public half is in the target\'s '
            'trusted-public-keys), or connect as root / a user in the target\'s trusted-users '
            '(or with become via passwordless sudo). Nix said: %s'
            % (host, who, _last_error(stderr)))


# ssh's (and sudo's) own words for why the connection failed, our words for
# the task message, and whether the matching line adds anything.
SSH_PROBLEMS = (
    ('REMOTE HOST IDENTIFICATION HAS CHANGED',
     'the host key changed: it does not match known_hosts, refusing to connect', False),
    ('Host key verification failed', 'host key verification failed', False),
    ('a password is required', 'sudo on the target asks for a password; become for the copy '
     'needs passwordless sudo for nix-daemon (or give signing_key)', False),
    ('Permission denied', 'ssh authentication was refused', True),
    ('not responding', 'the link went dead (ssh timed out)', True),
    ('Connection timed out', 'the connection timed out', True),
    ('Connection refused', 'the connection was refused', True),
    ('Broken pipe', 'the connection broke', False),
    ('unexpected end-of-file', 'the connection broke', False),
)


def ssh_problem(stderr):
    """A short reason when ssh (not Nix) made the copy fail, else ''."""
    for marker, reason, quote in SSH_PROBLEMS:
        if marker in (stderr or ''):
            line = [ln.strip() for ln in stderr.splitlines() if marker in ln][0]
            return '%s (%s)' % (reason, line) if quote and line != marker else reason
    return ''


def looks_unsigned(stderr):
    return any(marker in (stderr or '') for marker in UNSIGNED_MARKERS)


def _last_error(stderr):
    err = _nix.NixError('', stderr=stderr)
    return err.nix_message().strip() or (stderr or '').strip()[-500:]
