# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The class of a host: what it runs against what the flake gives and what
this collection last deployed there (docs/status.md says what to do about
each).

``CLASSES`` is the one list of the classes, worst first, each with the
words people read beside it; ``classify`` takes the first that applies, in
that order, from a ``_status_look.Look`` and the desired system.
"""

from collections import namedtuple

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._reboot_rules import short

StatusClass = namedtuple('StatusClass', ['name', 'words'])

# Worst first: the order classify tries them and the totals are printed in.
CLASSES = (
    StatusClass('unreachable', 'not reached'),
    StatusClass('never_deployed', 'never deployed by nixdeploy'),
    StatusClass('changed_elsewhere', 'runs a system nixdeploy never deployed here'),
    StatusClass('rolled_back', 'rolled back from the last deploy'),
    StatusClass('reboot_pending', 'reboot pending'),
    StatusClass('pending', 'deploy pending'),
    StatusClass('in_sync', 'up to date'),
)
NAMES = tuple(c.name for c in CLASSES)
# what brings a host of each class in sync (docs/status.md, "The classes")
DEPLOY = 'deploy it (ansible-playbook nixdeploy.fleet.deploy)'
WAY_OUT = {
    'never_deployed': DEPLOY,
    'changed_elsewhere': 'find out who changed it, then ' + DEPLOY,
    'rolled_back': 'read its last deploy\'s log (runs/<run>/log in its state folder), fix the '
                   'system, then ' + DEPLOY,
    'reboot_pending': 'reboot it, or deploy it with nix_reboot=when-needed',
    'pending': DEPLOY,
}
WORDS = dict(CLASSES)
IN_SYNC = 'in_sync'
# the classes whose reasons a console line says by itself (runs, flake gives)
SAID_BY_LINE = (IN_SYNC, 'pending')
UNREACHABLE = 'unreachable'

# the states of a run after which its system is the one it deployed
_DEPLOYED_STATES = ('done', 'unchanged', 'awaiting_confirmation')


def _deployed(run):
    """Whether ``run`` (an activation) put its system on the host, if only
    until a rollback."""
    return run.mode == 'activate' and bool(run.new) and (
        run.activated or run.state in _DEPLOYED_STATES)


def known_systems(runs):
    """The systems this collection put on the host: those its activations
    activated, those its rollbacks (a magic rollback's, the rollback
    role's) went back to."""
    known = set()
    for run in runs:
        if _deployed(run):
            known.add(run.new)
        if run.rolled_back and run.mode == 'activate' and run.prev:
            known.add(run.prev)
        if run.mode == 'rollback' and run.state == 'done' and run.new:
            known.add(run.new)
    return known


def last_deploy(runs):
    """The last activation run (a ``Run``), whatever its end, or None."""
    deploys = [run for run in runs if run.mode == 'activate']
    return deploys[-1] if deploys else None


def last_deployed_system(runs):
    """The system the last activation that put one on the host deployed."""
    deployed = [run.new for run in runs if _deployed(run)]
    return deployed[-1] if deployed else None


def reboot_reasons(look):
    """Why the host needs a reboot to run what it runs (NixOS): a boot part
    that differs between the booted and the running system, or a boot
    default that is neither; [] otherwise or where nothing says it."""
    booted, current = look.get('booted'), look.current()
    if not booted or not current:
        return []
    reasons = []
    was, now = look.boot_parts('booted'), look.boot_parts('current')
    for part in sorted(was):
        if was[part] != now[part]:
            reasons.append('%s: %s -> %s' % (part, short(was[part]), short(now[part])))
    default = look.get('generation_path')
    if default and default not in (booted, current):
        reasons.append('the boot default %s is neither the booted nor the running system'
                       % short(default))
    return reasons


def classify(look, desired):
    """(class name, reasons) of a host read as ``look`` whose flake gives
    ``desired``: the first class of CLASSES that applies (unreachable is
    the caller's: a host that was read is reachable)."""
    runs = look.runs
    current = look.current()
    if last_deploy(runs) is None:
        return 'never_deployed', ['no record of a deploy by nixdeploy on the host']
    if not current or current not in known_systems(runs):
        return 'changed_elsewhere', ['it runs %s, which nixdeploy never deployed there'
                                     % short(current)]
    last = last_deployed_system(runs)
    if current != last:
        return 'rolled_back', ['it runs %s; nixdeploy last deployed %s'
                               % (short(current), short(last))]
    reasons = reboot_reasons(look)
    if reasons:
        return 'reboot_pending', reasons
    if current != desired:
        return 'pending', ['the flake gives %s' % short(desired)]
    return IN_SYNC, []
