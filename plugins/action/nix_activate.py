# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of nixdeploy.fleet.nix_activate.

Everything on the target is a POSIX sh script (module_utils/_target.py) sent
over the task's connection like ``ansible.builtin.raw``, with become when the
task has it. The activation itself runs detached on the target; this plugin
starts it and follows its status file, through lost connections.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading
import time
import uuid

from ansible.errors import AnsibleConnectionFailure
from ansible.plugins.action import ActionBase

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _activate, _platforms, _target

# How often the task looks at a run, and how long one look may take before
# the connection counts as lost (a mux session over a dead link never ends).
POLL_INTERVAL = 0.5
RETRY_INTERVAL = 2.0
LOOK_TIMEOUT = 10
# the launch waits (up to 10 s) for the runner's first status
LAUNCH_TIMEOUT = 60


class ConnectionLost(Exception):
    pass


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        _validation, args = self.validate_argument_spec(argument_spec=_activate.ARGUMENT_SPEC)
        platform = args['platform'] or self._host_var(task_vars, 'nix_platform')
        if not platform:
            return self._fail(result, 'no platform: set platform or the host var nix_platform')
        try:
            spec = _platforms.platform_spec(platform)
        except ValueError as exc:
            return self._fail(result, str(exc))
        problem = _activate.check_params(args, platform)
        if problem:
            return self._fail(result, problem)
        self._args, self._platform, self._spec = args, platform, spec
        self._started = time.time()
        try:
            if args['state'] == 'confirmed':
                outcome = self._confirm()
            elif args['state'] == 'rolled_back':
                outcome = self._rollback()
            elif self._task.check_mode or args['goal'] == 'dry-activate':
                outcome = self._dry()
            else:
                outcome = self._activate()
        except ConnectionLost as exc:
            outcome = {'unreachable': True, 'msg': '%s: %s' % (self._host(task_vars), exc)}
        if outcome.get('failed') and outcome.get('msg'):
            outcome['msg'] = '%s: %s' % (self._host(task_vars), outcome['msg']) \
                if not outcome['msg'].startswith('rolled back') else outcome['msg']
        result.update(outcome)
        return result

    # ------------------------------------------------------------ helpers
    def _host_var(self, task_vars, name):
        value = task_vars.get(name)
        if value is None:
            return None
        return self._templar.template(value)

    def _host(self, task_vars):
        return task_vars.get('inventory_hostname') or self._task.get_name()

    @staticmethod
    def _fail(result, msg):
        result.update(failed=True, changed=False, msg=msg)
        return result

    def _reset_connection(self):
        try:
            self._connection.reset()
        except Exception as exc:  # pylint: disable=broad-except
            self._display.vvv('nix_activate: connection reset failed: %s' % exc)

    def _sh(self, script, timeout=LOOK_TIMEOUT):
        """Run ``script`` on the target with sh; ConnectionLost when the
        connection fails or gives no answer within ``timeout`` seconds."""
        box = {}
        # a group: Ansible appends `&& sleep 0` to the command
        script = '{\n%s\n}' % script.strip('\n')

        def target():
            try:
                box['result'] = self._low_level_execute_command(script, sudoable=True)
            except Exception as exc:  # pylint: disable=broad-except
                box['error'] = exc

        worker = threading.Thread(target=target, name='nix_activate-sh')
        worker.daemon = True
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            # A session over a link that died never ends by itself: let the
            # next command open a fresh connection instead.
            self._reset_connection()
            raise ConnectionLost('no answer from the host within %ss' % timeout)
        error = box.get('error')
        if isinstance(error, AnsibleConnectionFailure):
            raise ConnectionLost(str(error).strip())
        if error is not None:
            raise error
        out = box['result']
        values, log = _target.parse(out.get('stdout', ''))
        return out, values, log

    def _script_error(self, out, values):
        detail = values.get('error') or (out.get('stderr') or out.get('stdout') or '').strip()
        return detail or 'the target script failed with exit code %s' % out.get('rc')

    def _common(self):
        args = self._args
        return dict(profile=args['profile'], remote_nix_dir=args['remote_nix_dir'])

    # ------------------------------------------------------------ states
    def _dry(self):
        args = self._args
        dry = self._spec['activation'].get('dry_run') is not None
        script = _target.inspect_script(self._platform, self._spec, path=args['path'], dry=dry,
                                        **self._common())
        out, values, log = self._sh(script, timeout=args['activation_timeout'] + LOOK_TIMEOUT)
        if 'error' in values or ('profile' not in values and out.get('rc')):
            return {'failed': True, 'changed': False, 'msg': self._script_error(out, values)}
        res = _activate.check_mode_result(values, log, self._platform, args['goal'], args['path'],
                                          'dry_rc' in values, time.time() - self._started)
        if args['goal'] == 'dry-activate':
            # an explicit dry activation is a report: it never changes anything
            res['would_change'] = res['changed']
            res['changed'] = False
        if self._task.diff:
            res['diff'] = _activate.diff_for(values.get('prev_path'), args['path'],
                                             values.get('prev_gen'))
        return res

    def _launch(self, mode, magic):
        args = self._args
        run = '%d-%s' % (int(time.time()), uuid.uuid4().hex[:8])
        script = _target.launch_script(
            self._platform, self._spec, run, mode, path=args['path'] or '', goal=args['goal'],
            magic=magic, auto=args['auto_rollback'], confirm_timeout=args['confirm_timeout'],
            activation_timeout=args['activation_timeout'], lock_timeout=args['lock_timeout'],
            generation=args['generation'], **self._common())
        out, values, _log = self._sh(script, timeout=LAUNCH_TIMEOUT)
        if 'error' in values or not values.get('dir') or not values.get('state'):
            return None, None, {'failed': True, 'changed': False,
                                'msg': self._script_error(out, values)}
        return run, values, None

    def _follow(self, state_dir, run, magic, deadline):
        """Poll a run until it is done (or awaits its confirmation when
        ``magic``); lost connections are retried until ``deadline``."""
        values, log, lost, dead_looks = {}, '', None, 0
        self._lost = 0
        while True:
            try:
                _out, look, look_log = self._sh(_target.poll_script(state_dir, run))
            except ConnectionLost as exc:
                lost = str(exc)
                self._lost += 1
                self._display.vvv('nix_activate: %s; retrying' % lost)
                self._reset_connection()
                look = None
            if look is not None:
                lost = None
                if look.get('state'):
                    values, log = look, look_log
                if _activate.finished(values, magic):
                    return values, log, None
                dead_looks = dead_looks + 1 if look.get('alive') == '0' else 0
                if dead_looks >= 3:
                    return values, log, ('the activation run on the target died in state %s'
                                         % values.get('state', 'starting'))
            if time.time() > deadline:
                why = 'gave up following the activation after %ds in state %s' % (
                    int(time.time() - self._started), values.get('state', 'unknown'))
                if lost:
                    why += ' (host unreachable: %s)' % lost
                return values, log, why
            time.sleep(RETRY_INTERVAL if look is None else POLL_INTERVAL)

    def _deadline(self, magic):
        args = self._args
        # lock wait, activation, and (magic) confirmation window plus the
        # rollback's own activation
        total = args['lock_timeout'] + args['activation_timeout'] + 30
        total += args['activation_timeout'] + args['confirm_timeout']
        return self._started + total

    def _activate(self):
        args = self._args
        magic = _activate.magic_applies(args, self._platform)
        run, launched, failure = self._launch('activate', magic)
        if failure:
            return failure
        values, log, problem = self._follow(launched['dir'], run, magic, self._deadline(magic))
        res = _activate.result_from_status(values, log, self._platform, args['goal'],
                                           time.time() - self._started, run)
        res['magic_rollback'] = magic
        res['detached_with'] = launched.get('detach')
        res['connection_lost'] = self._lost
        if problem:
            res.update(failed=True, msg=problem)
        if self._task.diff and res.get('changed'):
            res['diff'] = _activate.diff_for(res['previous']['path'], res['new']['path'],
                                             res['previous']['generation'])
        if res.get('state') == 'awaiting_confirmation':
            # The confirmation must prove a fresh login works: drop this
            # connection so the next task opens a new one even if the play
            # forgets `meta: reset_connection`.
            self._reset_connection()
        return res

    def _rollback(self):
        args = self._args
        if self._task.check_mode:
            script = _target.inspect_script(self._platform, self._spec, generation=args['generation'],
                                            **self._common())
            out, values, _log = self._sh(script)
            if 'error' in values:
                return {'failed': True, 'changed': False, 'msg': self._script_error(out, values)}
            gens = [int(g) for g in values.get('gens', '').split() if g.isdigit()]
            current = int(values['prev_gen']) if values.get('prev_gen', '').isdigit() else None
            wanted = args['generation']
            if wanted is None and current is not None:
                older = [g for g in gens if g < current]
                wanted = older[-1] if older else None
            return {'changed': wanted is not None and wanted != current,
                    'previous': {'generation': current, 'path': values.get('prev_path') or None},
                    'new': {'generation': wanted, 'path': values.get('gen_path') or None},
                    'platform': self._platform, 'goal': args['goal'], 'profile': values.get('profile'),
                    'msg': 'would roll back to generation %s' % wanted if wanted else
                           'no generation to roll back to'}
        run, launched, failure = self._launch('rollback', False)
        if failure:
            return failure
        values, log, problem = self._follow(launched['dir'], run, False, self._deadline(False))
        res = _activate.result_from_status(values, log, self._platform, args['goal'],
                                           time.time() - self._started, run)
        if problem:
            res.update(failed=True, msg=problem)
        return res

    def _confirm(self):
        """Claim the canary over a new connection, then wait until the run
        has recorded its confirmation (or tell that it already rolled back)."""
        args = self._args
        # a confirmation proves that a new login works: never reuse a session
        self._reset_connection()
        claim = not self._task.check_mode
        deadline = self._started + args['confirm_timeout'] + args['activation_timeout'] + 30
        claimed, lost = None, None
        while True:
            try:
                out, values, _log = self._sh(_target.confirm_script(
                    self._platform, self._spec, claim=claim and not claimed, **self._common()))
                lost = None
            except ConnectionLost as exc:
                lost, values = str(exc), None
                self._reset_connection()
            if values is not None:
                if 'error' in values or not values.get('dir'):
                    return {'failed': True, 'changed': False, 'msg': self._script_error(out, values)}
                claimed = claimed or values.get('claimed') or None
                run = claimed or values.get('pending') or values.get('last')
                if self._task.check_mode:
                    return {'changed': bool(values.get('pending')), 'confirmed': False,
                            'run': run or None, 'platform': self._platform,
                            'msg': 'would confirm run %s' % values['pending']
                            if values.get('pending') else 'nothing awaits confirmation'}
                if not run:
                    return {'changed': False, 'confirmed': False, 'run': None,
                            'platform': self._platform, 'msg': 'no activation to confirm'}
                state, status, log = self._look(values['dir'], run)
                if state is not None and (state in _target.TERMINAL_STATES):
                    res = _activate.result_from_status(status, log, self._platform, args['goal'],
                                                       time.time() - self._started, run)
                    res['changed'] = bool(claimed) and state == 'done'
                    if state == 'done':
                        res['msg'] = 'confirmed %s' % status.get('new_path') if claimed else \
                            'already confirmed'
                    return res
            if time.time() > deadline:
                return {'failed': True, 'changed': False, 'confirmed': False,
                        'msg': 'could not confirm: %s' % (
                            'host unreachable (%s); its watchdog rolls back' % lost if lost
                            else 'the activation did not finish')}
            time.sleep(RETRY_INTERVAL if values is None else POLL_INTERVAL)

    def _look(self, state_dir, run):
        try:
            _out, values, log = self._sh(_target.poll_script(state_dir, run))
        except ConnectionLost:
            return None, {}, ''
        return values.get('state'), values, log
