# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nix_activate's health checks: run them over a fresh login
(plugin_utils/activation/_health_checks.py holds the checks themselves), and when they fail
after an activation no watchdog guards, undo it (a guarded one is rejected
by the caller: its watchdog rolls back at once)."""

import time

from ansible import constants as C

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation import _health_checks
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _run


class HealthChecks(object):
    """The health checks of one task (``task``: an ``ActivateTask``), run on
    its host (the session's ``host``) and told each try (it is the checks'
    watch: ``tried``, ``lost`` and ``dropped``, as ``_health_checks.Watch``
    says); ``target_run`` (a ``DetachedRun``) undoes an unguarded activation
    whose checks failed. ``summary``: the last run's summary, None before
    one."""

    def __init__(self, task, target_run):
        self._task = task
        self._target_run = target_run
        self.summary = None

    def run(self):
        """Run the task's health checks (none: None) over a fresh login and
        add the phase ``checks``; returns their summary."""
        checks = self._task.args['health_checks']
        if not checks:
            return None
        start = time.time()
        self._task.session.new_login()
        # the progress lines say "health checks" for this host meanwhile
        steps = self._target_run.steps
        with _run.in_step(C.DEFAULT_LOCAL_TMP, self._task.host, _run.HEALTH_CHECKS,
                          **(steps.bound() if steps is not None else {})):
            summary = _health_checks.run_checks(checks, self._task.session.target, watch=self)
        self._task.timeline.add('checks', start, 'ok' if summary['ok'] else 'failed')
        self.summary = summary
        return summary

    def fail_unguarded(self, res, summary, state):
        """A check failed after an activation no watchdog guards (magic
        rollback off, or a goal without it): the host fails, and with auto
        rollback goes back to the generation it had. ``res``: the
        activation's result, ``state``: its run's end state."""
        args = self._task.args
        res.update(failed=True, phase='checks', msg=summary['msg'])
        if state == 'unchanged':
            res['msg'] += '; the system was already active before this task: nothing to roll back'
            return res
        if not args['auto_rollback']:
            res['msg'] += ' (auto rollback is off: the host stays on the new system)'
            return res
        new_gen = res['new']['generation']
        undone = self._target_run.undo(res['previous']['generation'], new_gen,
                                       self._task.goal, summary['msg'])
        res.update(undone)
        return res

    # ------------------------------------------------------------ what the checks tell
    def tried(self, check, number, ok, detail):
        self._task.session.note('health check %r, try %d: %s' % (
            check['name'], number, 'ok' if ok else detail), verbosity=2)

    def lost(self, _exc):
        """A try got no answer: the connection is lost, the next try logs in anew."""
        session = self._task.session
        session.count_lost()
        session.new_login()

    def dropped(self, notes):
        self._task.session.keep_dropped(notes)
