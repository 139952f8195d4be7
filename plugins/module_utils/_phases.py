# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""THE table of a deploy's phases, in the order a host goes through them:
each phase's name, the action whose task it is, whether it records (its
result is part of the host's record, which a later phase's action keeps with
its option record_stats; the option table's phase modules), and the word for
a deploy that stopped after it.

The option table (_role_vars), record_stats' spec (_record_stats), the
custom stats (plugin_utils/task/_stats.py), a host's outcome and summary line
(plugin_utils/task/_outcome.py) and the report (plugin_utils/report/_report.py)
read the phases here. Standard library only: the report's merge script
imports it as a plain file.
"""


class Phase(object):
    """One phase of the table."""

    __slots__ = ('name', 'action', 'records', 'stopped')

    def __init__(self, name, action, records, stopped):
        self.name, self.action, self.records, self.stopped = name, action, records, stopped


PHASES = (
    Phase('eval', 'nix_eval', records=True, stopped='evaluated'),
    Phase('build', 'nix_build', records=True, stopped='built'),
    Phase('copy', 'nix_copy_closure', records=True, stopped='copied'),
    # the keys tasks run around activate (nix_activate's keys, or nix_keys of
    # their own): a deploy that stopped there got as far as its copy
    Phase('keys', 'nix_keys', records=False, stopped='copied'),
    # a deploy that activated did not stop
    Phase('activate', 'nix_activate', records=True, stopped=None),
)
# the phases' names in deploy order
NAMES = tuple(phase.name for phase in PHASES)
# action name -> the phase its task is
BY_ACTION = dict((phase.action, phase.name) for phase in PHASES)
# what a deploy that stopped before activating got to, by its last phase
STOPPED = dict((phase.name, phase.stopped) for phase in PHASES if phase.stopped)
# the phases that record, in order
RECORDING = tuple(phase.name for phase in PHASES if phase.records)
