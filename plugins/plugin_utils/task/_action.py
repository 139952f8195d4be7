# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one base of the collection's action plugins (controller only).

What every nixdeploy action does the same way lives here:

- the arguments are validated against the task's ``ARGUMENT_SPEC``; before
  that, the options a task leaves unset are filled from the host's variables
  as the option table says (module_utils/_role_vars.py: every role variable
  with ``from_role_vars``, the inventory's always), which also tells which
  per-host options are each host's own (``self.filled``, for the batch);
  ``record_stats`` is checked with them; a bad argument is this host's
  failed result, not a traceback, and nothing has run yet; a bad value of
  an option taken from a role variable is said of the variable
  (``nix_goal: 'bot' is not one of ...``);
- a failure is a failed result whose ``msg`` starts with the host's name
  and that carries ``phase`` (the deploy phase, read by the summary callback,
  the report and the custom stat ``nixdeploy``) and ``connection_lost``;
- a lost connection (``AnsibleConnectionFailure``) is such a failed result
  with ``connection_lost: true``, never an unreachable host: Ansible runs no
  ``rescue`` for an unreachable host, and the deploy role's rescue keeps a
  failed host's outcome (the custom stat ``nixdeploy``);
- ``record_stats``: a successful result carries the host's outcome so far
  as custom stats (plugin_utils/task/_stats.py);
- ``batch_answer``: work done once per play batch, answered per host, and
  ``batch_decline``: this host will not ask it this time
  (plugin_utils/task/_batch_work.py: the batch server);
- ``target``: the task's own host (plugin_utils/host/_host.py ``Host``, the
  one way the controller reaches it), whose ``sh`` runs a target program
  (target/*.sh, rendered by plugin_utils/host/_script.py) over the host's
  connection, with a time limit;
- host keys: before an action with ``HOST_KEYS`` does anything, and before
  any other runs its first target program, the host's connection is asked
  whether ssh checks the host's key (plugin_utils/host/_host_key_judge.py: Ansible's
  ``host_key_checking``, which ansible-runner turns off in the environment,
  and what ``ssh -G`` says of the ssh arguments and config files); a host
  whose key is not checked fails saying so and how to fix it, unless its
  ``nix_host_key_unchecked`` is true: then the task goes on, warns, and its
  result says ``host_key_unchecked: true``.

A ``NixdeployError`` (plugin_utils/common/_errors.py, the base of every
error the collection raises) or an ``OSError`` out of ``host_result`` is this
host's failed result, with what the error carries (``phase``,
``connection_lost``, the partial result) and ``failure_details``. Any other
exception but Ansible's own (a bug) is too, in one line (``internal error in
the eval phase: KeyError: ...; rerun with -vvv``), its traceback under
``traceback`` at -vvv only.

Subclasses set ``ARGUMENT_SPEC``, ``PHASE`` and ``HOST_KEYS`` (the action talks
to the host over ssh: its key is judged first) and implement ``host_result``.
"""

import traceback

from ansible import constants as C
from ansible.errors import AnsibleActionFail, AnsibleConnectionFailure, AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase
from ansible.utils.display import Display

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _role_vars
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import (
    NixdeployError, internal_error)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._ansible_core import (
    template_error)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _redact
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._printable import (
    printable, printable_lines)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _host_key_judge, _reached
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host import Host
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._diagnosis import (
    become_problem, ssh_problem)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix_hints
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_work import (
    Place, answer, decline)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._work_keys import new_run
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._forked import (
    freeze_inherited, in_forked_worker)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._stats import (
    phase_stats, record_problems, recorded_results, with_unreached)

# ssh's words for a host whose key does not match known_hosts
HOST_KEY_MARKERS = ('REMOTE HOST IDENTIFICATION HAS CHANGED', 'Host key verification failed')
# the option (and, without it, the host variable) that lets a host whose key
# ssh does not check be deployed all the same; the result key that says so
HOST_KEY_OPT_OUT = 'host_key_unchecked'
# what a refused host was spared, by phase
_NOT_DONE = {'copy': 'nothing was copied', 'activate': 'nothing was activated',
             'keys': 'no key was uploaded', 'build': 'nothing was built there'}


class HostKeyUnchecked(NixdeployError):
    """ssh would not check this host's key, and no opt-out says go on."""


def host_message(host, message):
    """``message`` starting with ``host: `` (once), any credential in a URL
    it shows masked (a flake reference, a cache URI, git's or Nix's words),
    then the host name and each line ``printable``: a message carries a
    flake's host name and what Nix or a target said, and reaches a terminal.
    Masking comes first (its patterns end at a raw ESC, Nix's colours); the
    lines stay lines (Nix's messages have several)."""
    name = printable(host)
    text = u'\n'.join(printable_lines(_redact.text(message_of(message)).split(u'\n')))
    return text if text.startswith(u'%s:' % name) else u'%s: %s' % (name, text)


def verbose_traceback(text=None):
    """``{'traceback': ...}`` (the current exception's, or ``text``) at -vvv,
    else nothing: a result's keys are printed at every verbosity."""
    if Display().verbosity < 3:
        return {}
    if text is None:
        text = traceback.format_exc()
    return {'traceback': text} if text else {}


def message_of(error):
    """The text of an error: Nix's own message for a NixError."""
    if isinstance(error, NixError):
        return u'%s' % error
    if isinstance(error, Exception):
        return to_text(getattr(error, 'message', None) or error)
    return to_text(error)


class NixdeployAction(ActionBase):
    """Validation, host-prefixed failures with ``phase`` and
    ``connection_lost``, and the per-batch computation."""

    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    ARGUMENT_SPEC = {}
    # the module's key in the option table (module_utils/_role_vars.py), if any
    ROLE_VARS = None
    # more validate_argument_spec keywords (required_if, mutually_exclusive)
    VALIDATION = {}
    PHASE = None
    # the action talks to the host over ssh: its key is judged before host_result
    HOST_KEYS = False

    host = None
    task_vars = None
    # the arguments as filled from the variables (_role_vars.Filled)
    filled = None
    # None until judged; then the problems of an unchecked host let through
    _unchecked = None
    _opt_out = None
    _target = None
    # the task takes its options from the deploy role's variables
    from_role_vars = False

    def run(self, tmp=None, task_vars=None):
        if in_forked_worker():
            # the worker's collections walk its own objects only (_forked)
            freeze_inherited()
        task_vars = task_vars or {}
        result = super(NixdeployAction, self).run(tmp, task_vars)
        del tmp
        self._begin(task_vars)
        checked = self._checked_args(result, task_vars)
        if 'failed' in checked:
            return checked
        args, record = checked['args'], checked['record']
        self._opt_out = args.get(HOST_KEY_OPT_OUT)
        result = self._host_result_or_failure(args, result)
        if self._unchecked:
            result[HOST_KEY_OPT_OUT] = True
            result.setdefault('warnings', []).append(_host_key_judge.unchecked_warning(
                self.host, self._unchecked))
        if result.get('failed'):
            self._mark_failed(result)
        elif record is not None:
            self._keep_stats(record, result)
        return result

    def _begin(self, task_vars):
        """The task's host, its run of the batch's work, and the address the
        run's probe reached it at."""
        self.task_vars = task_vars
        self.host = task_vars.get('inventory_hostname') or self._task.get_name()
        # a retry (until, retries) runs this again in the same worker: the
        # batch's work it asks for again is computed again (_work_keys)
        new_run(self.host, task_vars)
        # the address the run's probe found, when it is not ansible_host
        # (one of nix_target_hosts): every program of this task goes there
        reached, alias = _reached.reached_as(C.DEFAULT_LOCAL_TMP, self.host)
        if reached and self._connection is not None:
            _reached.use_reached(self._connection, reached, alias)

    def _checked_args(self, result, task_vars):
        """{'args': the module's arguments, checked, 'record': its
        record_stats or None}, or the failed ``result`` of a bad role
        variable or argument: nothing has run yet."""
        self.from_role_vars = boolean(self._task.args.get(_role_vars.FLAG, False), strict=False)
        if self.ROLE_VARS:
            # before validation: a variable is checked as the argument would be
            self.filled = _role_vars.fill(
                self.ROLE_VARS, self._task.args, task_vars, self._render, self.from_role_vars)
            self._task.args = self.filled.args
            if self.filled.deprecations:
                result['deprecations'] = list(self.filled.deprecations)
            # a bad role variable is named as the user wrote it (nix_goal),
            # not as the module's option (goal)
            problems = self.role_var_problems()
            if problems:
                return self.failed(result, '; '.join(problems))
        try:
            _validation, args = self.validate_argument_spec(
                argument_spec=self.ARGUMENT_SPEC, **self.VALIDATION)
        except AnsibleActionFail as exc:
            text = to_text(exc.message)
            if self.filled is not None:
                # an option the role's variable gave is named as that variable
                text = _role_vars.as_variables(text, self.filled.sources)
            return self.failed(result, text)
        args.pop(_role_vars.FLAG, None)
        # an option given by a deprecated name: only its new name goes on
        for alias in _role_vars.aliases(self.ROLE_VARS):
            args.pop(alias, None)
        result['changed'] = False
        # record_stats (nix_build, nix_copy_closure, nix_activate) is about
        # the result, never the work: taken out here, it reaches no batch key
        # (it differs per host) and no host_result; checked now, so that a bad
        # one never fails a host whose phase did its work
        record = args.pop('record_stats', None)
        if record is not None:
            problems = record_problems(record, self.PHASE, task_vars)
            if problems:
                return self.failed(result, '; '.join(problems))
        return {'args': args, 'record': record}

    def _host_result_or_failure(self, args, result):
        """The phase's ``host_result``, after the host's key is judged; what
        it raises becomes this host's failed result, in one line that names
        the cause and the way out."""
        try:
            if self.HOST_KEYS:
                self.judge_host_keys()
            return self.host_result(args, result)
        except HostKeyUnchecked as exc:
            return self.failed(result, to_text(exc), connection_lost=False)
        except AnsibleConnectionFailure as exc:
            text = to_text(exc)
            if any(marker in text for marker in HOST_KEY_MARKERS):
                # the host answered, with another key: refused, not lost
                return self.failed(result, '%s: %s' % (ssh_problem(text), text),
                                   connection_lost=False)
            return self.failed(result, 'connection lost: %s' % text, connection_lost=True)
        except AnsibleError as exc:
            # Ansible's own become refusals ("Missing sudo password") end the
            # task at once; said here with the host, the phase and the way out
            problem = become_problem(to_text(exc))
            if not problem:
                raise
            return self.failed(result, problem)
        except (NixdeployError, OSError) as exc:
            # what the error itself carries wins over what the action reads of it
            details = self.failure_details(exc)
            if isinstance(exc, NixdeployError):
                details.update(exc.details())
            return self.failed(result, exc, **details)
        except Exception as exc:  # pylint: disable=broad-except
            # a bug of the collection: still this host's failed result with
            # its phase (the summary and the report say it), in one line;
            # the traceback only at -vvv
            return self.failed(result, internal_error('the %s phase' % (self.PHASE or 'task'), exc),
                               **verbose_traceback())

    def judge_host_keys(self):
        """Ask the connection whether ssh checks this host's key (once per
        task); raise HostKeyUnchecked when it does not and the host has no
        opt-out (the option, or the host variable nix_host_key_unchecked).

        The one place that reads the opt-out: the judgement is kept on the
        connection, where the task's Host reads it, and before the first
        program the connection is pointed at an ssh master of that judgement,
        so a master opened unchecked earlier in the job is never ridden
        (plugin_utils/host/_host_key_judge.py ``judged``)."""
        if self._unchecked is not None:
            return
        problems = _host_key_judge.connection_problems(self._connection) or []
        self._unchecked = []
        if problems:
            opt_out = self._opt_out
            if opt_out is None:
                opt_out = _role_vars.host_value(HOST_KEY_OPT_OUT, self.task_vars)
                opt_out = self._render(opt_out) if opt_out is not None else False
            if not boolean(opt_out, strict=False):
                raise HostKeyUnchecked(_host_key_judge.refusal(self.host, problems, _NOT_DONE.get(
                    self.PHASE, 'nothing was done on it')))
            self._unchecked = problems
        _host_key_judge.judged(self._connection, problems)

    def _keep_stats(self, earlier, result):
        """``record_stats`` (nix_build, nix_copy_closure, nix_activate): the
        host's outcome so far as the custom stats a set_stats task of the
        deploy role would keep, in this successful result (Ansible reads
        ``ansible_stats`` from successful results only; the role's rescue
        keeps a failed host's), which saves the role one task per host.
        ``earlier`` was checked with the arguments; a record that cannot be
        made even so is a warning, never this host's failure after its
        phase's work (an activation)."""
        earlier, job_id = recorded_results(earlier, self.task_vars)
        try:
            result['ansible_stats'] = with_unreached(
                phase_stats(earlier, self.PHASE, result, self.host, self.check_mode, job_id),
                self.check_mode, job_id)
        except Exception as exc:  # pylint: disable=broad-except
            result.setdefault('warnings', []).append(
                '%s: record_stats: the outcome is not kept as custom stats: %s'
                % (self.host, message_of(exc)))

    def role_var_problems(self):
        """What is wrong with the role variables this task took its options
        from (messages naming each variable; [] when all is well). nix_eval,
        the role's first phase, checks every variable of the table here."""
        return _role_vars.filled_problems(self.ROLE_VARS, self.filled)

    def _render(self, value):
        """A variable's value as a task argument gets it: templated (the
        templar is looked up only when a variable fills an option)."""
        return self._templar.template(value)

    @staticmethod
    def template_failure(error, value):
        """For the check of every role variable before evaluation
        (``_role_vars.variable_problems``): (ansible-core's words, the
        origins) of ``error``, raised by templating the variable ``value``;
        None (left to the phase that reads it) for an error that is no
        template's, or a template that needs only what the role defines
        later."""
        if not isinstance(error, AnsibleError):
            return None
        text, origins = template_error(error, value)
        return None if _role_vars.set_later(text) else (text, origins)

    def host_result(self, args, result):
        """This host's result (``args``: the validated arguments;
        ``result``: Ansible's, ``changed`` false until said otherwise)."""
        raise NotImplementedError

    def failure_details(self, error):
        """Extra keys of the failed result for ``error`` (a NixdeployError
        or an OSError), beyond those the error carries."""
        return {}

    # ------------------------------------------------------------ results
    def failed(self, result, message, **details):
        """``result`` as this host's failure: ``msg`` names the host."""
        result.update(details)
        result['failed'] = True
        result['changed'] = False
        # Nix's pointer to --show-trace, in every phase, as the setting the
        # user has (the role's variable or the task's option)
        result['msg'] = host_message(self.host, _nix_hints.trace_hint(
            message_of(message), self.from_role_vars))
        return self._mark_failed(result)

    def _mark_failed(self, result):
        result.setdefault('changed', False)
        if self.PHASE:
            result.setdefault('phase', self.PHASE)
        result.setdefault('connection_lost', False)
        return result

    @property
    def target(self):
        """The task's own host (``Host.of_task``), made once: its programs
        run over this task's connection, the host's key judged before the
        first one (judge_host_keys)."""
        if self._target is None:
            self._target = Host.of_task(self._connection, self.task_vars,
                                        self._low_level_execute_command, self.judge_host_keys)
        return self._target

    @property
    def check_mode(self):
        return bool(self._play_context.check_mode)

    # ------------------------------------------------------------ batch
    def place(self):
        """This host, its task and its variables: where a phase asks for
        its batch's work (``_batch_work.answer``)."""
        return Place(self.host, self._task, self.task_vars)

    def batch_answer(self, work):
        """This host's part of ``work`` (a ``_batch_work.BatchWork``), done
        once for its play batch: the one entry point of every phase's batch
        work (plugin_utils/task/_batch_work.py says how)."""
        return answer(self.place(), work)

    def batch_decline(self, work):
        """This host will not ask ``work`` this time: no wave waits for it."""
        decline(self.place(), work)
