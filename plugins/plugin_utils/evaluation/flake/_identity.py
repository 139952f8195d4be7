# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The locked identity of a flake: what the evaluation cache keys by
(``cache/_cache``). Read from ``nix flake metadata --json``: only a flake
whose every input Nix locked to a narHash, as its own flake.lock says, has
one.
"""

import json
import os

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._store import is_store_path


def identity(data):
    """The locked identity of a flake from its ``nix flake metadata --json``
    answer: its locked url (what to evaluate), narHash, rev/lastModified and
    its lock graph; None when any input is not locked to a narHash or the
    flake's own flake.lock differs from the graph Nix resolved (a stale lock
    file: Nix locks such an input anew in every process, maybe otherwise)."""
    locked = data.get('locked')
    if not isinstance(locked, dict) or not locked.get('narHash') or not data.get('url'):
        return None
    locks = data.get('locks') or {'nodes': {'root': {}}, 'root': 'root', 'version': 7}
    nodes = locks.get('nodes')
    root = locks.get('root', 'root')
    if not isinstance(nodes, dict) or root not in nodes:
        return None
    for name, node in nodes.items():
        if name == root:
            continue
        if not isinstance(node, dict) or not _is_locked(node.get('locked')):
            return None
    # every node the flake's own lock file decides must be as it is there:
    # one Nix locked anew (a stale flake.lock) could lock otherwise next time
    decided = _reachable(locks, root, set())
    if decided is None:
        return None
    if len(decided) > 1:
        written = _read_lock_file(data, locked)
        if written is None:
            return None
        written_nodes = written.get('nodes') or {}
        for name in decided - set([root]):
            theirs = written_nodes.get(name)
            if not isinstance(theirs, dict) or \
                    theirs.get('locked') != nodes[name].get('locked'):
                return None
    found = {
        'url': data['url'],
        'narHash': locked['narHash'],
        'locks': {'root': root, 'nodes': nodes},
    }
    for field in ('rev', 'lastModified', 'revCount'):
        if locked.get(field) is not None:
            found[field] = locked[field]
    return found


def lock_mismatch(data):
    """What of the lock graph Nix resolved (``nix flake metadata --json``'s
    ``locks``) the flake's own flake.lock (inside the source every evaluator
    reads) does not hold as it is: ``"missing input 'a/b'"`` (also when there
    is no flake.lock), ``"stale input 'a'"``; None when the written lock decides every
    input. Such an input is locked anew by every Nix process that reads the
    flake (``--no-write-lock-file``, a source Nix cannot write to), each from
    its live location: two evaluators of one run could see two contents.

    Inputs are compared by their path from the root (Nix may name the nodes
    of an equal graph otherwise than an older Nix wrote them); a ``follows``
    is resolved in each graph."""
    new = data.get('locks')
    if not isinstance(new, dict) or not isinstance(new.get('nodes'), dict):
        return None
    new_root = new.get('root', 'root')
    if not (new['nodes'].get(new_root) or {}).get('inputs'):
        return None
    locked = data.get('locked') if isinstance(data.get('locked'), dict) else {}
    old = _read_lock_file(data, locked)
    if old is None or not isinstance(old.get('nodes'), dict) or \
            old.get('root', 'root') not in old['nodes']:
        # no flake.lock (or none Nix could read): every input is missing
        old = {'nodes': {'root': {}}, 'root': 'root'}
    old_root = old.get('root', 'root')
    seen = set()
    todo = [((), new_root, old_root)]
    while todo:
        path, new_name, old_name = todo.pop(0)  # breadth first: the shortest path
        if (new_name, old_name) in seen:
            continue
        seen.add((new_name, old_name))
        new_inputs = (new['nodes'].get(new_name) or {}).get('inputs') or {}
        old_inputs = (old['nodes'].get(old_name) or {}).get('inputs') or {}
        for name in sorted(new_inputs):
            where = path + (name,)
            shown = "'%s'" % '/'.join(where)
            new_ref = _resolve(new, new_inputs[name])
            if new_ref is None:
                continue  # Nix's own graph: nothing to compare
            if name not in old_inputs:
                return 'missing input %s' % shown
            old_ref = _resolve(old, old_inputs[name])
            if old_ref is None:
                return 'missing input %s' % shown
            new_node, old_node = new['nodes'][new_ref], old['nodes'].get(old_ref)
            if not isinstance(old_node, dict) or \
                    old_node.get('locked') != (new_node or {}).get('locked'):
                return 'stale input %s' % shown
            todo.append((where, new_ref, old_ref))
    return None


def _resolve(locks, ref):
    """The node name an input reference (a name, or a follows path) names."""
    if isinstance(ref, list):
        return _follow(locks, ref)
    return ref if isinstance(ref, str) and ref in locks['nodes'] else None


def _is_locked(locked):
    if not isinstance(locked, dict):
        return False
    if locked.get('narHash'):
        return True
    # a path inside the parent's source (Nix 2.26+): covered by its narHash
    return locked.get('type') == 'path' and not str(locked.get('path', '/')).startswith('/')


def _follow(locks, path):
    """The node name an input path (['b', 'c']) leads to, or None."""
    nodes = locks['nodes']
    node = locks.get('root', 'root')
    for part in path:
        inputs = (nodes.get(node) or {}).get('inputs') or {}
        ref = inputs.get(part)
        if isinstance(ref, list):
            ref = _follow(locks, ref)
        if not isinstance(ref, str) or ref not in nodes:
            return None
        node = ref
    return node


def _reachable(locks, root, stop):
    """The nodes reachable from ``root`` without passing ``stop``."""
    nodes = locks['nodes']
    seen = set()
    todo = [root]
    while todo:
        name = todo.pop()
        if name in seen or name in stop:
            continue
        if name not in nodes:
            return None
        seen.add(name)
        for ref in ((nodes[name] or {}).get('inputs') or {}).values():
            if isinstance(ref, list):
                ref = _follow(locks, ref)
                if ref is None:
                    return None
            todo.append(ref)
    return seen


def _read_lock_file(data, locked):
    """The flake.lock inside the locked source (metadata's ``path``), or None."""
    path = data.get('path')
    if not path or not is_store_path(path):
        return None
    sub = str(locked.get('dir') or (data.get('original') or {}).get('dir') or '')
    if sub.startswith('/') or '..' in sub.split('/'):
        return None
    try:
        with open(os.path.join(path, sub, 'flake.lock')) as handle:
            written = json.load(handle)
    except (OSError, IOError, ValueError):
        return None
    return written if isinstance(written, dict) else None
