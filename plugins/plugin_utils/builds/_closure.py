# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Closures: the one walk of a store graph (what a path or a derivation
needs), the sizes and listing read from it, and the closure difference
between two systems (``nix store diff-closures``) as lines for people and a
summary for programs.

The walks read graphs as ``_nix_output`` returns them: path infos
({path: info or None}, ``references``) and derivations ({drv: {...,
``input_drvs``}}).

Computed on the controller, which must hold both closures: the running
system was deployed from it, the new one was built there (check mode builds
it too when diff mode asks for the difference). Nix's lines are read by
``_nix_output.diff_closures`` (the size format changed in Nix 2.33).
"""

import hashlib
import json
import os

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _run_files
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import write_json
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._printable import printable
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._store import is_store_path
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix, _nix_output

_UNAVAILABLE = 'closure difference unavailable: %s'


def diff_closures(opts, before, after):
    """(lines, summary) of the difference from ``before`` to ``after``; a
    difference that cannot be computed is one line saying why, summary None.

    ``before`` is what a target reported (its profile's generation link):
    untrusted. ``nix store diff-closures`` takes any installable and realises
    it, so a flake reference there would be fetched, evaluated and built on
    the controller, and a missing store path substituted. So it runs on two
    store paths already valid in this controller's store only (one
    ``nix-store --check-validity``, which realises nothing); anything else
    is no difference, said so."""
    for path in (before, after):
        if not is_store_path(path):
            return [_UNAVAILABLE % ('%s is not a store path' % printable(path))], None
    runner = _nix.NixCommand(opts)
    try:
        missing = _nix_output.listed_paths(runner.check(
            None, ['--check-validity', '--print-invalid', before, after],
            'checking which systems this controller holds', tool='nix-store'))
        if missing:
            return [_UNAVAILABLE % ('%s not in this controller\'s store (a difference '
                                    'fetches and builds nothing)' % ', '.join(sorted(missing)))], None
        out = runner.check('store diff-closures', [before, after], 'the closure difference')
    except _nix.NixError as exc:
        return [_UNAVAILABLE % (exc.nix_message() or exc)], None
    return _nix_output.diff_closures(out)


def walk(graph, top, edges='references', known_only=False):
    """The set of nodes ``top`` needs (itself included) in ``graph`` ({node:
    entry or None}), following each entry's list under ``edges``. A node
    without an entry is kept (it has no edges), or left out with
    ``known_only`` (a path not valid in the store the infos came from)."""
    seen, todo = set(), [top]
    while todo:
        item = todo.pop()
        if item in seen:
            continue
        info = graph.get(item)
        if known_only and not info:
            continue
        seen.add(item)
        todo.extend((info or {}).get(edges) or [])
    return seen


def sizes(infos, path):
    """(number of paths, bytes) of ``path``'s closure from path infos (the
    valid paths only)."""
    paths = walk(infos, path, known_only=True)
    return len(paths), sum(int(infos[p].get('narSize') or 0) for p in paths)


def listing(infos, path):
    """[{'path', 'narSize'}] of ``path``'s closure from path infos (the valid
    paths only), sorted by path."""
    return [{'path': p, 'narSize': infos[p]['narSize']}
            for p in sorted(walk(infos, path, known_only=True))]


# ------------------------------------------------------------ kept for the run
# The build reads its systems' closures (their sizes are its result); the copy
# of the same run needs the same listing. A valid store path's closure never
# changes, and the build holds a GC root of each system, so the listing is
# kept in the run's private batch folder and the copy reads it instead of
# asking Nix again. Keyed by the store the two phases read (their Nix
# options) and the path: a copy with other options asks Nix itself.
def _kept_path(folder, options, path):
    key = json.dumps([options, path], sort_keys=True, default=str)
    return os.path.join(folder, _run_files.CLOSURE_LISTING % (
        hashlib.sha256(key.encode('utf-8')).hexdigest()[:32]))


def keep_listings(folder, options, infos, paths):
    """Keep the closure listing of each of ``paths`` (valid in ``infos``)."""
    for path in paths:
        if infos.get(path):
            write_json(_kept_path(folder, options, path), {'path': path,
                                                           'listing': listing(infos, path)})


def kept_listing(folder, options, path):
    """``path``'s closure listing kept by ``keep_listings``, or None."""
    try:
        with open(_kept_path(folder, options, path)) as handle:
            found = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(found, dict) or found.get('path') != path:
        return None
    return found.get('listing')
