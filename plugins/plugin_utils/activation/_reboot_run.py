# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nix_activate's reboots: whether the host needs one, make the new system
the boot default, reboot, wait for a new boot id, check what booted and run
the health checks; put the previous generation back as the boot default when
that goes wrong (plugin_utils/activation/_reboot_rules.py holds the logic that needs no
connection)."""

import time

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _platforms
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation import _activation_result, _reboot_rules
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._activation_task import (
    BOOT_LOOK_INTERVAL, LOOK_TIMEOUT, ConnectionLost)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import to_int


class Reboots:
    """The reboot of one task (``task``: an ``ActivateTask``), through
    ``target_run`` (a ``DetachedRun``) and ``checks`` (``HealthChecks``).
    ``info``: the result's ``reboot`` (None until ``probe``)."""

    def __init__(self, task, target_run, checks):
        self._task = task
        self._target_run = target_run
        self._checks = checks
        self.info = None

    def considered(self):
        """Whether the task may reboot the host: reboot is not never and
        the platform reboots."""
        return self._task.args['reboot'] != 'never' and _platforms.reboots(self._task.platform)

    def probe(self):
        """Look at the host before the activation: whether a reboot is
        needed and why (kept in ``info``). Returns the probe's values (the
        boot id, what runs), which ``reboot`` takes."""
        args = self._task.args
        self.info = {'mode': args['reboot'], 'needed': None, 'reasons': [], 'rebooted': False}
        before = self._task.session.sh(_reboot_rules.probe_script(args['path']))[1]
        needed, reasons = _reboot_rules.reboot_reasons(before)
        self.info.update(needed=needed, reasons=reasons)
        return before

    def wanted(self):
        """Whether the task reboots, after ``probe``."""
        return _reboot_rules.wants_reboot(self._task.args['reboot'], self.info['needed'])

    def add_reason(self, reason):
        """A reboot ``probe`` did not foresee is needed after all."""
        self.info.update(needed=True, reasons=self.info['reasons'] + [reason])

    def foresee(self, present):
        """Check mode: whether the task would reboot the host, and why
        (``present``: the new system is in the target store)."""
        args = self._task.args
        info = {'mode': args['reboot'], 'needed': None, 'reasons': [], 'rebooted': False}
        if args['reboot'] == 'always':
            info['would_reboot'] = True
            return info
        if not present:
            info.update(would_reboot=None, reasons=['%s is not in the target store yet: cannot '
                                                    'compare its boot parts' % args['path']])
            return info
        values = self._task.session.sh(_reboot_rules.probe_script(args['path']))[1]
        needed, reasons = _reboot_rules.reboot_reasons(values)
        info.update(needed=needed, reasons=reasons,
                    would_reboot=_reboot_rules.wants_reboot(args['reboot'], needed))
        return info

    def reboot(self, before):
        """Make the new system the boot default, reboot, wait for a new boot
        id (at most reboot_timeout), check what booted, run the health
        checks. A host that comes back wrong gets its previous generation
        back as the boot default; one that does not come back fails.
        ``before``: the values of ``probe``."""
        task = self._task
        goal = _platforms.reboot_goal()
        res, values = self._new_boot_default(goal)
        if values is None:
            return res
        new_path, new_gen = values.get('new_path') or task.args['path'], \
            to_int(values.get('new_gen'))
        previous = to_int(values.get('prev_gen')) if new_gen is not None else None
        # what the host gets back if the new system does not boot well
        undo = dict(generation=previous, drop_generation=new_gen, goal=goal)
        # the deploy changes the host: its goal stays the task's, the reboot does the switch
        res.update(goal=task.goal.name, changed=True)
        start = time.time()
        old_id = before.get('boot_id') or None
        failed = self._reboot_and_wait(res, undo, new_path, old_id, start)
        if failed:
            return failed
        return self._check_what_booted(res, undo, new_path, old_id, start)

    def _new_boot_default(self, goal):
        """Run the activation that makes the new system the boot default:
        (its result, the run's values), the values None when the host
        failed there (the result says why)."""
        task = self._task
        session, timeline = task.session, task.timeline
        run, values, log, failure = self._target_run.launch('activate', False, goal=goal)
        if failure:
            failure['phase'] = 'activate'
            return failure, None
        detach = (values or {}).get('detach')
        values, log, problem = self._target_run.follow(
            run, False, self._target_run.deadline(False), values, log)
        timeline.add_run('activate', values)
        res = _activation_result.result_from_status(values, log, task.platform, goal.name,
                                                    timeline.elapsed(), run)
        res.update(magic_rollback=False, detached_with=detach, lost_connections=session.lost,
                   connection_lost=session.lost > 0 and bool(problem))
        if problem or res.get('failed'):
            res.update(failed=True, phase='activate', msg=problem or res['msg'],
                       checks_not_run='the new system did not become the boot default')
            return res, None
        return res, values

    def _reboot_and_wait(self, res, undo, new_path, old_id, start):
        """Ask the host to reboot and wait for its new boot id: None once it
        is back, else ``res`` failed (the reboot refused, or the host not
        back in time)."""
        args, timeline, info = self._task.args, self._task.timeline, self.info
        refused = self._request_reboot()
        if refused:
            timeline.add('reboot', start, 'failed')
            return self._boot_default_back(res, refused, 'reboot', undo)
        wait = _reboot_rules.wait_for_boot(self._read_boot_id, old_id, args['reboot_timeout'],
                                           interval=BOOT_LOOK_INTERVAL)
        info.update(rebooted=wait['back'], boot_id_before=old_id, waited=wait['waited'],
                    boot_id_after=wait['boot_id'] if wait['back'] else None)
        if not wait['back']:
            timeline.add('reboot', start, 'failed')
            res.update(failed=True, phase='reboot', connection_lost=wait['went_down'],
                       msg='%s; the new system %s is its boot default'
                       % (_reboot_rules.not_back_message(wait, args['reboot_timeout']), new_path),
                       checks_not_run='the host did not come back')
            return res
        return None

    def _check_what_booted(self, res, undo, new_path, old_id, start):
        """After the host came back: it booted the new system, and its
        health checks pass; else the previous generation is the boot
        default again."""
        info = self.info
        try:
            after = self._task.session.sh(_reboot_rules.probe_script())[1]
        except ConnectionLost as exc:
            after = {'booted': None, 'error': str(exc)}
        info['booted'] = after.get('booted') or None
        wrong = _reboot_rules.verify_boot(after, new_path, old_id)
        self._task.timeline.add('reboot', start, 'failed' if wrong else 'changed')
        if wrong:
            res['checks_not_run'] = 'the host did not boot the new system'
            return self._boot_default_back(res, wrong, 'reboot', undo)
        summary = self._checks.run()
        if summary and not summary['ok']:
            return self._boot_default_back(res, '%s after the reboot' % summary['msg'], 'checks',
                                           undo)
        res['msg'] = 'rebooted into %s (%s)' % (new_path, '; '.join(info['reasons']) or
                                                'reboot=%s' % info['mode'])
        return res

    def _boot_default_back(self, res, why, phase, undo):
        """After a reboot that went wrong: the previous generation becomes
        the boot default again; the host fails with ``why``."""
        res.update(failed=True, phase=phase)
        undone = self._target_run.undo(undo['generation'], undo['drop_generation'],
                                       undo['goal'], why)
        res.update(undone)
        if undone['rolled_back']:
            res['msg'] = ('%s; generation %s is the boot default again (the host runs what it '
                          'booted until its next reboot)'
                          % (undone['msg'], undone.get('rollback_generation') or 'the previous'))
        return res

    def _request_reboot(self):
        """Ask the host to reboot; None, or why it refused."""
        session = self._task.session
        try:
            out, _values, _log = session.sh(_reboot_rules.request_script(), timeout=LOOK_TIMEOUT)
            _ok, problem = _reboot_rules.reboot_requested(out.get('rc'), out.get('stdout'), lost=False)
        except ConnectionLost:
            # the reboot may well cut the session that asked for it
            problem = None
        session.new_login()
        return problem

    def _read_boot_id(self, remaining):
        """The host's boot id over a fresh login; ConnectionLost while it is down."""
        session = self._task.session
        session.new_login()
        out, values, _log = session.sh(_reboot_rules.boot_id_script(),
                                       timeout=max(1.0, min(LOOK_TIMEOUT, remaining)))
        if out.get('rc') != 0:
            return None
        return values.get('boot_id', '').strip() or None
