# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How far a host's closure is from the flake's: the paths the desired
system's closure adds to what the host runs, those it drops, and the change
of the closure's size, from the controller's store alone.

Asked once for the play batch: every host that drifted asks the batch's
server (``closure_work``, through ``_batch_work``, gathering: what a host
runs is known only once its own read is done, so no host can foresee
another's request), and one wave answers
them all with one ``nix-store --check-validity`` of every path asked and
one ``nix path-info -r`` of the valid ones. A host that runs what the flake
gives asks nothing (its difference is nothing, no Nix command); a status
run after a one-host commit asks Nix for that host only.

Both paths come from outside (``current`` from the target's read,
``desired`` from the evaluation, which built nothing): a path the
controller's store does not hold is never built, fetched or substituted,
so its difference is unknown (None), not computed. ``nix-store
--check-validity`` realises nothing, and ``nix path-info`` runs on valid
paths only (asked about an invalid one, it would try to realise it).
"""

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.builds._closure import walk
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._store import is_store_path
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix, _nix_output
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_work import (
    BatchWork, serves)

NOTHING = {'paths_added': 0, 'paths_removed': 0, 'size_change_bytes': 0}
KIND = 'status-closure'
# what ``own_answer`` gives a host whose difference only Nix can tell
ASK = object()


def own_answer(current, desired):
    """The difference a host knows without Nix: nothing when it runs the
    desired system; None when either is no store path (nothing runs, or
    the read found no system); ``ASK`` when the batch must ask Nix."""
    if current == desired and is_store_path(current):
        return dict(NOTHING)
    if not (is_store_path(current) and is_store_path(desired)):
        return None
    return ASK


def _closure(infos, path):
    """({paths}, bytes) of ``path``'s closure in ``infos``."""
    paths = walk(infos, path, known_only=True)
    return paths, sum(int(infos[p].get('narSize') or 0) for p in paths)


def _change(infos, current, desired):
    now, now_bytes = _closure(infos, current)
    new, new_bytes = _closure(infos, desired)
    return {'paths_added': len(new - now), 'paths_removed': len(now - new),
            'size_change_bytes': new_bytes - now_bytes}


def closure_changes(opts, pairs, timeout=None):
    """{host: difference or None} of ``pairs`` ({host: (current, desired)},
    store paths): one validity check of every path, one ``nix path-info -r``
    of those the store holds. A host one of whose systems the store lacks
    (or all of them, when Nix could not say) gets None."""
    paths = sorted(set(p for pair in pairs.values() for p in pair))
    if not paths:
        return {}
    runner = _nix.NixCommand(opts, timeout)
    try:
        missing = _nix_output.listed_paths(runner.check(
            None, ['--check-validity', '--print-invalid'] + paths,
            'checking which systems this controller holds', tool='nix-store'))
        # only the hosts whose two systems the store holds have a difference
        known = dict((host, pair) for host, pair in pairs.items() if not missing & set(pair))
        held = sorted(set(p for pair in known.values() for p in pair))
        infos = runner.path_infos(held, ['-r'], 'reading the closures') if held else {}
    except _nix.NixError:
        # a difference is a help to read, never a reason to fail a read
        return dict.fromkeys(pairs)
    return dict((host, _change(infos, *known[host]) if host in known else None)
                for host in pairs)


@serves
def serve_closure(context, requests, put):
    """The batch's work (``SERVE``): one ``closure_changes`` of a wave's
    requests ({host: {'current', 'desired'}}). ``context``: {options
    (``options_of``), timeout}."""
    pairs = dict((host, (asked['current'], asked['desired']))
                 for host, asked in requests.items())
    changes = closure_changes(_nix.NixOptions.from_params(context['options']), pairs,
                              context['timeout'])
    for host, change in changes.items():
        put(host, {'request': requests[host], 'closure_diff': change})


# the name the batch's BatchWork gives its serve function
SERVE = '%s:serve_closure' % __name__


def closure_work(nix_options, request, timeout=None):
    """The batch's ``BatchWork`` for a host's ``request`` ({'current',
    'desired'}): its hosts that ask together share one wave, and a wave is
    one ``closure_changes`` (``serve_closure``). Keyed by the Nix options
    (``options_of``: two hosts with other options ask other stores, or the
    same one otherwise)."""
    return BatchWork(KIND, [nix_options], request, SERVE,
                     context={'options': nix_options, 'timeout': timeout},
                     answer_wait=None if timeout is None else 3 * timeout)
