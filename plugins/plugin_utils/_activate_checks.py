# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nix_activate's health-check flow, a part of its action plugin: run the
checks over a fresh login (module_utils/_health.py), and when they fail
either reject the run (its watchdog rolls back at once) or, with no watchdog,
roll back. It uses the action's ``_sh``, ``_launch``-based ``_roll_back``,
``_follow`` and phase bookkeeping."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _health, _target
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils._activate_session import (
    LOOK_TIMEOUT, POLL_WAIT, RETRY_INTERVAL, ConnectionLost)


class HealthChecks:
    """Mixin of nix_activate's ActionModule: the health-check flow."""

    def _checks_failed_unguarded(self, res, summary, state):
        """A check failed after an activation no watchdog guards (magic
        rollback off, or a goal without it): the host fails, and with auto
        rollback goes back to the generation it had."""
        args = self._args
        res.update(failed=True, phase='checks', msg=summary['msg'])
        if state == 'unchanged':
            res['msg'] += '; the system was already active before this task: nothing to roll back'
            return res
        if not args['auto_rollback']:
            res['msg'] += ' (auto rollback is off: the host stays on the new system)'
            return res
        new_gen = res['new']['generation']
        undone = self._roll_back(res['previous']['generation'], new_gen, args['goal'],
                                 summary['msg'])
        res.update(undone)
        return res

    def _checks_phase(self):
        """Run the health checks (none: None), over a fresh login; keep the
        summary for the result and the phase for ``phases``."""
        checks = self._args['health_checks']
        if not checks:
            return None
        start = time.time()
        self._reset_connection()
        summary = _health.run_checks(checks, self._check_sh, on_try=self._on_try)
        self._sub_phase('checks', start, 'ok' if summary['ok'] else 'failed')
        self._health = summary
        return summary

    def _check_sh(self, script, timeout):
        """run_sh for the health checks: (rc, stdout, stderr) of ``script``."""
        try:
            out, _values, _log = self._sh(script, timeout=timeout)
        except ConnectionLost:
            self._lost += 1
            self._reset_connection()
            raise
        return out.get('rc'), out.get('stdout', ''), out.get('stderr', '')

    def _on_try(self, check, number, ok, detail):
        self._display.vv('nix_activate: health check %r, try %d: %s' % (
            check['name'], number, 'ok' if ok else detail))

    def _reject_run(self, run, values, deadline, why):
        """The checks failed: claim the canary as rejected, so that the
        watchdog rolls back at once (not at its deadline), and follow the
        run to its end."""
        start, lost, log = time.time(), None, ''
        while True:
            try:
                out, look, look_log = self._sh(_target.reject_script(
                    self._platform, run, why, wait=POLL_WAIT, **self._common()),
                    timeout=POLL_WAIT + LOOK_TIMEOUT)
                break
            except ConnectionLost as exc:
                lost = str(exc)
                self._lost += 1
                self._reset_connection()
                if time.time() > deadline:
                    self._sub_phase('rollback', start, 'failed')
                    return values, log, ('could not reject the new system: host unreachable '
                                         '(%s); its watchdog rolls it back at its deadline' % lost)
                time.sleep(RETRY_INTERVAL)
        if 'error' in look or not look.get('dir'):
            self._sub_phase('rollback', start, 'failed')
            return values, log, self._script_error(out, look)
        if look.get('state'):
            values, log = look, look_log
        values, log, problem = self._follow(run, False, deadline, values, log)
        self._phase('rollback', values, start)
        return values, log, problem
