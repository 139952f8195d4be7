# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a flake's URL and its locked attributes say, read without Nix.

The pin (``_pin``) asks these of what ``nix flake metadata`` gave:
whether Nix fetches exactly the locked content (``names_its_content``: a
commit, or a narHash Nix checks), and whether a lock graph locks every
input so (``locks_every_input``); the URL of the store snapshot of a flake
whose locked URL names no content (``snapshot_ref``); ``shallow=1`` for a
commit of a shallow clone (``shallow_ref``); a URL's query, decoded as Nix
writes it (``url_query``); whether a flake names a folder of the controller
(``is_local``). Kept apart from the pin so that the pin reads as what it
decides and these as how each answer is read.
"""

import os

from urllib.parse import quote, unquote, urlsplit

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import to_int
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._store import is_store_path


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
