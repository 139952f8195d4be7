# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""nix_activate's run on the target (plugin_utils/activation/target/activate-*.sh):
launch it detached, follow its status file through lost connections,
confirm it over a new login, reject it (its watchdog rolls back at once),
and undo an activation with a rollback run of its own."""

import time
import uuid

from ansible import constants as C

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation import _activation_result, _programs
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._activation_steps import (
    ActivationSteps)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._activation_task import (
    LAUNCH_TIMEOUT, LAUNCH_WAIT, LOOK_TIMEOUT, MOVING_LAUNCH_TIMEOUT, POLL_WAIT, RETRY_INTERVAL,
    ConnectionLost, NotReached, script_error)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import to_int
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._store import file_name
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _run


def _lock_waited_for(values):
    """What the run waits for, as the controller last saw it, while it
    waits for a lock (None otherwise): the next look then returns as soon as
    that changes, not only at its end."""
    values = values or {}
    return values.get('waiting_for') if values.get('state') == 'waiting_lock' else None


class DetachedRun:
    """The runs of one task (``task``: an ``ActivateTask``) on its host.

    ``launch``, ``follow``, ``confirm`` and ``reject`` return what the run's
    status file said last (``values``, its ``log``) and a ``problem`` (None,
    or why the task could not see the run to its end)."""

    def __init__(self, task):
        self._task = task
        self._session = task.session
        self._timeline = task.timeline
        # the steps of the activation being followed (watch), or None
        self.steps = None

    def watch(self, magic_rollback, budget=0):
        """Tell the activation's steps and their bounds (``ActivationSteps``)
        from now until ``unwatch``; ``budget``: the health checks'."""
        window, _confirmed = self._task.goal.steps_on(self._task.platform, magic_rollback)
        activation = self._task.args['activation_timeout'] * max(len(window), 1)
        watchdog = self._task.args['confirm_timeout'] + budget if magic_rollback else None
        self.steps = ActivationSteps(self._task, activation, watchdog)
        return self.steps

    def unwatch(self):
        if self.steps is not None:
            self.steps.over()
        self.steps = None

    def deadline(self, magic_rollback, budget=0):
        """When following a run gives up (``budget``: the health checks')."""
        args = self._task.args
        goal = self._task.goal
        # each step of a run's activation may take activation_timeout: the
        # longer of the goal's and its rollback's (a rollback run's) steps
        step = args['activation_timeout']
        window, confirmed = goal.steps_on(self._task.platform, magic_rollback)
        rollback = len(goal.rollback().steps)
        activation = step * max(len(window), rollback, 1)
        # lock waits (the profile's, then the platform's own switch lock),
        # activation, and (with magic rollback) confirmation window, the
        # health checks' budget, the steps after the confirmation, plus the
        # rollback's own activation
        total = 2 * args['lock_timeout'] + activation + 30
        if magic_rollback:
            total += step * (len(confirmed) + max(rollback, 1)) + args['confirm_timeout'] + budget
        return time.time() + total

    def launch(self, mode, magic_rollback, **overrides):
        """Start a run and wait (in the same session) up to LAUNCH_WAIT s for
        it to end or await its confirmation. Returns (run, values, log,
        failure); values is None when the connection was lost after the
        run may have started: the caller follows it from a new one.
        ``overrides``: launch_script parameters other than the task's (a
        ``goal`` is a ``_platforms.Goal``, as the task's)."""
        task = self._task
        args = task.args
        run = '%d-%s' % (int(time.time()), uuid.uuid4().hex[:8])
        params = dict(path=args['path'] or '', goal=task.goal, magic_rollback=magic_rollback,
                      auto_rollback=args['auto_rollback'],
                      confirm_timeout=args['confirm_timeout'],
                      activation_timeout=args['activation_timeout'],
                      lock_timeout=args['lock_timeout'], generation=args['generation'],
                      wait=LAUNCH_WAIT, reactivate=args['reactivate'])
        params.update(task.where())
        params.update(task.activation_options())
        if mode == 'activate':
            # the copy's GC root of the system, released once the profile holds it
            params['root_key'] = file_name(task.host)
        params.update(overrides)
        script = _programs.launch_script(task.platform, run, mode, **params)
        # a host with several addresses may move while it activates, which
        # leaves this session hanging on a dead link: it gives up sooner (a
        # launch whose session is lost is followed from a new login), so
        # that the confirmation window still holds a look at its next address
        timeout = LAUNCH_TIMEOUT + LAUNCH_WAIT if len(self._session.addresses) < 2 \
            else MOVING_LAUNCH_TIMEOUT
        try:
            out, values, log = self._session.sh(script, timeout=timeout)
        except NotReached:
            # nothing started on the host: there is no run to follow
            raise
        except ConnectionLost as exc:
            self._session.count_lost()
            self._session.note('lost the launch session (%s); following' % exc)
            if self._session.next_address() is None:
                self._session.new_login()
            return run, None, '', None
        if 'error' in values or not values.get('dir') or not values.get('state'):
            return run, None, '', {'failed': True, 'changed': False,
                                   'msg': script_error(out, values)}
        return run, values, log, None

    def follow(self, run, magic_rollback, deadline, values=None, log=''):
        """Follow a run until it is done (or awaits its confirmation when
        ``magic_rollback``); lost connections are retried until ``deadline``."""
        session = self._session
        values, lost, dead_looks = values or {}, None, 0
        while not (values and _activation_result.finished(values, magic_rollback)):
            if time.time() > deadline:
                why = 'gave up following the activation after %ds in state %s' % (
                    int(self._timeline.elapsed()), values.get('state', 'unknown'))
                if lost:
                    why += ' (host unreachable: %s)' % lost
                return values, log, why
            try:
                _out, seen, seen_log = session.sh(
                    _programs.poll_script(self._task.platform, run, wait=POLL_WAIT,
                                          stop_awaiting=magic_rollback,
                                          seen_waiting=_lock_waited_for(values),
                                          **self._task.where()),
                    timeout=POLL_WAIT + LOOK_TIMEOUT)
            except ConnectionLost as exc:
                lost = str(exc)
                session.count_lost()
                session.note('%s; retrying' % lost)
                # a new login, at the host's next address when it has
                # several: the activation may have moved it
                if session.next_address() is None:
                    session.new_login()
                time.sleep(RETRY_INTERVAL)
                continue
            lost = None
            if seen.get('state'):
                values, log = seen, seen_log
                if self.steps is not None:
                    self.steps.seen(values)
            dead_looks = dead_looks + 1 if seen.get('alive') is False else 0
            if dead_looks >= 3 and not _activation_result.finished(values, magic_rollback):
                return values, log, ('the activation run on the target died in state %s'
                                     % values.get('state', 'starting'))
        return values, log, None

    def confirm(self, run, values, deadline):
        """Confirm ``run`` over NEW connections (a fresh ssh login each try,
        never the session that activated), then follow it to its end. A host
        whose new system refuses logins is never confirmed: its watchdog
        rolls it back, and this reports that. Adds the phase ``confirm``."""
        # the progress lines say "awaiting confirmation" for this host until
        # its confirmation is taken (or the run ends without one)
        _run.set_step(C.DEFAULT_LOCAL_TMP, self._task.host, _run.AWAITING_CONFIRMATION,
                      **(self.steps.bound() if self.steps is not None else {}))
        try:
            return self._confirm(run, values, deadline)
        finally:
            _run.clear_step(C.DEFAULT_LOCAL_TMP, self._task.host)

    def _confirm(self, run, values, deadline):
        session = self._session
        start = time.time()
        claimed, lost, log = False, None, ''
        while True:
            session.new_login()
            try:
                out, seen, seen_log = session.sh(_programs.confirm_script(
                    self._task.platform, claim=not claimed, run=run, wait=POLL_WAIT,
                    **self._task.where()), timeout=POLL_WAIT + LOOK_TIMEOUT)
                lost = None
            except ConnectionLost as exc:
                lost, seen = str(exc), None
                session.count_lost()
                # the new system may have moved the host: the next try logs
                # in at its next address (nix_target_hosts)
                session.next_address()
            if seen is not None:
                if 'error' in seen or not seen.get('dir'):
                    self._timeline.add_run('confirm', {'state': 'failed'}, start)
                    return values, log, script_error(out, seen)
                if not claimed and seen.get('claimed') == run:
                    # confirmed: what is left is the run's own end, and an
                    # interrupted run says the host keeps its new system
                    claimed = True
                    _run.set_step(C.DEFAULT_LOCAL_TMP, self._task.host, _run.CONFIRMED)
                if seen.get('state'):
                    values, log = seen, seen_log
                if values.get('state') in _programs.TERMINAL_STATES:
                    self._timeline.add_run('confirm', values, start)
                    return values, log, None
            if time.time() > deadline:
                self._timeline.add_run('confirm', {'state': 'failed'}, start)
                return values, log, 'could not confirm: %s' % (
                    'host unreachable (%s); its watchdog rolls it back' % lost if lost
                    else 'the run did not finish (state %s)' % values.get('state'))
            time.sleep(RETRY_INTERVAL if seen is None else 0)

    def reject(self, run, values, deadline, why):
        """Claim the canary of ``run`` as rejected (``why``), so that its
        watchdog rolls back at once (not at its deadline), and follow the
        run to its end. Adds the phase ``rollback``."""
        session = self._session
        start, lost, log = time.time(), None, ''
        while True:
            try:
                out, seen, seen_log = session.sh(_programs.reject_script(
                    self._task.platform, run, why, wait=POLL_WAIT, **self._task.where()),
                    timeout=POLL_WAIT + LOOK_TIMEOUT)
                break
            except ConnectionLost as exc:
                lost = str(exc)
                session.count_lost()
                session.new_login()
                if time.time() > deadline:
                    self._timeline.add('rollback', start, 'failed')
                    return values, log, ('could not reject the new system: host unreachable '
                                         '(%s); its watchdog rolls it back at its deadline' % lost)
                time.sleep(RETRY_INTERVAL)
        if 'error' in seen or not seen.get('dir'):
            self._timeline.add('rollback', start, 'failed')
            return values, log, script_error(out, seen)
        if seen.get('state'):
            values, log = seen, seen_log
        values, log, problem = self.follow(run, False, deadline, values, log)
        self._timeline.add_run('rollback', values, start)
        return values, log, problem

    def undo(self, generation, drop_generation, goal, why):
        """Undo this task's activation, which no watchdog guards: put the
        profile back to ``generation`` and activate it with ``goal`` (a
        ``_platforms.Goal``), deleting ``drop_generation``. Returns the
        result keys that say how that went (a failed result either way:
        ``why`` happened). Adds the phase ``rollback``."""
        start = time.time()
        # no generation: the newest one before the current (the runner picks)
        run, values, log, failure = self.launch(
            'rollback', False, goal=goal, generation=generation,
            drop_generation=drop_generation, why=why, auto_rollback=True)
        if failure:
            self._timeline.add('rollback', start, 'failed')
            return {'rolled_back': False, 'rollback_reason': why,
                    'msg': '%s; the rollback did not start: %s' % (why, failure['msg'])}
        values, log, problem = self.follow(run, False, self.deadline(False), values, log)
        self._timeline.add_run('rollback', values, start)
        if problem or values.get('state') not in ('done', 'unchanged'):
            return {'rolled_back': False, 'rollback_reason': why,
                    'msg': 'rollback failed: %s; %s' % (why, problem or values.get('reason'))}
        return {'rolled_back': True, 'rollback_reason': why, 'changed': True,
                'msg': 'rolled back: %s' % why,
                'rollback_generation': to_int(values.get('new_gen'))}
