# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Copying a closure to a target: what is missing, who is trusted.

The controller side of ``nixdeploy.fleet.nix_copy_closure``. One probe over
the Ansible connection (a short sh script, no Python on the target) finds the
target's nix, tells whether its user may skip signature checks, and answers
the one validity query for the whole closure. Then ``nix copy --to ssh-ng://``
sends only the missing paths (push/substitute), or the target fetches them
from binary caches itself (cache): how to send is ``_copy_send.py``'s. In
cascade mode (``_cascade.py`` plans, ``_peer.py`` drives) the same probe runs
over plain ssh and ``_copy_send.hop_script`` runs ``nix copy`` ON a host that
holds the closure, to the next host.
"""

import re

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _script
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._program_fields import (
    INT, NAME, PATH, STORE_PATH, TEXT, TRUSTED, FLAG, list_of, one_of)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._script import ROOT_STATE_DIR
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._store import (
    file_name, is_store_path)


# What a copy needs in the target's store besides the NAR size of the
# missing paths times free_space_margin: a block per path (a file system
# stores each path in whole blocks, and Nix's database gets a row), and a
# fixed reserve for the database's growth and write-ahead log during the
# import and for the activation after it (its state, the profile's links).
PATH_OVERHEAD = 4096
PROBE = 'copy-probe.sh'
# what the probe reports, each key's kind (plugin_utils/host/_program_fields.py):
# the target's nix, its trust of the user, the paths it lacks, its space, the
# system's GC root there, and its ssh (for a cascade hop from it)
FIELDS = {
    PROBE: {
        'no_nix': FLAG, 'nix_dir': PATH, 'uid': INT, 'user': NAME, 'groups': list_of(NAME, ','),
        'trusted_users': list_of(TRUSTED), 'store_writable': one_of('yes', 'no'),
        'invalid': list_of(STORE_PATH), 'store_df': TEXT, 'gc_root': PATH,
        'gc_root_error': TEXT, 'ssh': PATH, 'ssh_version': TEXT,
        'ssh_dir': one_of('yes', 'no'), 'ssh_agent_dir': one_of('yes', 'no'), 'complete': FLAG},
}
FREE_SPACE_RESERVE = 8 << 20


class CopyError(NixdeployError):
    """A copy failed; ``message`` names the host and the reason."""

    def __init__(self, message, stderr=''):
        super(CopyError, self).__init__(message)
        self.message = message
        self.stderr = stderr or ''


class CopyTimeout(CopyError):
    """A ``nix copy`` did not end within its bound and was stopped;
    ``seconds``: the bound. The message names the copy, not the host: the
    caller's ``timeout_message`` does."""

    def __init__(self, message, seconds, stderr=''):
        super(CopyTimeout, self).__init__(message, stderr)
        self.seconds = seconds


def timeout_message(host, what, seconds, fix):
    """The one message of a wait that hit its bound: the host, what it
    waited for and how long, and what to do (``fix``)."""
    return '%s: %s did not end within %ss and was stopped; %s' % (host, what, seconds, fix)


# what to do about a copy that hit _copy_send.COPY_TIMEOUT
COPY_STUCK_FIX = ('look at the receiving host\'s nix-daemon (another process holding its store '
                  'lock, a full disk) and at the link to it, then deploy again; a link too slow '
                  'for one closure an hour is better served from a cache near the host '
                  '(copy_mode: cache)')


# ------------------------------------------------------------------ probe
def probe_script(remote_nix_dir=None, paths=None, peer_facts=True, root_key=None,
                 root_path=None):
    """sh (target/copy-probe.sh) that finds nix, reports the user's trust
    facts and, reading store paths on stdin (or given as ``paths``), prints
    those the target's store does not hold, and the free space of its file
    system. ``peer_facts``: also what a cascade sender needs (its ssh, its
    version, whether ~/.ssh exists). ``root_key`` (an inventory name) and
    ``root_path``: plant the copy's GC root of ``root_path`` first (see
    copy-probe.sh); never in check mode."""
    if paths is not None:
        bad = [p for p in paths if not is_store_path(p)]
        if bad:
            raise CopyError('not a store path: %r' % (bad[0],))
    if root_key is not None and not is_store_path(root_path or ''):
        raise CopyError('not a store path: %r' % (root_path,))
    return _script.render(PROBE, {
        'NIX_DIR': remote_nix_dir or None,
        'READ_STDIN': paths is None,
        'STORE_PATHS': ' '.join(paths or []),
        'PEER_FACTS': peer_facts,
        'ROOT_KEY': root_key_of(root_key) if root_key is not None else None,
        'ROOT_PATH': root_path if root_key is not None else None,
        'ROOT_STATE': ROOT_STATE_DIR,
    }, FIELDS)


def probe_target(target, paths, remote_nix_dir=None, root_key=None, root_path=None,
                 sudoable=False):
    """The probe (a receiver's facts only) for ``paths`` on ``target`` (its
    ``Host``: over the task's connection; ``sudoable``: with its become),
    the paths on its stdin; ``root_key`` and ``root_path`` as for
    ``probe_script``. (rc, stdout, stderr, facts: ``parse_probe``'s)."""
    program = probe_script(remote_nix_dir, peer_facts=False, root_key=root_key,
                           root_path=root_path)
    rc, out, err = target.sh(program, in_data='\n'.join(paths) + '\n', sudoable=sudoable)
    return rc, out, err, parse_probe(out, program)


def root_key_of(host):
    """The file name of ``host``'s GC root on a target (copy and activation)."""
    return file_name(host)


def stdin_free(script):
    """``script`` as one compound command that reads nothing from stdin, for
    ``ssh host sh`` with the script on stdin: sh reads the whole group before
    running it, so nothing inside can swallow the rest of the script."""
    return '(\n%s\n) </dev/null\n' % script


def parse_probe(stdout, program):
    """What ``program`` (a ``probe_script``) printed -> dict(nix_dir, uid,
    user, groups, store_writable, trusted_users, ssh, ssh_version, invalid,
    complete) or None when no nix was found."""
    values, _log = program.parse(stdout)
    if values.get('no_nix') or not values.get('nix_dir'):
        return None
    # each value is of its type already (plugin_utils/host/_program_fields.py)
    facts = dict(values)
    facts['dropped'] = list(values.dropped)
    facts['invalid'] = values.get('invalid', [])
    facts['complete'] = values.get('complete', False)
    facts['uid'] = values.get('uid')
    facts['groups'] = values.get('groups', [])
    facts['trusted_users'] = values.get('trusted_users', [])
    facts['store_writable'] = values.get('store_writable') == 'yes'
    facts['free_kb'], facts['store_mount'] = _script.df_space(values.get('store_df'))
    facts['gc_root'] = values.get('gc_root')
    facts['gc_root_error'] = values.get('gc_root_error')
    return facts


def megabytes(size):
    """``size`` (bytes) in the user's words: '12 MB', '0.4 MB', '1.2 GB'."""
    mib = float(size) / (1 << 20)
    if mib >= 1024:
        return '%.1f GB' % (mib / 1024)
    if mib >= 10:
        return '%d MB' % round(mib)
    return '%.1f MB' % mib


def space_needed(missing, margin):
    """Bytes the target's store needs for ``missing`` ([{'path', 'narSize'}])."""
    nar = sum(p['narSize'] for p in missing)
    return int(nar * margin) + PATH_OVERHEAD * len(missing) + FREE_SPACE_RESERVE


def space_problem(host, facts, missing, margin):
    """The message when the target's store has too little room for the
    missing paths (None when it has, when nothing is missing, when the check
    is off: ``margin`` 0, or when df said nothing readable)."""
    free_kb = facts.get('free_kb')
    if not missing or not margin or free_kb is None:
        return None
    need = space_needed(missing, margin)
    free = free_kb * 1024
    if free >= need:
        return None
    nar = sum(p['narSize'] for p in missing)
    return ('no space left on %s on %s: %s free, the closure needs %s (%d missing paths, %s of '
            'NAR, times free_space_margin %s, plus %s for the store\'s database and the '
            'activation); nothing was sent. Free space there (nix-collect-garbage -d, or '
            'nix-env --delete-generations on old profiles) and deploy again'
            % (facts.get('store_mount') or '/nix', host, megabytes(free), megabytes(need),
               len(missing), megabytes(nar), '%g' % margin, megabytes(
                   FREE_SPACE_RESERVE + PATH_OVERHEAD * len(missing))))


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
    for trusted in facts.get('trusted_users') or []:
        if trusted == '*' or trusted == user or (trusted.startswith('@') and trusted[1:] in groups):
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
