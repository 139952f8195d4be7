# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How far a host's closure is from the flake's: the paths the desired
system's closure adds to what the host runs, those it drops, and the change
of the closure's size, from the controller's store alone.

Per host, not through the batch: a host that runs what the flake gives
costs no Nix command at all (the difference is nothing), so only the hosts
that drifted ask Nix, two short store queries each; a status run after a
one-host commit asks Nix for that host only.

Both paths come from outside (``current`` from the target's read,
``desired`` from the evaluation, which built nothing): a path the
controller's store does not hold is never built, fetched or substituted,
so its difference is unknown (None), not computed. ``nix-store
--check-validity`` realises nothing, and ``nix path-info`` runs on valid
paths only.
"""

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.builds._closure import walk
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._store import is_store_path
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix, _nix_output

NOTHING = {'paths_added': 0, 'paths_removed': 0, 'size_change_bytes': 0}


def _closure(infos, path):
    """({paths}, bytes) of ``path``'s closure in ``infos``."""
    paths = walk(infos, path, known_only=True)
    return paths, sum(int(infos[p].get('narSize') or 0) for p in paths)


def closure_change(opts, current, desired, timeout=None):
    """{'paths_added', 'paths_removed', 'size_change_bytes'} from ``current``
    to ``desired``, or None when the controller's store lacks either (or
    Nix could not say): nothing is realised to know it."""
    if current == desired and is_store_path(current):
        return dict(NOTHING)
    if not (is_store_path(current) and is_store_path(desired)):
        return None
    runner = _nix.NixCommand(opts, timeout)
    try:
        missing = _nix_output.listed_paths(runner.check(
            None, ['--check-validity', '--print-invalid', current, desired],
            'checking which systems this controller holds', tool='nix-store'))
        if missing:
            return None
        infos = runner.path_infos([current, desired], ['-r'], 'reading the two closures')
    except _nix.NixError:
        # a difference is a help to read, never a reason to fail a read
        return None
    now, now_bytes = _closure(infos, current)
    new, new_bytes = _closure(infos, desired)
    return {'paths_added': len(new - now), 'paths_removed': len(now - new),
            'size_change_bytes': new_bytes - now_bytes}
