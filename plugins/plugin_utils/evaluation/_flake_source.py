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

from urllib.parse import quote, unquote, urlsplit

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


class FlakeSource(object):
    """``ref``: what every evaluator of the run evaluates; ``identity``: the
    cache's key part (None: not cacheable); ``provenance``: what was
    evaluated, for results and the report; ``reason``: why the flake is not
    pinned (None when it is)."""

    def __init__(self, flake, ref, identity_=None, provenance=None, reason=None, root=None,
                 local=False):
        self.flake = flake
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
                'local': self.local}

    @classmethod
    def from_data(cls, data):
        return cls(data['flake'], data['ref'], data.get('identity'), data.get('provenance'),
                   data.get('reason'), data.get('root'), bool(data.get('local')))


def pin(runner, flake):
    """The ``FlakeSource`` of ``flake`` from one ``nix flake metadata``."""
    local = is_local(flake)
    try:
        data = runner.json('flake metadata', ['--json', flake],
                           'reading the flake\'s locked reference', flake_command=True)
    except NixError as exc:
        return FlakeSource(flake, flake, reason=u'nix flake metadata failed: %s'
                           % (exc.nix_message() or exc.message), local=local)
    if not isinstance(data, dict):
        return FlakeSource(flake, flake, reason='nix flake metadata gave no locked reference',
                           local=local)
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
                           reason='nix flake metadata gave no locked URL', local=local)
    query = url_query(url)
    found = identity(data)
    if names_its_content(locked, query):
        ref, root = url, None
    else:
        ref = snapshot_ref(data, locked, query, runner.features())
        root = data.get('path')
        if ref is None:
            return FlakeSource(flake, flake, provenance=dict(provenance, pinned=False),
                               reason='its locked reference %s names no content and Nix gave '
                               'no store copy of it' % _redact.url(url), local=local)
        if found is not None:
            # the cache keys by what was evaluated: the snapshot
            found = dict(found, url=ref)
    provenance['evaluated'] = _redact.url(ref)
    return FlakeSource(flake, ref, found, provenance, root=root, local=local)


# input types whose locked URL names its content by a commit (Nix's own
# ``locked.rev``: github:o/r/<rev> carries it in its path, not its query)
_BY_REV = ('git', 'hg', 'github', 'gitlab', 'sourcehut')
# input types whose locked URL names its content by its narHash, which Nix
# checks when it fetches them (it does NOT for a dirty git tree's URL)
_BY_HASH = ('path', 'tarball', 'file')


def names_its_content(locked, query):
    """Whether Nix fetches exactly the locked content for this locked URL
    (or fails): decided from Nix's own locked attributes and the input's
    type, never from a query a user may have written (a ``narHash`` in a
    ``git+file`` URL of a dirty tree is kept and not checked)."""
    kind = locked.get('type')
    if kind in _BY_REV:
        return bool(locked.get('rev'))
    if kind in _BY_HASH:
        nar_hash = locked.get('narHash')
        return bool(nar_hash) and (query.get('narHash') or [None])[0] == nar_hash
    return False


def url_query(url):
    """{name: [values]} of ``url``'s query, each value %-decoded only: a
    narHash's base64 holds ``+``, which Nix writes as it is and a form
    decoder would read as a space."""
    found = {}
    for item in urlsplit(url).query.split('&'):
        if item:
            name, _sep, value = item.partition('=')
            found.setdefault(unquote(name), []).append(unquote(value))
    return found


def is_local(flake):
    """Whether ``flake`` names a folder of the controller (a path, ``path:``,
    ``git+file:``, ``hg+file:``): what a writer of the work tree can change."""
    text = str(flake)
    return text.startswith(('/', '.', '~', 'path:', 'git+file:', 'hg+file:', 'file:'))


def snapshot_ref(data, locked, query, features):
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
        if features.path_dir:
            params.insert(0, ('dir', sub))
        else:
            # Nix before 2.25 takes no ``dir`` on a path: flake: the folder
            # inside the snapshot, as immutable as it (a file the subflake
            # imports from above its folder is then not there: the
            # evaluation fails, never reads other content)
            path = '%s/%s' % (path, sub.strip('/'))
            params = []
    query_text = '&'.join('%s=%s' % (k, quote(v, safe='/')) for k, v in params)
    return 'path:%s' % path + ('?' + query_text if query_text else '')


# settings of the controller's effective Nix configuration that make an
# evaluation read more than the flake (native code, plugins' primops)
IMPURE_CONFIG = ('allow-unsafe-native-code-during-evaluation', 'plugin-files',
                 'extra-builtins-file')


def impure_config(runner):
    """Why the controller's effective Nix configuration (nix.conf, the
    environment's NIX_CONFIG, nix_options) lets an evaluation read more than
    its flake (native code, plugins), or None: one ``nix config show
    --json``."""
    sub = 'config show' if runner.features().config_show else 'show-config'
    try:
        data = runner.json(sub, ['--json'], 'reading the Nix configuration')
    except NixError as exc:
        return u'the Nix configuration could not be read: %s' % (exc.nix_message() or exc)
    if not isinstance(data, dict):
        return 'the Nix configuration could not be read'
    for name in IMPURE_CONFIG:
        setting = data.get(name)
        value = setting.get('value') if isinstance(setting, dict) else setting
        if value not in (None, False, '', [], {}):
            return u'the Nix configuration sets %s' % name
    # pure-eval is not read here: Nix 2.8 reports false by default, and a
    # flake evaluation is pure unless --impure (which is never cached)
    return None


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

        def compute(path):
            found = pin(runner, flake)
            if found.root and path:
                _root(runner, found, path + '.root')
            return found.to_data()

        found = FlakeSource.from_data(self._once('source-%s' % key, compute))
        self._known[key] = found
        return found

    def config_reason(self, runner, key):
        """``impure_config`` of ``runner``'s Nix, asked once per run and Nix
        setup (``key``)."""
        return self._once('config-%s' % key, lambda _path: {
            'reason': impure_config(runner)})['reason']

    def _once(self, name, compute):
        """``compute(path)`` (JSON data) the first time the run asks for
        ``name``, under a lock; what it gave every later time."""
        if self.folder is None:
            # no run around it (a stage used alone): computed for this object
            return self._known.setdefault(name, compute(None))
        path = os.path.join(self.folder, '%s.json' % name)
        with open(path + '.lock', 'a') as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                found = _read(path)
                if found is None:
                    found = compute(path)
                    write_json(path, found)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
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
            found = json.load(handle)
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _root(runner, found, link):
    """Keep the snapshot alive while the run evaluates it: an indirect GC
    root in the run's folder (gone with it; Nix then drops the root). A
    snapshot collected anyway fails its evaluation, never evaluates other
    content."""
    try:
        runner.run(None, ['--realise', found.root, '--add-root', link], tool='nix-store')
    except (OSError, ValueError):
        pass
