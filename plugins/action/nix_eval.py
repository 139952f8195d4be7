# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of nixdeploy.fleet.nix_eval (see plugins/modules/nix_eval.py).

Runs once per host like any task, but the first host of the play batch
starts the evaluation of the whole batch in the batch server's detached
process (plugin_utils/task/_batch_work.py): parallel ``nix eval``
processes, a shared part evaluated once per process, answers from the
evaluation cache first (plugin_utils/evaluation/stage/_stage.py). Each
host's task ends as soon as its own answer is known, so its build starts
while the others are still evaluated.
"""

import os

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _run_files
from ansible_collections.nixdeploy.fleet.plugins.module_utils import _platforms, _role_vars
from ansible_collections.nixdeploy.fleet.plugins.module_utils._specs import EVAL_SPEC
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._ansible_core import task_uuid
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.builds._builders import (
    TARGET, parse_build_on)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.stage import _stage
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation._eval import (
    evaluation_options)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.evaluation.flake._source import (
    RunSources)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _redact
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix_hints
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import (
    NixCommand, NixError, NixOptions)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._action import (
    NixdeployAction, verbose_traceback)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._run import (
    batch_folder, play_uuid, short_digest, task_batch)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_work import BatchWork
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _outcome, _reach
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._serial import JUDGE
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._detached import BatchError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._waits import SERIAL_ANSWER_WAIT


# what a failed result keeps under ``details`` (task/_outcome.py)
INTERNALS = ('play_hosts', 'nix_processes', 'evaluation', 'batch', 'batch_hosts',
             'evaluated_here', 'started_here', 'from_cache', 'answered', 'reused', 'source',
             'probe')


class ActionModule(NixdeployAction):

    _requires_connection = False
    ARGUMENT_SPEC = EVAL_SPEC
    ROLE_VARS = _role_vars.EVAL
    PHASE = 'eval'
    # whether the login probe runs beside the evaluation: nix_status, which
    # evaluates its host through this action, logs in with its own read
    # first and probes only a host that read did not reach (probe_after)
    probes = True
    # the probe's options as validated (_reach.OPTIONS), for probe_after
    reach_args = None

    def role_var_problems(self):
        """The deploy role's first phase (from_role_vars) checks every role
        variable of the table, whichever phase reads it, and the ``nix_*``
        variables no role knows, before anything is evaluated: a bad
        nix_goal fails its host here, not after its build and copy
        (module_utils/_role_vars.py ``variable_problems``). Each other phase
        checks the variables it reads itself (the action base)."""
        if not boolean(self._task.args.get(_role_vars.FLAG, False), strict=False):
            return super(ActionModule, self).role_var_problems()
        # each variable templated now, even one only a later phase reads: a
        # template that fails fails this host here, before anything of it
        # is evaluated (ansible-core would template it only when read)
        problems = _role_vars.variable_problems(self.task_vars, self._render,
                                                failure=self.template_failure)
        unknown = _role_vars.unknown_variables(self.task_vars)
        if unknown and self._task.args.get('unknown_vars') == 'error':
            problems.extend('%s (nix_unknown_vars is error)' % _role_vars.unknown_message(
                name, near) for name, near in sorted(unknown.items()))
        if not problems:
            problems = self._platform_problems()
        return problems

    def _platform_problems(self):
        """What the platform table says this host's activation cannot do,
        where the inventory gives its platform (nix_platform) and the run
        activates it: a goal its platform lacks (an activation that needs
        root run as another user is ``_root_problem``'s, after the probe).
        The activation says the same late (_activation_result.check_params,
        activate-session.sh); here it fails the host before anything of it
        is built."""
        platform = _role_vars.host_value('platform', self.task_vars)
        if platform is None or 'activate' not in _reach.login_phases(self.task_vars):
            return []
        try:
            platform = self._render(platform)
            goal = _platforms.goal_row(self._render(
                _role_vars.host_value('goal', self.task_vars) or 'switch'))
            _platforms.platform_spec(platform)
        except (AnsibleError, ValueError, TypeError):
            # a value the activation refuses in its own words
            return []
        problem = _platforms.goal_problem(platform, goal)
        if problem:
            return ['%s (nix_goal is %s for this host): give the host a goal of those in its '
                    'host_vars or group_vars, or limit the run (-l) to the hosts that have '
                    'it' % (problem, goal.name)]
        return []

    def _system_profile(self):
        """The system profile of the host's platform, where the inventory
        gives the platform and the table a fixed path (not home-manager's,
        which depends on the activating user): the probe reads its
        generation; else None."""
        platform = _role_vars.host_value('platform', self.task_vars)
        if platform is None:
            return None
        try:
            return _platforms.platform_spec(self._render(platform)).get('profile')
        except (AnsibleError, ValueError, TypeError):
            return None

    def _root_problem(self):
        """An activation that needs root, run as another user (no become),
        where the inventory gives the platform and the run activates: judged
        after the login probe, whose word on a user that cannot log in at
        all comes first (become would not help that one)."""
        platform = _role_vars.host_value('platform', self.task_vars)
        if platform is None or 'activate' not in _reach.login_phases(self.task_vars):
            return None
        user = self._activation_user()
        try:
            platform = self._render(platform)
            problem = _platforms.root_refusal(platform, user) if user else None
        except (AnsibleError, ValueError, TypeError):
            return None
        if problem:
            return '%s (its ansible_user is %s and ansible_become is not set; nix_platform ' \
                'is %s)' % (problem, user, platform)
        return None

    def _activation_user(self):
        """Who this host's activation runs as without become: the login
        user (ansible_user); None with become (the activation's become says
        whether its user can, sudo's words kept) and where the inventory
        does not say (ssh's own configuration chooses then)."""
        context = self._play_context
        if getattr(context, 'become', False):
            return None
        user = None
        if self._connection is not None:
            try:
                user = self._connection.get_option('remote_user')
            except KeyError:
                user = None
        return user or getattr(context, 'remote_user', None) or None

    def failed(self, result, message, **details):
        # an internal error's traceback (a batch process's): only at -vvv
        trace = details.pop('traceback', None)
        if trace:
            details.update(verbose_traceback(trace))
        # the batch's figures are the run's internals: a person reading the
        # failure sees its message, not them (the callbacks read them back
        # through _outcome.result_data)
        _outcome.details_apart(result, INTERNALS)
        return super(ActionModule, self).failed(result, message, **details)

    def host_result(self, args, result):
        # the batch before this one failed too many hosts: nothing of this
        # batch starts (the role ends the play on ``stopped``)
        judged = self._serial_gate(args.get('max_fail_percentage'))
        result['batch'] = judged['batch']
        result['play_hosts'] = len(self.task_vars.get('ansible_play_hosts_all') or ()) or 1
        if judged['stop']:
            result.update(stopped=True, msg=u'nixdeploy: %s' % judged['stop'])
            return result
        self.reach_args = dict((key, args.get(key)) for key in _reach.OPTIONS)
        # the login probe runs while the batch is evaluated: a host that is
        # off costs its evaluation, never a build or a copy
        probe = self._start_probe() if self.probes else None
        activates = args.pop('activates')
        result = self._evaluate(dict((k, v) for k, v in args.items()
                                     if k not in _reach.OPTIONS), result)
        result = _reach.finish(self, self._connection, probe, args, result)
        problem = None if result.get('failed') or result.get('unreachable') or not activates \
            else (boolean(self._task.args.get(_role_vars.FLAG, False), strict=False)
                  and self._root_problem())
        if problem:
            result.pop('ansible_facts', None)
            result = self.failed(result, problem)
        return self._unreached_apart(result)

    def probe_after(self, result):
        """``result`` (this host's evaluation, failed or not) as the login
        probe makes it, run now; None when there is no probe to run (none
        asked, or the host failed before its options were read). For
        nix_status, whose read, the host's first login, got no answer: the
        probe tries each of the host's addresses (nix_target_hosts) and says
        an off host as a deploy does; at an address it reaches, the host's
        later programs go there."""
        probe = self._start_probe() if self.reach_args is not None else None
        if probe is None:
            return None
        return self._unreached_apart(_reach.finish(self, self._connection, probe,
                                                   self.reach_args, result))

    def _start_probe(self):
        return _reach.start(self._connection, self.task_vars, self.reach_args,
                            self._builds_on_target, self._system_profile())

    @staticmethod
    def _unreached_apart(result):
        if result.get('unreachable'):
            # read by people as a failure is: the batch's figures apart
            _outcome.details_apart(result, INTERNALS)
        return result

    def _builds_on_target(self):
        """Whether the deploy role's build of this host runs on the host
        itself (its nix_build_on is ``target``): then the build logs in to
        it. False outside the role (a task of the user's own says nothing of
        its build) and for a value the build phase refuses (it says why)."""
        if not boolean(self._task.args.get(_role_vars.FLAG, False), strict=False):
            return False
        value = _role_vars.host_value('build_on', self.task_vars)
        try:
            return parse_build_on(self._render(value)) == TARGET
        except (AnsibleError, NixdeployError):
            return False

    def _serial_gate(self, max_fail_percentage):
        """This play batch's number and whether it may start
        (plugin_utils/task/_serial.py); judged once per batch by its
        server, which puts the verdict to each host."""
        # one file per play (its first task) lists the batches so far
        record = os.path.join(batch_folder(C.DEFAULT_LOCAL_TMP),
                              _run_files.SERIAL_RECORD % short_digest(task_uuid(self._task)))
        active = self.task_vars.get('ansible_play_hosts')
        hosts = task_batch(C.DEFAULT_LOCAL_TMP, play_uuid(self._task), self.task_vars)

        def context():
            # the first host's (the play's active hosts: no copy in every worker)
            return {'record': record, 'batch': hosts.data(), 'active': list(active or ()),
                    'max_fail_percentage': max_fail_percentage}

        # the server reads and writes one small file; a retry judges again
        # (its batch is recorded: it reads that file)
        return self.batch_answer(BatchWork(
            'serial', [max_fail_percentage], None, JUDGE, context=context,
            foresee=dict.fromkeys, answer_wait=SERIAL_ANSWER_WAIT)).entry

    def _evaluate(self, args, result):
        try:
            host_entry, here, hosts, request = _stage.batch_entry(
                self, args, NixOptions.from_params(args))
        except BatchError as exc:
            return self.failed(result, u'the evaluation of the batch failed: %s' % exc,
                               traceback=exc.traceback)
        evaluated = host_entry.get('answer') or {}
        self._say_evaluation(result, host_entry, request, len(hosts), here)
        sources = RunSources(batch_folder(C.DEFAULT_LOCAL_TMP))
        warnings = self._warnings_once(host_entry, sources)
        if warnings:
            result['warnings'] = warnings
        if 'error' in host_entry or 'error' in evaluated:
            message = host_entry.get('error') or evaluated['error']
            if 'error' not in host_entry:
                message = self._with_hint(message, args, request, evaluated,
                                          host_entry.get('source'), sources)
            return self.failed(result, message,
                               traceback=host_entry.get('traceback') or evaluated.get('traceback'))
        result.update({
            'drv_path': evaluated['drv_path'],
            'out_path': evaluated['out_path'],
            'system': evaluated['system'],
            'ansible_facts': _stage.facts_of(evaluated),
        })
        return result

    @staticmethod
    def _say_evaluation(result, host_entry, request, batch_hosts, here):
        """What was evaluated for this host and how, in ``result``."""
        batch = host_entry.get('batch')
        result.update({
            # shown in the report: a credential in the reference is masked
            'flake': _redact.url(request['flake']),
            'attr': request['attr_string'],
            'platform': request['platform'],
            'batch_hosts': batch_hosts,
            # this host's answer completed the batch: it carries its figures
            'evaluated_here': batch is not None,
            'started_here': here,
            'from_cache': bool(host_entry.get('from_cache')),
            # evaluated, cached (this content's answer) or reused (another
            # content's, whose recorded reads all still hold: reuse/_reuse)
            'answered': host_entry.get('evaluation') or (
                'cached' if host_entry.get('from_cache') else 'evaluated'),
        })
        if host_entry.get('reused'):
            result['reused'] = host_entry['reused']
        if batch is not None:
            result['nix_processes'] = batch['processes']
            result['evaluation'] = batch
        if host_entry.get('source'):
            # what was evaluated, from the run's own pin (flake/_source)
            result['source'] = host_entry['source']

    @staticmethod
    def _warnings_once(host_entry, sources):
        """The batch's notes for this host that no host said before in the run."""
        warnings = [note for note in host_entry.get('notes') or ()
                    if sources.warn_once(short_digest(note))]
        # an unknown nix_* variable: said once a run, whichever batch and
        # host reads it first (the batch's process listed its hosts)
        warnings.extend(note for name, note in sorted((host_entry.get('unknown_vars') or {}).items())
                        if sources.warn_once(short_digest('unknown-var', name)))
        return warnings

    def _with_hint(self, message, args, request, evaluated, source, sources):
        """A failed evaluation's ``message`` with its fix, when there is one."""
        # the fix, last: the summary's one line keeps the first and
        # the last line of a message (common/_cause.py)
        try:
            hint = self._hint(args, request, evaluated, source, sources)
        except (OSError, ValueError, NixError):
            # a hint is extra: Nix's message stands without it
            hint = None
        if hint:
            message = u'%s\n%s' % (message, hint)
        return message

    def _hint(self, args, request, evaluated, source, sources):
        """The fix for a failed evaluation whose cause is certain, or None:
        a file the flake imports that git does not track, or a configuration
        name its set lacks, with the names nearest to it
        (plugin_utils/nix/_nix_hints.py)."""
        said = evaluated.get('nix_message') or evaluated.get('error') or ''
        hint = _nix_hints.untracked_file(said, request['flake'])
        if hint:
            return hint
        missing = _nix_hints.missing_attribute(said, request['attr'])
        ref = pinned_ref(source)
        if missing is None or ref is None:
            return None
        prefix, name = missing
        opts = NixOptions.from_params(args)
        # one Nix call on this error only, bounded in time, on the content
        # the evaluation read; the run asks it once per flake and set,
        # whichever host asks first
        timeout = min(_nix_hints.NAMES_TIMEOUT,
                      args.get('eval_timeout') or _nix_hints.NAMES_TIMEOUT)
        runner = NixCommand(NixOptions(nix_bin=opts.nix_bin,
                                       options=evaluation_options(opts.options)), timeout)
        names = sources.once(
            short_digest('attribute-names', ref, prefix, opts.nix_bin, opts.options),
            lambda: _nix_hints.attribute_names(runner, ref, prefix))
        return _nix_hints.nearest_names(prefix, name, names or ())


def pinned_ref(source):
    """The reference the run pinned and evaluated (a commit or a store
    snapshot: what the failed evaluation read), from a host's ``source``;
    None when the flake was not pinned, its pin reads a lock graph of the
    run's own, or the shown reference had a credential masked."""
    source = source or {}
    ref = source.get('evaluated')
    if not source.get('pinned') or not isinstance(ref, str) or source.get('lock'):
        return None
    if _redact.MASK in ref:
        return None
    return ref
