# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nix_activate with state=confirmed and state=rolled_back: tasks that act
on what an earlier task (or a person) left on the host, a run awaiting its
confirmation or the profile's generations, through the run on the target
(plugin_utils/activation/_detached_run.py)."""

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation import _activation_result, _programs
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._activation_task import (
    POLL_WAIT, LOOK_TIMEOUT, ConnectionLost, script_error)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host import LoginRefused


class LaterStates:
    """state=confirmed and state=rolled_back for one task (``task``: an
    ``ActivateTask``), through ``target_run`` (a ``DetachedRun``)."""

    def __init__(self, task, target_run):
        self._task = task
        self._target_run = target_run

    def confirmed(self):
        """state=confirmed, for people who confirm by hand: claim the canary
        over a new connection and wait for the run to record its end (or
        tell that it already rolled back)."""
        task = self._task
        args, session, platform = task.args, task.session, task.platform
        if task.check_mode:
            session.new_login()
            out, values, _log = session.sh(_programs.confirm_script(
                platform, claim=False, **task.where()))
            if 'error' in values or not values.get('dir'):
                return {'failed': True, 'changed': False, 'msg': script_error(out, values)}
            pending = values.get('pending')
            return {'changed': bool(pending), 'confirmed': False, 'run': pending or None,
                    'platform': platform,
                    'msg': 'would confirm run %s' % pending if pending
                    else 'nothing awaits confirmation'}
        # the window, then the steps the run takes once confirmed (NixOS's
        # boot) and a rollback's activation when one of them fails
        deadline = task.timeline.started + args['confirm_timeout'] + \
            2 * args['activation_timeout'] + 30
        session.new_login()
        try:
            out, values, log = session.sh(_programs.confirm_script(
                platform, claim=True, wait=POLL_WAIT, **task.where()),
                timeout=POLL_WAIT + LOOK_TIMEOUT)
        except ConnectionLost as exc:
            return {'failed': True, 'changed': False, 'confirmed': False, 'phase': 'confirm',
                    'connection_lost': True,
                    'msg': 'could not confirm: host unreachable (%s); its watchdog rolls it '
                           'back' % exc}
        except LoginRefused as exc:
            # the new system refuses this login (its keys, its users): it is
            # never confirmed, so its watchdog rolls it back
            lines = str(exc).split('\n')
            lines[0] = 'could not confirm: %s; its watchdog rolls it back' % lines[0]
            return {'failed': True, 'changed': False, 'confirmed': False, 'phase': 'confirm',
                    'connection_lost': False, 'msg': '\n'.join(lines)}
        if 'error' in values or not values.get('dir'):
            return {'failed': True, 'changed': False, 'msg': script_error(out, values)}
        claimed = values.get('claimed') or None
        run = claimed or values.get('pending') or values.get('last')
        if not run:
            return {'changed': False, 'confirmed': False, 'run': None,
                    'platform': platform, 'msg': 'no activation to confirm'}
        values, log, problem = self._target_run.follow(run, False, deadline, values, log)
        res = _activation_result.result_from_status(values, log, platform, task.goal.name,
                                                    task.timeline.elapsed(), run)
        res['changed'] = bool(claimed) and values.get('state') == 'done'
        if values.get('state') == 'done':
            res['msg'] = 'confirmed %s' % values.get('new_path') if claimed else 'already confirmed'
        if problem:
            res.update(failed=True, msg='could not confirm: %s' % problem, phase='confirm',
                       connection_lost=session.lost > 0)
        return res

    def rolled_back(self):
        """state=rolled_back: the profile back to ``generation`` (default:
        the one before the current) and activated; in check mode, which
        generation that would be."""
        task = self._task
        args, session, platform = task.args, task.session, task.platform
        if task.check_mode:
            script = _programs.inspect_script(platform, generation=args['generation'],
                                              **task.where())
            out, values, _log = session.sh(script)
            if 'error' in values:
                return {'failed': True, 'changed': False, 'msg': script_error(out, values)}
            gens, current = values.get('gens', []), values.get('prev_gen')
            wanted = args['generation']
            if wanted is None and current is not None:
                older = [g for g in gens if g < current]
                wanted = older[-1] if older else None
            return {'changed': wanted is not None and wanted != current,
                    'previous': {'generation': current, 'path': values.get('prev_path') or None},
                    'new': {'generation': wanted, 'path': values.get('gen_path') or None},
                    'platform': platform, 'goal': task.goal.name, 'profile': values.get('profile'),
                    'msg': 'would roll back to generation %s' % wanted if wanted else
                           'no generation to roll back to'}
        target_run = self._target_run
        # its step file: a rollback that waits for another run's lock (an
        # interrupted deploy's watchdog) says so in the progress line
        steps = target_run.watch(False)
        try:
            steps.seen(None)
            run, values, log, failure = target_run.launch('rollback', False)
            if failure:
                failure['phase'] = 'rollback'
                return failure
            steps.seen(values)
            values, log, problem = target_run.follow(run, False, target_run.deadline(False),
                                                     values, log)
        finally:
            target_run.unwatch()
        task.timeline.add_run('rollback', values)
        res = _activation_result.result_from_status(values, log, platform, task.goal.name,
                                                    task.timeline.elapsed(), run)
        res.update(phases=task.timeline.phases, lost_connections=session.lost)
        if problem:
            res.update(failed=True, msg=problem, phase='rollback',
                       connection_lost=session.lost > 0)
        return res
