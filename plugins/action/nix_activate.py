# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of nixdeploy.fleet.nix_activate.

Everything on the target is a POSIX sh program (module_utils/target/*.sh, put
together with its values by module_utils/_target.py, _reboot.py, _health.py) sent
over the task's connection like ``ansible.builtin.raw``, with become when the
task has it. The activation itself runs detached on the target; this plugin
starts it and follows its status file, through lost connections.

After the activation and before the confirmation it runs the host's health
checks (module_utils/_health.py); a failing check rejects the run, whose
watchdog rolls it back at once. With ``reboot`` it makes the new system the
boot default, reboots the host, waits for a new boot id, verifies what
booted and runs the checks (module_utils/_reboot.py).

With ``keys`` it uploads nix_keys' pre-activation keys (and prunes) before
the activation and the post-activation keys after a successful one, in the
same task (plugin_utils/_keys_upload.py): a deploy costs no key tasks.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading
import time
import uuid

from ansible.errors import AnsibleConnectionFailure

from ansible_collections.nixdeploy.fleet.plugins.module_utils import (
    _activate, _closure, _copy, _health, _keys, _platforms, _reboot, _role_vars, _script, _target)
from ansible_collections.nixdeploy.fleet.plugins.module_utils._activate import (
    ARGUMENT_SPEC as ACTIVATE_SPEC)
from ansible_collections.nixdeploy.fleet.plugins.module_utils._data import to_int
from ansible_collections.nixdeploy.fleet.plugins.module_utils._nix import NixOptions
from ansible_collections.nixdeploy.fleet.plugins.module_utils._store import file_name
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils import _keys_upload
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils._action import (
    NixdeployAction, host_message)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils._activate_checks import HealthChecks
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils._activate_reboot import Reboots
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils._ssh import drop_master
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils._activate_session import (
    LAUNCH_TIMEOUT, LAUNCH_WAIT, LOOK_TIMEOUT, POLL_WAIT, RETRY_INTERVAL, ConnectionLost)


class ActionModule(HealthChecks, Reboots, NixdeployAction):

    ARGUMENT_SPEC = ACTIVATE_SPEC
    ROLE_VARS = _role_vars.ACTIVATE
    PHASE = 'activate'

    def run_host(self, args, result):
        platform = args['platform'] or self._host_var('nix_platform')
        if not platform:
            return self.failed(result, 'no platform: set platform or the host var nix_platform')
        try:
            spec = _platforms.platform_spec(platform)
        except ValueError as exc:
            return self.failed(result, str(exc))
        problem = _activate.check_params(args, platform)
        if problem:
            return self.failed(result, problem)
        self._args, self._platform, self._spec = args, platform, spec
        self._started = time.time()
        self._phases, self._lost = [], 0
        self._health, self._reboot = None, None
        try:
            if args['state'] == 'confirmed':
                outcome = self._confirm()
            elif args['state'] == 'rolled_back':
                outcome = self._rollback()
            else:
                outcome = self._with_keys(self._task.check_mode or args['goal'] == 'dry-activate')
        except ConnectionLost as exc:
            outcome = _unreachable(exc)
        if outcome.get('failed'):
            outcome.setdefault('phase', 'confirm' if args['state'] == 'confirmed' else 'activate')
            outcome.setdefault('rolled_back', False)
            if outcome.get('msg'):
                outcome['msg'] = host_message(self.host, _activate.with_fault(
                    self.host, outcome['msg'], outcome.get('phase')))
        result.update(outcome)
        return result

    # ------------------------------------------------------------ keys
    def _with_keys(self, dry):
        """state=activated: the pre-activation keys (and the prune), the
        activation (``dry``: its dry run), then, when it succeeded and is
        confirmed, the post-activation keys. Without keys and prune nothing
        more than the activation runs. ``dry``: the keys as nix_keys' check
        mode does them."""
        args = self._args
        try:
            keys = _keys.normalize_keys(args['keys'])
        except _keys.KeysError as exc:
            # a bad spec (any upload_at) fails the host before anything is uploaded
            return self._keys_failed(_keys_upload.failure(self, {'key_files': {}, 'removed': []},
                                                          exc.message))
        pre = self._upload(keys, 'pre-activation', args['keys_prune'], dry)
        if pre is not None and pre.get('failed'):
            return self._keys_failed(pre)
        try:
            res = self._dry() if dry else self._activate()
        except ConnectionLost as exc:
            res = _unreachable(exc)
        post = None
        if res.get('failed'):
            pass  # a failed or rolled-back host gets no post-activation key
        elif res.get('state') == _target.AWAITING:
            if _keys.select(keys, 'post-activation'):
                res.setdefault('warnings', []).append(
                    '%s: the post-activation keys were not uploaded: the activation awaits its '
                    'confirmation (confirm: false); upload them with nixdeploy.fleet.nix_keys '
                    '(upload_at: post-activation) once it is confirmed' % self.host)
        else:
            post = self._upload(keys, 'post-activation', False, dry)
        return self._with_key_results(res, pre, post, dry)

    def _with_key_results(self, res, pre, post, dry):
        """The activation's result ``res`` with the keys' parts (nix_keys'
        results, None when not run) as keys_pre and keys_post: their changes,
        warnings and diffs, and a failure of the post-activation keys."""
        diffs = {}
        for name, part in (('keys_pre', pre), ('keys_post', post)):
            if part is None:
                continue
            res.setdefault('warnings', []).extend(part.pop('warnings', None) or [])
            diffs[name] = part.pop('diff', None) or []
            res[name] = part
            if part.get('changed'):
                if dry and not self._task.check_mode:
                    # goal dry-activate reports, and never reports a change
                    res['would_change'] = True
                else:
                    res['changed'] = True
        if any(diffs.values()):
            # the keys' diffs around the activation's own
            own = res.get('diff')
            res['diff'] = diffs.get('keys_pre', []) + ([own] if own else []) + \
                diffs.get('keys_post', [])
        if not res.get('warnings'):
            res.pop('warnings', None)
        if post is not None and post.get('failed'):
            detail = post['msg']
            if detail.startswith('%s: ' % self.host):
                detail = detail[len(self.host) + 2:]
            system = (res.get('new') or {}).get('path') or self._args['path']
            res.update(failed=True, phase='keys', rolled_back=False,
                       connection_lost=post['connection_lost'],
                       msg='%s, but the post-activation keys failed: %s' % (
                           'the dry run of %s passed' % system if dry
                           else '%s stays active (nothing is rolled back)' % system, detail))
        return res

    def _upload(self, keys, upload_at, prune, dry):
        """nix_keys' result for the keys of ``upload_at`` (None when there is
        nothing to do), timed as the phase ``keys`` of the activation."""
        start = time.time()
        part = _keys_upload.upload(self, keys, upload_at, prune,
                                   check_mode=dry, diff=self._task.diff)
        if part is not None and not dry:
            self._sub_phase('keys', start, 'failed' if part.get('failed')
                            else 'changed' if part.get('changed') else 'ok')
        return part

    def _keys_failed(self, part):
        """The pre-activation keys failed (``part``, nix_keys' failed result):
        the host fails in phase keys, nothing was activated."""
        res = {'failed': True, 'changed': False, 'phase': 'keys', 'rolled_back': False,
               'connection_lost': part['connection_lost'], 'activated': False,
               'confirmed': False, 'platform': self._platform, 'goal': self._args['goal'],
               'msg': part['msg'], 'keys_pre': part}
        warnings = part.pop('warnings', None)
        if warnings:
            res['warnings'] = warnings
        if self._phases:
            res['phases'] = self._phases
        return res

    # ------------------------------------------------------------ helpers
    def _host_var(self, name):
        value = self.task_vars.get(name)
        if value is None:
            return None
        return self._templar.template(value)

    def _reset_connection(self):
        try:
            drop_master(self._connection)
        except Exception as exc:  # pylint: disable=broad-except
            self._display.vvv('nix_activate: connection reset failed: %s' % exc)

    def _sh(self, script, timeout=LOOK_TIMEOUT):
        """Run ``script`` on the target with sh; ConnectionLost when the
        connection fails or gives no answer within ``timeout`` seconds."""
        answer = {}

        def target():
            try:
                answer['result'] = self.target_sh(script, sudoable=True)
            except Exception as exc:  # pylint: disable=broad-except
                answer['error'] = exc

        worker = threading.Thread(target=target, name='nix_activate-sh')
        worker.daemon = True
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            # A session over a link that died never ends by itself: let the
            # next command open a fresh connection instead.
            self._reset_connection()
            raise ConnectionLost('no answer from the host within %ss' % timeout)
        error = answer.get('error')
        if isinstance(error, AnsibleConnectionFailure):
            raise ConnectionLost(str(error).strip())
        if error is not None:
            raise error
        rc, stdout, stderr = answer['result']
        out = {'rc': rc, 'stdout': stdout, 'stderr': stderr}
        values, log = _script.parse(stdout)
        return out, values, log

    def _script_error(self, out, values):
        # with become over a pty, sudo's own words come on stdout
        said = '%s\n%s' % (out.get('stderr') or '', out.get('stdout') or '')
        become = _copy.become_problem(said) if not values.get('error') else ''
        if become:
            return become
        detail = values.get('error') or (out.get('stderr') or out.get('stdout') or '').strip()
        return detail or 'the target script failed with exit code %s' % out.get('rc')

    def _common(self):
        args = self._args
        return dict(profile=args['profile'], remote_nix_dir=args['remote_nix_dir'])

    def _activation_options(self):
        """The task's options every activation of the run gets (the dry
        runs too): pre-switch checks, boot loader, backup extension."""
        args = self._args
        return dict(no_check=not args['pre_switch_checks'],
                    install_bootloader=args['install_bootloader'],
                    backup_extension=args['backup_extension'])

    # ------------------------------------------------------------ states
    def _dry(self):
        args = self._args
        dry = self._spec['activation'].get('dry_run') is not None
        script = _target.inspect_script(self._platform, path=args['path'], dry=dry,
                                        **dict(self._common(), **self._activation_options()))
        out, values, log = self._sh(script, timeout=args['activation_timeout'] + LOOK_TIMEOUT)
        if 'error' in values or ('profile' not in values and out.get('rc')):
            return {'failed': True, 'changed': False, 'msg': self._script_error(out, values)}
        res = _activate.check_mode_result(values, log, self._platform, args['goal'], args['path'],
                                          'dry_rc' in values, time.time() - self._started,
                                          reactivate=args['reactivate'])
        refusal = _reboot.switch_refusal(values.get('dry_rc'), log) \
            if res.get('failed') else None
        if refusal:
            # the pre-switch checks would refuse the switch: say which and the ways out
            res['switch_refused'] = refusal
            res['msg'] = 'dry activation: %s' % _reboot.refusal_message(refusal)
        if args['goal'] == 'dry-activate':
            # an explicit dry activation is a report: it never changes anything
            res['would_change'] = res['changed']
            res['changed'] = False
        if args['health_checks']:
            why = 'check mode' if self._task.check_mode else 'goal dry-activate'
            res['health_checks'] = _health.skipped(args['health_checks'], why)
            res['msg'] = '%s; %s' % (res['msg'], res['health_checks']['msg'])
        if args['reboot'] != 'never' and _activate.reboots(self._platform):
            res['reboot'] = self._foresee_reboot(values.get('present') == '1')
        if self._task.diff:
            self._diff(res, values.get('prev_path'), args['path'], values.get('prev_gen'))
        return res

    def _launch(self, mode, magic, **overrides):
        """Start a run and wait (in the same session) up to LAUNCH_WAIT s for
        it to end or await its confirmation. Returns (run, values, log,
        failure); values is None when the connection was lost after the
        run may have started: the caller follows it from a new one.
        ``overrides``: launch_script parameters other than the task's."""
        args = self._args
        run = '%d-%s' % (int(time.time()), uuid.uuid4().hex[:8])
        params = dict(path=args['path'] or '', goal=args['goal'], magic=magic,
                      auto=args['auto_rollback'], confirm_timeout=args['confirm_timeout'],
                      activation_timeout=args['activation_timeout'],
                      lock_timeout=args['lock_timeout'], generation=args['generation'],
                      wait=LAUNCH_WAIT, reactivate=args['reactivate'])
        params.update(self._common())
        params.update(self._activation_options())
        if mode == 'activate':
            # the copy's GC root of the system, released once the profile holds it
            params['root_key'] = file_name(self.host)
        params.update(overrides)
        script = _target.launch_script(self._platform, run, mode, **params)
        try:
            out, values, log = self._sh(script, timeout=LAUNCH_TIMEOUT + LAUNCH_WAIT)
        except ConnectionLost as exc:
            self._lost += 1
            self._display.vvv('nix_activate: lost the launch session (%s); following' % exc)
            self._reset_connection()
            return run, None, '', None
        if 'error' in values or not values.get('dir') or not values.get('state'):
            return run, None, '', {'failed': True, 'changed': False,
                                   'msg': self._script_error(out, values)}
        return run, values, log, None

    def _follow(self, run, magic, deadline, values=None, log=''):
        """Follow a run until it is done (or awaits its confirmation when
        ``magic``); lost connections are retried until ``deadline``."""
        values, lost, dead_looks = values or {}, None, 0
        while not (values and _activate.finished(values, magic)):
            if time.time() > deadline:
                why = 'gave up following the activation after %ds in state %s' % (
                    int(time.time() - self._started), values.get('state', 'unknown'))
                if lost:
                    why += ' (host unreachable: %s)' % lost
                return values, log, why
            try:
                _out, look, look_log = self._sh(
                    _target.poll_script(self._platform, run, wait=POLL_WAIT,
                                        stop_awaiting=magic, **self._common()),
                    timeout=POLL_WAIT + LOOK_TIMEOUT)
            except ConnectionLost as exc:
                lost = str(exc)
                self._lost += 1
                self._display.vvv('nix_activate: %s; retrying' % lost)
                self._reset_connection()
                time.sleep(RETRY_INTERVAL)
                continue
            lost = None
            if look.get('state'):
                values, log = look, look_log
            dead_looks = dead_looks + 1 if look.get('alive') == '0' else 0
            if dead_looks >= 3 and not _activate.finished(values, magic):
                return values, log, ('the activation run on the target died in state %s'
                                     % values.get('state', 'starting'))
        return values, log, None

    def _deadline(self, magic, budget=0):
        args = self._args
        # lock waits (the profile's, then the platform's own switch lock),
        # activation, and (magic) confirmation window, the health checks'
        # budget, plus the rollback's own activation
        total = 2 * args['lock_timeout'] + args['activation_timeout'] + 30
        if magic:
            total += args['activation_timeout'] + args['confirm_timeout'] + budget
        return time.time() + total

    def _activate(self):
        """Activate (and confirm), with health checks and, when asked, a reboot."""
        args = self._args
        self._lost = 0
        before = None
        if args['reboot'] != 'never' and _activate.reboots(self._platform):
            self._reboot = {'mode': args['reboot'], 'needed': None, 'reasons': [],
                            'rebooted': False}
            before = self._sh(_reboot.probe_script(args['path']))[1]
            needed, reasons = _reboot.reboot_reasons(before)
            self._reboot.update(needed=needed, reasons=reasons)
            if _reboot.wants_reboot(args['reboot'], needed):
                return self._finish(self._boot_and_reboot(before))
        res, log = self._switch()
        if res.get('state') == _target.REFUSED:
            refusal = _reboot.switch_refusal(1, log) or {'checks': [], 'inhibitors': [],
                                                         'lines': []}
            res['switch_refused'] = refusal
            if args['reboot'] == 'when-needed' and before is not None:
                # what `nixos-rebuild boot` and a reboot would do, verified
                self._reboot.update(needed=True, reasons=self._reboot['reasons'] + [
                    'the switch was refused by the pre-switch check %s'
                    % _reboot.describe_refusal(refusal)])
                rebooted = self._boot_and_reboot(before)
                rebooted['switch_refused'] = refusal
                return self._finish(rebooted)
            res['msg'] = _reboot.refusal_message(refusal)
            res['checks_not_run'] = 'the switch was refused'
        return self._finish(res)

    def _finish(self, res):
        """What every activation result carries besides the run's status."""
        if self._health is not None:
            res['health_checks'] = self._health
        elif self._args['health_checks']:
            res['health_checks'] = _health.skipped(self._args['health_checks'], res.get(
                'checks_not_run') or 'the activation did not get that far')
        res.pop('checks_not_run', None)
        res.pop('rollback_generation', None)
        if self._reboot is not None:
            res['reboot'] = self._reboot
        res['phases'] = self._phases
        if self._task.diff and res.get('changed') and not res.get('rolled_back') \
                and res.get('new', {}).get('path'):
            self._diff(res, res['previous']['path'], res['new']['path'],
                       res['previous']['generation'])
        return res

    def _switch(self):
        """The activation with the task's goal: launch, follow, health checks,
        then confirm (magic rollback) or, when a check fails, reject the run
        so that its watchdog rolls it back at once. Returns (result, log)."""
        args = self._args
        checks = args['health_checks']
        magic = _activate.magic_applies(args)
        # the watchdog's window leaves the checks all their tries
        budget = _health.budget(checks) if magic else 0
        deadline = self._deadline(magic, budget)
        run, values, log, failure = self._launch(
            'activate', magic, confirm_timeout=args['confirm_timeout'] + budget)
        if failure:
            failure['phase'] = 'activate'
            return failure, ''
        detach = (values or {}).get('detach')
        unit = (values or {}).get('unit') or None
        values, log, problem = self._follow(run, magic, deadline, values, log)
        self._phase('activate', values)
        state = values.get('state')
        summary, not_run = None, None
        if not problem and state == _target.AWAITING:
            summary = self._checks_phase()
            if summary and not summary['ok']:
                values, log, problem = self._reject_run(run, values, deadline, summary['msg'])
            elif args['confirm']:
                # The confirmation belongs to this host's own task: its
                # window starts and ends with this host, whatever the others do.
                values, log, problem = self._confirm_run(run, values, deadline)
            else:
                # left to a later state=confirmed task: make sure that one
                # opens a new connection, even without meta: reset_connection
                self._reset_connection()
        elif not problem and state in ('done', 'unchanged'):
            if not _platforms.goal_spec(args['goal'])['records_active']:
                not_run = 'goal %s activates nothing before the next boot' % args['goal']
            else:
                summary = self._checks_phase()
        res = _activate.result_from_status(values, log, self._platform, args['goal'],
                                           time.time() - self._started, run)
        # no confirmation in time: the new system could not be reached
        unconfirmed = values.get('cause') == 'unconfirmed'
        res.update(magic_rollback=magic, detached_with=detach, unit=unit,
                   lost_connections=self._lost,
                   connection_lost=unconfirmed or (self._lost > 0 and bool(problem)))
        if not_run:
            res['checks_not_run'] = not_run
        if problem:
            res.update(failed=True, msg=problem)
        if res.get('failed'):
            res['phase'] = self._phases[-1]['name'] if self._phases else 'activate'
        if summary and not summary['ok']:
            res['phase'] = 'checks'
            if state in ('done', 'unchanged'):
                res = self._checks_failed_unguarded(res, summary, state)
        return res, log

    def _roll_back(self, generation, drop_generation, goal, why):
        """Put the profile back to ``generation`` and activate it with
        ``goal``, deleting ``drop_generation``. Returns the result keys that
        say how that went (a failed result either way: ``why`` happened)."""
        start = time.time()
        # no generation: the newest one before the current (the runner picks)
        run, values, log, failure = self._launch(
            'rollback', False, goal=goal, generation=generation,
            drop_generation=drop_generation, why=why, auto=True)
        if failure:
            self._sub_phase('rollback', start, 'failed')
            return {'rolled_back': False, 'rollback_reason': why,
                    'msg': '%s; the rollback did not start: %s' % (why, failure['msg'])}
        values, log, problem = self._follow(run, False, self._deadline(False), values, log)
        self._phase('rollback', values, start)
        if problem or values.get('state') not in ('done', 'unchanged'):
            return {'rolled_back': False, 'rollback_reason': why,
                    'msg': 'rollback failed: %s; %s' % (why, problem or values.get('reason'))}
        return {'rolled_back': True, 'rollback_reason': why, 'changed': True,
                'msg': 'rolled back: %s' % why,
                'rollback_generation': to_int(values.get('new_gen'))}

    def _sub_phase(self, name, start, outcome):
        self._phases.append({'name': name, 'start': round(start, 3),
                             'end': round(time.time(), 3), 'outcome': outcome})

    def _phase(self, name, values, start=None):
        state = (values or {}).get('state', 'unknown')
        outcome = {'done': 'changed', 'awaiting_confirmation': 'changed',
                   'unchanged': 'ok'}.get(state, state)
        begin = start if start is not None else (
            self._phases[-1]['end'] if self._phases else self._started)
        self._phases.append({'name': name, 'start': round(begin, 3),
                             'end': round(time.time(), 3), 'outcome': outcome})

    def _confirm_run(self, run, values, deadline):
        """Confirm ``run`` over NEW connections (a fresh ssh login each try,
        never the session that activated), then follow it to its end. A host
        whose new system refuses logins is never confirmed: its watchdog
        rolls it back, and this reports that."""
        start = time.time()
        claimed, lost, log = False, None, ''
        while True:
            self._reset_connection()
            try:
                out, look, look_log = self._sh(_target.confirm_script(
                    self._platform, claim=not claimed, run=run, wait=POLL_WAIT,
                    **self._common()), timeout=POLL_WAIT + LOOK_TIMEOUT)
                lost = None
            except ConnectionLost as exc:
                lost, look = str(exc), None
                self._lost += 1
            if look is not None:
                if 'error' in look or not look.get('dir'):
                    self._phase('confirm', {'state': 'failed'}, start)
                    return values, log, self._script_error(out, look)
                claimed = claimed or look.get('claimed') == run
                if look.get('state'):
                    values, log = look, look_log
                if values.get('state') in _target.TERMINAL_STATES:
                    self._phase('confirm', values, start)
                    return values, log, None
            if time.time() > deadline:
                self._phase('confirm', {'state': 'failed'}, start)
                return values, log, 'could not confirm: %s' % (
                    'host unreachable (%s); its watchdog rolls it back' % lost if lost
                    else 'the run did not finish (state %s)' % values.get('state'))
            time.sleep(RETRY_INTERVAL if look is None else 0)

    def _diff(self, res, previous_path, new_path, previous_gen):
        """Diff mode: the profile's store path against the new one and, with
        closure_diff, the closure difference (also kept in the result)."""
        res['diff'] = _activate.diff_for(previous_path, new_path, previous_gen)
        if self._args['closure_diff'] and previous_path and new_path != previous_path:
            lines, summary = _closure.diff_closures(NixOptions.from_params(self._args),
                                                    previous_path, new_path)
            res['diff']['prepared'] = '\n'.join(
                ['%s -> %s' % (previous_path, new_path)] + lines) + '\n'
            res['closure_diff'] = summary or {'lines': lines}

    def _rollback(self):
        args = self._args
        if self._task.check_mode:
            script = _target.inspect_script(self._platform, generation=args['generation'],
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
        self._lost = 0
        run, values, log, failure = self._launch('rollback', False)
        if failure:
            failure['phase'] = 'rollback'
            return failure
        values, log, problem = self._follow(run, False, self._deadline(False), values, log)
        self._phase('rollback', values)
        res = _activate.result_from_status(values, log, self._platform, args['goal'],
                                           time.time() - self._started, run)
        res.update(phases=self._phases, lost_connections=self._lost)
        if problem:
            res.update(failed=True, msg=problem, phase='rollback',
                       connection_lost=self._lost > 0)
        return res

    def _confirm(self):
        """state=confirmed, for people who confirm by hand: claim the canary
        over a new connection and wait for the run to record its end (or
        tell that it already rolled back)."""
        args = self._args
        if self._task.check_mode:
            self._reset_connection()
            out, values, _log = self._sh(_target.confirm_script(
                self._platform, claim=False, **self._common()))
            if 'error' in values or not values.get('dir'):
                return {'failed': True, 'changed': False, 'msg': self._script_error(out, values)}
            pending = values.get('pending')
            return {'changed': bool(pending), 'confirmed': False, 'run': pending or None,
                    'platform': self._platform,
                    'msg': 'would confirm run %s' % pending if pending
                    else 'nothing awaits confirmation'}
        self._lost = 0
        deadline = self._started + args['confirm_timeout'] + args['activation_timeout'] + 30
        self._reset_connection()
        try:
            out, values, log = self._sh(_target.confirm_script(
                self._platform, claim=True, wait=POLL_WAIT, **self._common()),
                timeout=POLL_WAIT + LOOK_TIMEOUT)
        except ConnectionLost as exc:
            return {'failed': True, 'changed': False, 'confirmed': False, 'phase': 'confirm',
                    'connection_lost': True,
                    'msg': 'could not confirm: host unreachable (%s); its watchdog rolls it '
                           'back' % exc}
        if 'error' in values or not values.get('dir'):
            return {'failed': True, 'changed': False, 'msg': self._script_error(out, values)}
        claimed = values.get('claimed') or None
        run = claimed or values.get('pending') or values.get('last')
        if not run:
            return {'changed': False, 'confirmed': False, 'run': None,
                    'platform': self._platform, 'msg': 'no activation to confirm'}
        values, log, problem = self._follow(run, False, deadline, values, log)
        res = _activate.result_from_status(values, log, self._platform, args['goal'],
                                           time.time() - self._started, run)
        res['changed'] = bool(claimed) and values.get('state') == 'done'
        if values.get('state') == 'done':
            res['msg'] = 'confirmed %s' % values.get('new_path') if claimed else 'already confirmed'
        if problem:
            res.update(failed=True, msg='could not confirm: %s' % problem, phase='confirm',
                       connection_lost=self._lost > 0)
        return res


def _unreachable(exc):
    """A lost connection (ConnectionLost ``exc``): a failed result a program
    can read, not an unreachable host."""
    return {'failed': True, 'changed': False, 'connection_lost': True,
            'msg': 'host unreachable: %s' % exc}
