# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nix_activate with state=activated: the activation with the task's goal
(launch, follow, health checks, then confirm or reject), or the reboot into
the new system; in check mode and with a dry goal, the platform's dry run.
The parts it drives: plugin_utils/activation/_detached_run.py (the run on the target),
_health_run.py (health checks), _reboot_run.py (reboots)."""

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _platforms
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation import (
    _activation_fields, _activation_result, _health_checks, _reboot_rules, _programs)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._activation_task import (
    LOOK_TIMEOUT, script_error)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.builds import _closure
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixOptions


class Activation:
    """state=activated for one task (``task``: an ``ActivateTask``), through
    ``target_run`` (``DetachedRun``), ``checks`` (``HealthChecks``) and
    ``reboots`` (``Reboots``)."""

    def __init__(self, task, target_run, checks, reboots):
        self._task = task
        self._target_run = target_run
        self._checks = checks
        self._reboots = reboots

    def activate(self):
        """Activate (and confirm), with health checks and, when asked, a reboot."""
        args = self._task.args
        reboots = self._reboots
        before = None
        if reboots.considered():
            before = reboots.probe()
            if reboots.wanted():
                return self._finish(reboots.reboot(before))
        res, log = self._switch()
        if res.get('state') == _programs.REFUSED:
            refusal = _reboot_rules.switch_refusal(1, log) or {'checks': [], 'inhibitors': [],
                                                               'lines': []}
            res['switch_refused'] = refusal
            if args['reboot'] == 'when-needed' and before is not None:
                # what `nixos-rebuild boot` and a reboot would do, verified
                reboots.add_reason('the switch was refused by the pre-switch check %s'
                                   % _reboot_rules.describe_refusal(refusal))
                rebooted = reboots.reboot(before)
                rebooted['switch_refused'] = refusal
                return self._finish(rebooted)
            res['msg'] = _reboot_rules.refusal_message(refusal)
            res['checks_not_run'] = 'the switch was refused'
        return self._finish(res)

    def dry_run(self):
        """Check mode or a dry goal: what the activation would do, with the
        platform's dry run where it has one; nothing changes."""
        task = self._task
        args = task.args
        dry = _platforms.platform_spec(task.platform)['activation'].get('dry_run') is not None
        script = _programs.inspect_script(task.platform, path=args['path'], dry=dry,
                                          **dict(task.where(), **task.activation_options()))
        out, values, log = task.session.sh(script, timeout=args['activation_timeout'] +
                                           LOOK_TIMEOUT)
        if 'error' in values or ('profile' not in values and out.get('rc')):
            return {'failed': True, 'changed': False, 'msg': script_error(out, values)}
        res = _activation_result.check_mode_result(values, log, task.platform, task.goal, args['path'],
                                                   'dry_rc' in values, task.timeline.elapsed(),
                                                   reactivate=args['reactivate'])
        refusal = _reboot_rules.switch_refusal(values.get('dry_rc'), log) \
            if res.get('failed') else None
        if refusal:
            # the pre-switch checks would refuse the switch: say which and the ways out
            res['switch_refused'] = refusal
            res['msg'] = 'dry activation: %s' % _reboot_rules.refusal_message(refusal)
        if task.goal.dry:
            # an explicit dry activation is a report: it never changes anything
            res['would_change'] = res['changed']
            res['changed'] = False
        if args['health_checks']:
            why = 'check mode' if task.check_mode else 'goal %s' % task.goal.name
            res['health_checks'] = _health_checks.skipped(args['health_checks'], why)
            res['msg'] = '%s; %s' % (res['msg'], res['health_checks']['msg'])
        if self._reboots.considered():
            res['reboot'] = self._reboots.foresee(values.get('present', False))
        if task.diff:
            self._diff(res, values.get('prev_path'), args['path'], values.get('prev_gen'))
        # what the dry run printed, after the message's own words: what would
        # restart, stop, start (a success), or why it failed
        if refusal:
            pass  # the refusal message names its checks and the ways out
        elif res.get('failed'):
            errors = _activation_result.dry_errors(log)
            if errors:
                # in msg; the dry run's whole output stays in log_tail (it
                # changed nothing: nothing of it is shown in a summary)
                res['msg'] = _activation_result.with_errors(res['msg'], errors)
                res.pop('dry_activate', None)
        elif res.get('dry_activate'):
            res['msg'] = _activation_result.with_errors(res['msg'], res['dry_activate'])
        return res

    def _switch(self):
        """The activation with the task's goal: launch, follow, health checks,
        then confirm (magic rollback) or, when a check fails, reject the run
        so that its watchdog rolls it back at once. Returns (result, log)."""
        task = self._task
        args, target_run = task.args, self._target_run
        magic_rollback = _activation_result.magic_applies(args, task.goal)
        # the watchdog's window leaves the checks all their tries
        budget = _health_checks.budget(args['health_checks']) if magic_rollback else 0
        deadline = target_run.deadline(magic_rollback, budget)
        # the step files say where the run is, and until when (an
        # interrupted run's summary, the progress lines)
        steps = target_run.watch(magic_rollback, budget)
        try:
            return self._switch_run(magic_rollback, budget, deadline, steps)
        finally:
            target_run.unwatch()

    def _switch_run(self, magic_rollback, budget, deadline, steps):
        """_switch's run, its steps told to ``steps`` (``ActivationSteps``)."""
        task = self._task
        args, session, timeline = task.args, task.session, task.timeline
        target_run = self._target_run
        steps.seen(None)
        run, values, log, failure = target_run.launch(
            'activate', magic_rollback, confirm_timeout=args['confirm_timeout'] + budget)
        if failure:
            failure['phase'] = 'activate'
            return failure, ''
        steps.seen(values)
        detach = (values or {}).get('detach')
        unit = (values or {}).get('unit') or None
        values, log, problem = target_run.follow(run, magic_rollback, deadline, values, log)
        timeline.add_run('activate', values)
        state = values.get('state')
        summary, not_run = None, None
        if not problem and state == _programs.AWAITING:
            summary = self._checks.run()
            if summary and not summary['ok']:
                values, log, problem = target_run.reject(run, values, deadline, summary['msg'])
            elif args['confirm']:
                # The confirmation belongs to this host's own task: its
                # window starts and ends with this host, whatever the others do.
                values, log, problem = target_run.confirm(run, values, deadline)
            else:
                # left to a later state=confirmed task: make sure that one
                # opens a new connection, even without meta: reset_connection
                session.new_login()
        elif not problem and state in ('done', 'unchanged'):
            if not task.goal.records_active:
                not_run = 'goal %s activates nothing before the next boot' % task.goal.name
            else:
                summary = self._checks.run()
        res = _activation_result.result_from_status(values, log, task.platform, task.goal.name,
                                                    timeline.elapsed(), run)
        # no confirmation in time: the new system could not be reached
        unconfirmed = values.get('cause') == 'unconfirmed'
        res.update(magic_rollback=magic_rollback, detached_with=detach, unit=unit,
                   lost_connections=session.lost,
                   connection_lost=unconfirmed or (session.lost > 0 and bool(problem)))
        if not_run:
            res['checks_not_run'] = not_run
        if problem:
            res.update(failed=True, msg=problem)
        if res.get('failed'):
            res['phase'] = timeline.last_name('activate')
        if values.get('cause') == _activation_fields.ENDED_UNCONFIRMED and not problem:
            # its run ended in its window, never confirmed: its profile is
            # back, but a runner killed without a reboot leaves the new
            # system running. The previous system again (a no-op when the
            # host booted it), as the watchdog would have done
            res.update(target_run.undo(values.get('prev_gen'), None, task.goal, res['msg']))
        if summary and not summary['ok']:
            res['phase'] = 'checks'
            if state in ('done', 'unchanged'):
                res = self._checks.fail_unguarded(res, summary, state)
        return res, log

    def _finish(self, res):
        """What every activation result carries besides the run's status."""
        task = self._task
        if self._checks.summary is not None:
            res['health_checks'] = self._checks.summary
        elif task.args['health_checks']:
            res['health_checks'] = _health_checks.skipped(task.args['health_checks'], res.get(
                'checks_not_run') or 'the activation did not get that far')
        res.pop('checks_not_run', None)
        res.pop('rollback_generation', None)
        if self._reboots.info is not None:
            res['reboot'] = self._reboots.info
        # the list itself: the post-activation keys' phase joins it later
        res['phases'] = task.timeline.phases
        if task.diff and res.get('changed') and not res.get('rolled_back') \
                and res.get('new', {}).get('path'):
            self._diff(res, res['previous']['path'], res['new']['path'],
                       res['previous']['generation'])
        return res

    def _diff(self, res, previous_path, new_path, previous_gen):
        """Diff mode: the profile's store path against the new one and, with
        closure_diff, the closure difference (also kept in the result)."""
        args = self._task.args
        res['diff'] = _activation_result.diff_for(previous_path, new_path, previous_gen)
        if args['closure_diff'] and previous_path and new_path != previous_path:
            lines, summary = _closure.diff_closures(NixOptions.from_params(args),
                                                    previous_path, new_path)
            res['diff']['prepared'] = '\n'.join(
                ['%s -> %s' % (previous_path, new_path)] + lines) + '\n'
            res['closure_diff'] = summary or {'lines': lines}
