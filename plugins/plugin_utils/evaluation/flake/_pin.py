# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The pin: one ``nix flake metadata --json`` of a flake, turned into the
one content every evaluator of the run evaluates (``FlakeSource``).

``pin`` decides whether the locked URL is evaluated as it is (it names its
content), or the store snapshot Nix already copied (a dirty work tree), or
nothing is pinned, and why; where the lock graph Nix resolved is not the
written flake.lock, it writes that graph to a private file of the run for
every evaluator (``_resolved_lock``). How a locked URL is read:
``_url``; the rules and why each holds: ``_source``.
``FlakeSource`` is also what the run's file of each flake holds
(``to_data``, ``from_data``).
"""

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.flake._identity import (
    identity, lock_mismatch)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.flake._url import (
    is_local, locks_every_input, names_its_content, shallow_ref, snapshot_ref, url_query)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _redact
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import write_json
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._store import (
    is_store_path)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix_output import (
    flake_metadata)


class FlakeSource(object):
    """``ref``: what every evaluator of the run evaluates; ``identity``: the
    cache's key part (None: not cacheable); ``provenance``: what was
    evaluated, for results and the report; ``reason``: why the flake is not
    pinned (None when it is)."""

    def __init__(self, flake, ref, identity_=None, provenance=None, reason=None, root=None,
                 local=False, lock_file=None, lock_note=None, store_path=None, sub=''):
        self.flake = flake
        # the store copy of the pinned content and the flake's folder in it:
        # what a recorded evaluation reads (reuse/_reuse)
        self.store_path = store_path
        self.sub = sub
        # the run's private copy of the lock graph the pin resolved, which
        # every evaluator reads (--reference-lock-file) instead of the
        # flake's stale flake.lock; None: its own flake.lock
        self.lock_file = lock_file
        # what of the written flake.lock that graph replaces, for the note
        self.lock_note = lock_note
        # a folder of the controller: not pinned, nothing of it is evaluated
        self.local = local
        self.ref = ref
        self.identity = identity_
        self.provenance = provenance or {'pinned': False}
        self.reason = reason
        # the snapshot's store path the run keeps rooted (None: no snapshot)
        self.root = root

    def to_data(self):
        return {'flake': self.flake, 'ref': self.ref, 'identity': self.identity,
                'provenance': self.provenance, 'reason': self.reason, 'root': self.root,
                'local': self.local, 'lock_file': self.lock_file, 'lock_note': self.lock_note,
                'store_path': self.store_path, 'sub': self.sub}

    @classmethod
    def from_data(cls, data):
        return cls(data['flake'], data['ref'], data.get('identity'), data.get('provenance'),
                   data.get('reason'), data.get('root'), bool(data.get('local')),
                   data.get('lock_file'), data.get('lock_note'), data.get('store_path'),
                   data.get('sub') or '')

    def eval_args(self):
        """What every evaluator of this source adds to its argv: the
        resolved lock graph, never written anywhere (``pin``)."""
        if not self.lock_file:
            return []
        return ['--reference-lock-file', self.lock_file, '--no-write-lock-file']


def pin(runner, flake, lock_path=None):
    """The ``FlakeSource`` of ``flake`` from one ``nix flake metadata``.
    ``lock_path``: a private file of the run where the lock graph Nix
    resolved may be written for every evaluator (None: nowhere)."""
    local = is_local(flake)
    data, failed = _read_metadata(runner, flake, local)
    if failed is not None:
        return failed
    facts = flake_metadata(data)
    url = facts['url']
    provenance = _provenance(facts)
    if not url or not isinstance(url, str):
        return _unpinned(flake, provenance, 'nix flake metadata gave no locked URL', local)
    stale = lock_mismatch(data)
    lock_file = None
    if stale:
        lock_file = _resolved_lock(runner, data, lock_path)
        if lock_file is None:
            # every evaluator would lock that input again from where it
            # lives now: one run, maybe two contents, under one `source`
            return _unpinned(flake, provenance,
                             u"the flake's lock file has a %s (each evaluator would "
                             u'lock it again from where it lives now): run `nix flake lock` '
                             u'and commit flake.lock' % stale, local)
        # every evaluator reads the graph this pin resolved: one content of
        # each input. The cache is left out: its key knows the flake's own
        # lock, and a lock graph of the run's is nobody's to look up again
        provenance['lock'] = u'resolved by the run (flake.lock has a %s)' % stale
    return _pinned(runner, flake, data, url, provenance, lock_file, stale, local)


def _read_metadata(runner, flake, local):
    """(``nix flake metadata``'s answer for ``flake``, None), or (None, the
    unpinned ``FlakeSource`` saying why there is none)."""
    try:
        data = runner.json('flake metadata', ['--json', flake],
                           'reading the flake\'s locked reference', flake_command=True)
    except NixError as exc:
        return None, FlakeSource(flake, flake, reason=u'nix flake metadata failed: %s'
                                 % (exc.nix_message() or exc.message), local=local)
    if not isinstance(data, dict):
        return None, FlakeSource(flake, flake,
                                 reason='nix flake metadata gave no locked reference',
                                 local=local)
    return data, None


def _provenance(facts):
    """The source's provenance from the flake's metadata ``facts``."""
    url = facts['url']
    return {
        'url': _redact.url(url) if url else None,
        'revision': facts['revision'],
        'dirty': facts['dirty'],
        'dirty_revision': facts['dirty_revision'],
        'nar_hash': facts['nar_hash'],
        'last_modified': facts['last_modified'],
        'pinned': True,
    }


def _unpinned(flake, provenance, reason, local):
    """``flake`` evaluated as it is named, for ``reason``."""
    return FlakeSource(flake, flake, provenance=dict(provenance, pinned=False), reason=reason,
                       local=local)


def _pinned(runner, flake, data, url, provenance, lock_file, stale, local):
    """The source evaluated at the content ``url`` (the locked URL of
    ``data``) names: that URL with its revision, or the store copy Nix gave
    (unpinned when it gave none)."""
    locked = data.get('locked') if isinstance(data.get('locked'), dict) else {}
    query = url_query(url)
    found = identity(data) if lock_file is None else None
    if names_its_content(locked, query):
        ref, root = shallow_ref(url, locked, query), None
    else:
        ref = snapshot_ref(data, locked, query, runner.features())
        root = data.get('path')
        if ref is None:
            return _unpinned(flake, provenance, 'its locked reference %s names no content and '
                             'Nix gave no store copy of it' % _redact.url(url), local)
        if found is not None:
            # the cache keys by what was evaluated: the snapshot
            found = dict(found, url=ref)
    provenance['evaluated'] = _redact.url(ref)
    store_path = data.get('path') if isinstance(data.get('path'), str) \
        and is_store_path(data.get('path')) else None
    sub = (query.get('dir') or [''])[0].strip('/')
    return FlakeSource(flake, ref, found, provenance, root=root, local=local,
                       lock_file=lock_file, lock_note=stale if lock_file else None,
                       store_path=store_path, sub=sub)


def _resolved_lock(runner, data, lock_path):
    """``lock_path`` with the lock graph ``nix flake metadata`` resolved
    (``data['locks']``), for ``--reference-lock-file``; None where that
    cannot hold one content of every input: no file of the run to write,
    a Nix without the flag (2.8), or an input the graph does not lock by
    its content (a commit, or a narHash Nix checks)."""
    locks = data.get('locks')
    if not lock_path or not isinstance(locks, dict) or not locks_every_input(locks):
        return None
    try:
        if not runner.features().reference_lock_file:
            return None
    except NixError:
        return None
    try:
        # private to the run's user: it names every input's location
        write_json(lock_path, locks, 0o600)
    except (OSError, IOError):
        return None
    return lock_path
