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
- a flake whose lock graph is not its written flake.lock (an input missing
  from it, a stale one: ``_flake_identity.lock_mismatch``): under
  ``--no-write-lock-file`` (or for a source Nix cannot write to) every
  evaluator would lock that input again from its live location. Where Nix
  takes ``--reference-lock-file`` (``NixFeatures.reference_lock_file``) and
  the graph Nix resolved locks every input by its content, that graph is
  written to a private file of the run and travels with the pin
  (``FlakeSource.lock_file``, ``eval_args``): every evaluator reads it, one
  content of every input; never cached. Otherwise (Nix 2.8) the run does not
  claim one content: a folder of the controller is not evaluated (its hosts
  fail, naming the input and ``nix flake lock``), a remote flake is
  evaluated as given, never cached;
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
    identity, lock_mismatch)
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
                 local=False, lock_file=None, lock_note=None, store_path=None, sub=''):
        self.flake = flake
        # the store copy of the pinned content and the flake's folder in it:
        # what a recorded evaluation reads (_eval_reuse)
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
    stale = lock_mismatch(data)
    lock_file = None
    if stale:
        lock_file = _resolved_lock(runner, data, lock_path)
        if lock_file is None:
            # every evaluator would lock that input again from where it
            # lives now: one run, maybe two contents, under one `source`
            return FlakeSource(flake, flake, provenance=dict(provenance, pinned=False),
                               reason=u"the flake's lock file has a %s (each evaluator would "
                               u'lock it again from where it lives now): run `nix flake lock` '
                               u'and commit flake.lock' % stale, local=local)
        # every evaluator reads the graph this pin resolved: one content of
        # each input. The cache is left out: its key knows the flake's own
        # lock, and a lock graph of the run's is nobody's to look up again
        provenance['lock'] = u'resolved by the run (flake.lock has a %s)' % stale
    query = url_query(url)
    found = identity(data) if lock_file is None else None
    if names_its_content(locked, query):
        ref, root = shallow_ref(url, locked, query), None
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


def locks_every_input(locks):
    """Whether every input node of ``locks`` (a lock file's data) is
    locked by what names its content: a commit (git, github...) or a
    narHash (path, tarball, file), which Nix checks when it fetches it."""
    nodes = locks.get('nodes')
    if not isinstance(nodes, dict):
        return False
    root = locks.get('root', 'root')
    for name, node in nodes.items():
        if name == root:
            continue
        locked = node.get('locked') if isinstance(node, dict) else None
        if not isinstance(locked, dict):
            return False
        kind = locked.get('type')
        if kind in _BY_REV:
            if not locked.get('rev'):
                return False
        elif kind in _BY_HASH:
            if not locked.get('narHash'):
                return False
        else:
            return False
    return True


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


def shallow_ref(url, locked, query):
    """``url`` with ``shallow=1`` where it names a commit of a shallow clone
    of this machine (a depth-1 checkout: a CI job's, AWX 21.4's). Nix
    fetches a commit of such a clone only when told so: Nix 2.20+ evaluates
    the clone's work tree, but refuses its locked URL ("shallow repositories
    are only allowed when `shallow = true;` is specified"). Told, it is the
    same commit, without a ``revCount`` (what a clone of one commit has to
    count is not the history's length)."""
    if locked.get('type') != 'git' or not locked.get('rev') or 'shallow' in query:
        return url
    parts = urlsplit(url)
    if parts.scheme != 'git+file' or not is_shallow_clone(unquote(parts.path)):
        return url
    return url + ('&' if parts.query else '?') + 'shallow=1'


def is_shallow_clone(path):
    """Whether the git repository at ``path`` (a work tree, a linked work
    tree or submodule whose ``.git`` is a file, or a bare repository) is a
    shallow clone: its common git folder holds ``shallow``. Read from the
    files, not asked of git (which refuses a repository another user owns,
    as a job's container's is)."""
    dot_git = os.path.join(path, '.git')
    gitdir = path
    if os.path.isdir(dot_git):
        gitdir = dot_git
    elif os.path.isfile(dot_git):
        try:
            with open(dot_git) as handle:
                line = handle.readline().strip()
        except (OSError, IOError, UnicodeDecodeError):
            return False
        if not line.startswith('gitdir:'):
            return False
        gitdir = os.path.join(path, line[len('gitdir:'):].strip())
    common = gitdir
    try:
        with open(os.path.join(gitdir, 'commondir')) as handle:
            common = os.path.join(gitdir, handle.readline().strip())
    except (OSError, IOError, UnicodeDecodeError):
        pass
    return os.path.isfile(os.path.join(common, 'shallow'))


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
                 'extra-builtins-file',
                 # only where nix_options opt in (every controller Nix process
                 # gets `accept-flake-config = false` after nix.conf and the
                 # user's NIX_CONFIG): the flake's nixConfig, which `nix config
                 # show` does not see, may then set pure-eval and IFD
                 'accept-flake-config')


# impure_config's reason where nix_options accept a flake's nixConfig (the
# stage's ACCEPTED_NOTE says it, cache or no cache)
ACCEPTED_CONFIG = (u'accept-flake-config is on (nix_options): the flake\'s nixConfig may '
                   u'set any Nix setting, import-from-derivation and pure-eval = false '
                   u'among them')


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
            if name == 'accept-flake-config':
                return ACCEPTED_CONFIG
            return u'the Nix configuration sets %s' % name
    saved = saved_flake_settings()
    if saved:
        return (u'Nix applies the flake settings saved as trusted in %s (%s) whatever '
                u'accept-flake-config says' % (saved[0], ', '.join(saved[1])))
    # pure-eval is not read here: Nix 2.8 reports false by default, and a
    # flake evaluation is pure unless --impure (which is never cached)
    return None


def saved_flake_settings(environ=None):
    """(file, [setting names]) of the flake settings a user once answered
    "y" to at Nix's question (Nix keeps them in trusted-settings.json of its
    data folder and applies them to a flake's nixConfig even with
    ``accept-flake-config = false``: checked on Nix 2.8 and 2.34), or None.
    Every folder Nix may read it from (``NIX_DATA_HOME`` on newer Nix,
    ``XDG_DATA_HOME``, ``~/.local/share``)."""
    environ = os.environ if environ is None else environ
    folders = []
    if environ.get('NIX_DATA_HOME'):
        folders.append(environ['NIX_DATA_HOME'])
    if environ.get('XDG_DATA_HOME'):
        folders.append(os.path.join(environ['XDG_DATA_HOME'], 'nix'))
    folders.append(os.path.join(os.path.expanduser('~'), '.local', 'share', 'nix'))
    for folder in folders:
        path = os.path.join(folder, 'trusted-settings.json')
        data = _read(path)
        if not data:
            continue
        names = sorted(name for name, values in data.items()
                       if isinstance(values, dict) and True in values.values())
        if names:
            return path, [u'%s' % n[:100] for n in names[:10]]
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
            # the resolved lock graph (pin) beside the source's own file
            found = pin(runner, flake, path[:-len('.json')] + '-flake.lock' if path else None)
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

    def once(self, name, compute):
        """``compute()`` (JSON data) the first time the run asks for
        ``name`` (a file-name-safe key), what it gave every later time."""
        return self._once(name, lambda _path: {'value': compute()})['value']

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
