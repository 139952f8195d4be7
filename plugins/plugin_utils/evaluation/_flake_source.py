# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one content of each flake a run evaluates.

A run pins each flake reference once, with one ``nix flake metadata --json``
(``pin``), and every evaluator of the run (a batch's, a wave's, nix_build's,
one restarted for memory) evaluates the pinned reference (``FlakeSource.ref``)
that the run's sources (``RunSources``, one file per flake in the run's 0700
batch folder) hold, never the work tree again:

- a locked URL that names its content (a git ``rev``, a ``narHash``) is
  pinned as it is: Nix fetches exactly that or fails on the hash;
- a git work tree with uncommitted changes is not: its locked URL is plain
  ``git+file://...``, and Nix copies the tree again in every process (a
  ``narHash`` added to that URL is not even checked, Nix 2.8 to 2.34). Such a
  flake is evaluated from the snapshot ``nix flake metadata`` already copied
  to the store: ``path:<store path>?narHash=...&lastModified=...`` (rooted
  for the run's length). ``self.outPath``, ``self.narHash`` and
  ``self.lastModified`` are the tree's; ``self.rev`` is absent, as for the
  tree; ``self.dirtyRev`` (Nix 2.18+) is absent too, since a ``path:`` flake
  cannot carry it: the provenance keeps it (``dirty_revision``);
- anything else (metadata failed, no store copy) is evaluated as given and
  never cached (``FlakeSource.reason``), and the run says so once.

``FlakeSource.identity`` is what the evaluation cache keys by
(``_flake_identity``), None where the flake's inputs are not all locked.
``FlakeSource.provenance`` is what a host's result and the report name.
"""

import fcntl
import json
import os

from urllib.parse import parse_qs, quote, urlsplit

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._flake_identity import (
    identity)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _redact
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import (
    to_int, write_json)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._store import (
    is_store_path)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix_output import (
    flake_metadata)

# query parameters by which a locked URL names its content
_CONTENT_PARAMS = ('rev', 'narHash')


class FlakeSource(object):
    """``ref``: what every evaluator of the run evaluates; ``identity``: the
    cache's key part (None: not cacheable); ``provenance``: what was
    evaluated, for results and the report; ``reason``: why the flake is not
    pinned (None when it is)."""

    def __init__(self, flake, ref, identity_=None, provenance=None, reason=None, root=None):
        self.flake = flake
        self.ref = ref
        self.identity = identity_
        self.provenance = provenance or {'pinned': False}
        self.reason = reason
        # the snapshot's store path the run keeps rooted (None: no snapshot)
        self.root = root

    def to_data(self):
        return {'flake': self.flake, 'ref': self.ref, 'identity': self.identity,
                'provenance': self.provenance, 'reason': self.reason, 'root': self.root}

    @classmethod
    def from_data(cls, data):
        return cls(data['flake'], data['ref'], data.get('identity'), data.get('provenance'),
                   data.get('reason'), data.get('root'))


def pin(runner, flake):
    """The ``FlakeSource`` of ``flake`` from one ``nix flake metadata``."""
    try:
        data = runner.json('flake metadata', ['--json', flake],
                           'reading the flake\'s locked reference', flake_command=True)
    except NixError as exc:
        return FlakeSource(flake, flake, reason=u'nix flake metadata failed: %s'
                           % (exc.nix_message() or exc.message))
    if not isinstance(data, dict):
        return FlakeSource(flake, flake, reason='nix flake metadata gave no locked reference')
    facts = flake_metadata(data)
    locked = data.get('locked') if isinstance(data.get('locked'), dict) else {}
    url = facts['url']
    provenance = {
        'url': _redact.url(url) if url else None,
        'revision': facts['revision'],
        'dirty': facts['dirty'],
        'dirty_revision': facts['dirty_revision'],
        'nar_hash': facts['nar_hash'],
        'last_modified': facts['last_modified'],
        'pinned': True,
    }
    if not url or not isinstance(url, str):
        return FlakeSource(flake, flake, provenance=dict(provenance, pinned=False),
                           reason='nix flake metadata gave no locked URL')
    query = parse_qs(urlsplit(url).query)
    found = identity(data)
    if any(query.get(param) for param in _CONTENT_PARAMS):
        ref, root = url, None
    else:
        ref = snapshot_ref(data, locked, query)
        root = data.get('path')
        if ref is None:
            return FlakeSource(flake, flake, provenance=dict(provenance, pinned=False),
                               reason='its locked reference %s names no content (no rev, no '
                               'narHash) and Nix gave no store copy of it' % _redact.url(url))
        if found is not None:
            # the cache keys by what was evaluated: the snapshot
            found = dict(found, url=ref)
    provenance['evaluated'] = _redact.url(ref)
    return FlakeSource(flake, ref, found, provenance, root=root)


def snapshot_ref(data, locked, query):
    """``path:<store copy>?narHash=..&lastModified=..`` (with the flake's
    ``dir``) of a flake whose locked URL names no content, or None."""
    path, nar_hash = data.get('path'), locked.get('narHash')
    if not (isinstance(path, str) and is_store_path(path) and isinstance(nar_hash, str)
            and nar_hash):
        return None
    params = [('narHash', nar_hash)]
    last_modified = to_int(locked.get('lastModified'))
    if last_modified is not None:
        params.append(('lastModified', str(last_modified)))
    sub = (query.get('dir') or [''])[0]
    if sub:
        if sub.startswith('/') or '..' in sub.split('/'):
            return None
        # Nix takes no ``dir`` on a path: flake (2.8 refuses it): the folder
        # inside the snapshot, as immutable as the snapshot; its narHash and
        # lastModified are the whole tree's, which Nix would refuse here
        path = '%s/%s' % (path, sub.strip('/'))
        params = []
    query_text = '&'.join('%s=%s' % (k, quote(v, safe='/')) for k, v in params)
    return 'path:%s' % path + ('?' + query_text if query_text else '')


class RunSources(object):
    """The run's pinned sources, one JSON file per flake and Nix setup in
    ``folder`` (the run's batch folder, 0700 in Ansible's per-run temp
    folder): the first evaluator of the run to ask pins it, under a lock;
    every later one (another batch, a wave, another process) reads it."""

    def __init__(self, folder):
        self.folder = folder
        self._known = {}

    def source(self, runner, flake, key):
        """The ``FlakeSource`` of ``flake``; ``key``: a file-name-safe digest
        of the flake and the Nix setup that reads it."""
        if key in self._known:
            return self._known[key]
        if self.folder is None:
            # no run around it (a stage used alone): pinned for this object
            self._known[key] = pin(runner, flake)
            return self._known[key]
        path = os.path.join(self.folder, 'source-%s.json' % key)
        with open(path + '.lock', 'a') as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                found = _read(path)
                if found is None:
                    found = pin(runner, flake)
                    if found.root:
                        _root(runner, found, path + '.root')
                    write_json(path, found.to_data())
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        self._known[key] = found
        return found

    def warn_once(self, key):
        """True the first time the run asks for ``key`` (a marker file made
        with O_EXCL): a warning the run says once, not once per host."""
        if self.folder is None:
            return True
        try:
            os.close(os.open(os.path.join(self.folder, 'warned-%s' % key),
                             os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except OSError:
            return False
        return True


def _read(path):
    try:
        with open(path) as handle:
            return FlakeSource.from_data(json.load(handle))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _root(runner, found, link):
    """Keep the snapshot alive while the run evaluates it: an indirect GC
    root in the run's folder (gone with it; Nix then drops the root). A
    snapshot collected anyway fails its evaluation, never evaluates other
    content."""
    try:
        runner.run(None, ['--realise', found.root, '--add-root', link], tool='nix-store')
    except (OSError, ValueError):
        pass
