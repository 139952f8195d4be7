# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nix_copy_closure's copy modes: THE table (``MODES``), one row each.

A row holds what differs between the modes as fields: who sends the
missing paths, whether the target substitutes first, whether it fetches
from the task's caches (which it then needs), whether one host of the batch
copies for all of them. The copy stage (plugin_utils/copy/) looks the task's
mode up once (``mode_row``) and reads the row's fields; it names no mode. The
option's choices (``NAMES``) and its need of caches (``NEEDS_CACHES``) come
from here too. A new mode is a row here, a branch on a new field where it
acts (if any), and its documentation (the module's, whose lines
tests/unit/plugins/module_utils/test_copy_modes.py checks against ``NAMES``).
"""

from collections import namedtuple


class CopyMode(namedtuple('CopyMode', ['name', 'controller_sends', 'substitutes', 'from_caches',
                                       'batch_wide', 'description'])):
    """One row of MODES:

    ``controller_sends``: the controller sends the paths the host lacks with
    ``nix copy --to ssh-ng://``, past the target's signature check by the
    task's trust plan (check_sigs, signing_key, sudo); check mode reports
    what it would send. ``substitutes``: the target first fetches what it
    can from its own substituters. ``from_caches``: the target fetches the
    closure itself from the task's ``caches`` (required), checking their
    signatures; the controller reads the closure from them when it does not
    hold it. ``batch_wide``: outside check mode the first host of the play
    batch copies for every host of the batch in this mode (the cascade,
    copy/_cascade_stage.py); a host it leaves out gets the row's own copy.
    ``description``: what the mode does, the words after its name in the
    deploy role's documentation of ``nix_copy_mode`` (Ansible markup, the
    role's variable names)."""

    __slots__ = ()


ROWS = (
    CopyMode('push', controller_sends=True, substitutes=False, from_caches=False,
             batch_wide=False,
             description='sends every missing path from the controller '
                         '(C(nix copy --to ssh-ng://)).'),
    CopyMode('substitute', controller_sends=True, substitutes=True, from_caches=False,
             batch_wide=False,
             description='lets each host fetch what it can from its own binary caches first.'),
    CopyMode('cache', controller_sends=False, substitutes=False, from_caches=True,
             batch_wide=False,
             description='has each host fetch the closure from O(nix_caches).'),
    CopyMode('cascade', controller_sends=True, substitutes=False, from_caches=False,
             batch_wide=True,
             description='sends each closure once from the controller; hosts that hold it copy '
                         'it on to the next hosts, peer to peer, site by site (C(nix_site)), so '
                         "the controller's uplink carries about one closure "
                         '(docs/copy-cascade.md).'),
)
MODES = dict((mode.name, mode) for mode in ROWS)
# the modes' names, in the order the docs list them (the option's choices)
NAMES = tuple(mode.name for mode in ROWS)
# the modes that need the task's caches (the option's required_if)
NEEDS_CACHES = tuple(mode.name for mode in ROWS if mode.from_caches)


def mode_row(name):
    """The row (a ``CopyMode``) of the mode named ``name``; ValueError names
    the known ones (the argument spec refuses any other before this)."""
    try:
        return MODES[name]
    except KeyError:
        raise ValueError('unknown copy mode %r (known: %s)' % (name, ', '.join(NAMES)))
