"""The class of a host from what its read found (plugin_utils/status/
_status_class.py): the first of the issue's order that applies, each from
the runs nix_activate keeps on the host, as its status files hold them.
The lab proves each class as it happens in life
(tests/integration/roles/test_status_role.py); this pins the rules on the
run records alone, cheaply, so a rule broken is caught by the unit run."""

import sys

from tests.collection import collections_path

sys.path.insert(0, collections_path())

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.status import (  # noqa: E402
    _status_class, _status_look)

A, B, C, HAND = ('/nix/store/%s-nixos-system-%s' % (letter * 32, name)
                 for letter, name in (('a', 'a'), ('b', 'b'), ('c', 'c'), ('d', 'hand')))
BOOT = dict(('%s_%s' % (which, part), '/nix/store/%s-%s' % ('e' * 32, part))
            for which in ('booted', 'current') for part in ('initrd', 'kernel', 'kernel-modules'))


def run(number, state, new, prev, mode='activate', rolled_back=False, activated=True):
    """A run record as the host's read gives it: {'run_<id>': fields}."""
    return {'run_%d-%032x' % (1795000000 + number, number): {
        'state': state, 'mode': mode, 'new': new, 'prev': prev, 'rolled_back': rolled_back,
        'activated': activated, 'started': 1795000000 + number, 'updated': 1795000000 + number}}


def look(current, *runs, **extra):
    """A NixOS host's read: it runs ``current``, booted it, kept ``runs``."""
    values = dict(BOOT, current=current, booted=current, generation_path=current)
    values.update(extra)
    for one in runs:
        values.update(one)
    return _status_look.Look.of('nixos', values)


def test_each_class_from_the_runs_the_host_keeps():
    deployed_a = run(1, 'done', A, None)
    cases = {
        'never_deployed': (look(A), B),
        'changed_elsewhere': (look(HAND, deployed_a), A),
        # a magic rollback: B activated, not confirmed, the host back on A
        'rolled_back': (look(A, deployed_a, run(2, 'rolled_back', B, A, rolled_back=True)), B),
        'reboot_pending': (look(A, deployed_a, booted=C, booted_kernel='/nix/store/%s-k'
                                % ('f' * 32)), A),
        'pending': (look(A, deployed_a), B),
        'in_sync': (look(A, deployed_a), A),
    }
    for expected, (found, desired) in cases.items():
        name, reasons = _status_class.classify(found, desired)
        assert name == expected, (expected, name, reasons)
        assert bool(reasons) == (expected != 'in_sync'), (expected, reasons)


def test_a_host_rolled_back_by_the_rollback_role_runs_what_it_went_back_to():
    """The rollback role's run puts the host back on A: A is a system this
    collection put there (not changed elsewhere), and not the last one it
    deployed (B): rolled back, whatever the flake gives."""
    found = look(A, run(1, 'done', A, None), run(2, 'done', B, A),
                 run(3, 'done', A, B, mode='rollback'))
    assert _status_class.classify(found, B)[0] == 'rolled_back'
    assert _status_class.classify(found, A)[0] == 'rolled_back'
