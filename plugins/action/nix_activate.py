# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of nixdeploy.fleet.nix_activate.

Everything on the target is a POSIX sh program (plugin_utils/activation/target/*.sh, put
together with its values by plugin_utils/activation/_programs.py, _reboot_rules.py, _health_checks.py) sent
over the task's connection like ``ansible.builtin.raw``, with become when the
task has it. The activation itself runs detached on the target; the task
starts it and follows its status file, through lost connections.

This plugin checks the arguments, puts the task's parts together and hands
the state over to them (plugin_utils/activation/): the run on the target
(``DetachedRun``, _detached_run.py: launch, follow, confirm, reject, undo),
the health checks before the confirmation (``HealthChecks``, _health_run.py),
the reboot (``Reboots``, _reboot_run.py), state=activated (``Activation``,
_activation.py) and state=confirmed / rolled_back (``LaterStates``,
_later_states.py).

With ``keys`` it uploads nix_keys' pre-activation keys (and prunes) before
the activation and the post-activation keys after a successful one, in the
same task (plugin_utils/keys/_keys_upload.py): a deploy costs no key tasks.
"""

import os
import time

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _platforms, _role_vars
from ansible_collections.nixdeploy.fleet.plugins.module_utils._specs import ACTIVATE_SPEC
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation import _activation_result, _programs
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._health_run import (
    HealthChecks)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._activation import (
    Activation)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._reboot_run import (
    Reboots)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._detached_run import (
    DetachedRun)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._activation_task import (
    ActivateTask, ConnectionLost, HostSession, NotReached, Timeline, not_reached, unreachable)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._later_states import (
    LaterStates)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.builds import _build, _gc_roots
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._ansible_core import loader_of
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._printable import printable
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._program_fields import (
    dropped_warning)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.keys import _keys, _keys_upload
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixOptions
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._action import (
    NixdeployAction, host_message)

# the phase a failed task names when its part did not: a state's own
# (a failed rollback is not a failed activation in the summary and report)
FAILED_PHASE = {'confirmed': 'confirm', 'rolled_back': 'rollback'}


class ActionModule(NixdeployAction):

    ARGUMENT_SPEC = ACTIVATE_SPEC
    ROLE_VARS = _role_vars.ACTIVATE
    PHASE = 'activate'
    # the host's key is judged before the first program runs on it (Host.sh,
    # plugin_utils/task/_action.py), before anything is uploaded or activated

    def host_result(self, args, result):
        # the host var nix_platform when the task leaves it unset (the option table)
        platform = args['platform']
        if not platform:
            return self.failed(result, 'no platform: set platform or the host var nix_platform')
        try:
            _platforms.platform_spec(platform)
            # the goal's row, parsed once here: every part reads its fields
            goal = _platforms.goal_row(args['goal'])
        except ValueError as exc:
            return self.failed(result, str(exc))
        problem = _activation_result.check_params(args, platform, goal)
        if problem:
            return self.failed(result, problem)
        session = HostSession(self.target, self._display, args.get('target_hosts'))
        task = ActivateTask(args, self.host, platform, goal, self._task.check_mode,
                            self._task.diff, session, Timeline())
        target_run = DetachedRun(task)
        try:
            if args['state'] == 'confirmed':
                outcome = LaterStates(task, target_run).confirmed()
            elif args['state'] == 'rolled_back':
                outcome = LaterStates(task, target_run).rolled_back()
            else:
                checks = HealthChecks(task, target_run)
                activation = Activation(task, target_run, checks,
                                        Reboots(task, target_run, checks))
                outcome = self._with_keys(task, activation)
        except NotReached as exc:
            outcome = not_reached(exc, FAILED_PHASE.get(args['state'], 'activate'))
        except ConnectionLost as exc:
            outcome = unreachable(exc)
        if not self._task.check_mode:
            self._follow_rollback(args, outcome)
        dropped = dropped_warning(self.host, session.dropped)
        if dropped:
            outcome.setdefault('warnings', []).append(dropped)
        if outcome.get('failed'):
            outcome.setdefault('phase', FAILED_PHASE.get(args['state'], 'activate'))
            outcome.setdefault('rolled_back', False)
            if outcome.get('msg'):
                outcome['msg'] = host_message(self.host, _activation_result.with_fault(
                    self.host, outcome['msg'], outcome.get('phase')))
        result.update(outcome)
        return result

    # ------------------------------------------------------------ GC root
    def _follow_rollback(self, args, outcome):
        """After a rollback (state=rolled_back, or an activation the host
        rolled back) the controller's GC root of this host points at the
        system the host now runs, or is removed when the controller's store
        lacks it (plugin_utils/builds/_gc_roots.py). The root is found as
        nix_build writes it: the folder is the variable nix_gc_root_dir
        (default /nix/var/nix/gcroots/nixdeploy), the fleet the host's
        nix_flake. A root that cannot be moved is a warning: the host's
        rollback itself stands."""
        running = _gc_roots.running_after_rollback(args['state'], outcome)
        if running is None:
            return
        row = _role_vars.BY_OPTION['gc_root_dir']
        folder = row.host_value(self.task_vars)
        folder = os.path.expanduser(u'%s' % self._render(folder)) if folder is not None \
            else row.default
        flake = _role_vars.host_value('flake', self.task_vars)
        try:
            fleet = _gc_roots.fleet_of(self._render(flake) if flake is not None else None,
                                       loader_of(self).get_basedir())
            builder = _build.Builder(NixOptions.from_params(args))
            done, root, warning = _gc_roots.follow_rollback(builder, folder, fleet, self.host,
                                                            running)
        except (NixdeployError, OSError) as exc:
            outcome.setdefault('warnings', []).append(
                "%s: the controller's GC root of the host still holds the system it rolled "
                "back from: %s" % (self.host, exc))
            return
        if done == 'moved':
            outcome['gc_root'] = root
        elif done == 'removed':
            outcome['gc_root'] = None
        if warning:
            outcome.setdefault('warnings', []).append(u'%s: %s' % (self.host, warning))

    # ------------------------------------------------------------ keys
    def _with_keys(self, task, activation):
        """state=activated: the pre-activation keys (and the prune), the
        activation (its dry run in check mode or with a dry goal), then,
        when it succeeded and is confirmed, the post-activation keys.
        Without keys and prune nothing more than the activation runs. A dry
        run does the keys as nix_keys' check mode does them."""
        args = task.args
        dry = task.check_mode or task.goal.dry
        try:
            keys = _keys.normalize_keys(args['keys'])
        except _keys.KeysError as exc:
            # a bad spec (any upload_at) fails the host before anything is uploaded
            return self._keys_failed(task, _keys_upload.failure(
                self, {'key_files': {}, 'removed': []}, exc.message))
        pre = self._upload(task, keys, 'pre-activation', args['keys_prune'], dry)
        if pre is not None and pre.get('failed'):
            return self._keys_failed(task, pre)
        try:
            res = activation.dry_run() if dry else activation.activate()
        except NotReached:
            raise
        except ConnectionLost as exc:
            res = unreachable(exc)
        post = None
        if res.get('failed'):
            pass  # a failed or rolled-back host gets no post-activation key
        elif res.get('state') == _programs.AWAITING:
            if _keys.select(keys, 'post-activation'):
                res.setdefault('warnings', []).append(
                    '%s: the post-activation keys were not uploaded: the activation awaits its '
                    'confirmation (confirm: false); upload them with nixdeploy.fleet.nix_keys '
                    '(upload_at: post-activation) once it is confirmed' % self.host)
        else:
            post = self._upload(task, keys, 'post-activation', False, dry)
        return self._with_key_results(task, res, pre, post, dry)

    def _with_key_results(self, task, res, pre, post, dry):
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
                if dry and not task.check_mode:
                    # a dry goal reports, and never reports a change
                    res['would_change'] = True
                else:
                    res['changed'] = True
        if any(diffs.values()):
            # the keys' diffs around the activation's own
            activation_diff = res.get('diff')
            res['diff'] = diffs.get('keys_pre', []) + ([activation_diff] if activation_diff else []) + \
                diffs.get('keys_post', [])
        if not res.get('warnings'):
            res.pop('warnings', None)
        if post is not None and post.get('failed'):
            detail = post['msg']
            # the keys' message starts with the host's name as host_message shows it
            prefix = '%s: ' % printable(self.host)
            if detail.startswith(prefix):
                detail = detail[len(prefix):]
            system = (res.get('new') or {}).get('path') or task.args['path']
            res.update(failed=True, phase='keys', rolled_back=False,
                       connection_lost=post['connection_lost'],
                       msg='%s, but the post-activation keys failed: %s' % (
                           'the dry run of %s passed' % system if dry
                           else '%s stays active (nothing is rolled back)' % system, detail))
        return res

    def _upload(self, task, keys, upload_at, prune, dry):
        """nix_keys' result for the keys of ``upload_at`` (None when there is
        nothing to do), timed as the phase ``keys`` of the activation."""
        start = time.time()
        part = _keys_upload.upload(self, keys, upload_at, prune,
                                   check_mode=dry, diff=task.diff)
        if part is not None and not dry:
            task.timeline.add('keys', start, 'failed' if part.get('failed')
                              else 'changed' if part.get('changed') else 'ok')
        return part

    def _keys_failed(self, task, part):
        """The pre-activation keys failed (``part``, nix_keys' failed result):
        the host fails in phase keys, nothing was activated."""
        res = {'failed': True, 'changed': False, 'phase': 'keys', 'rolled_back': False,
               'connection_lost': part['connection_lost'], 'activated': False,
               'confirmed': False, 'platform': task.platform, 'goal': task.goal.name,
               'msg': part['msg'], 'keys_pre': part}
        warnings = part.pop('warnings', None)
        if warnings:
            res['warnings'] = warnings
        if task.timeline.phases:
            res['phases'] = task.timeline.phases
        return res
