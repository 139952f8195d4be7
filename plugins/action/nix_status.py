# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of nixdeploy.fleet.nix_status.

One read-only program (plugin_utils/activation/target/status-read.sh) runs on
the host over the task's connection, with become when the task has it; its
values are read by its own marker (plugin_utils/host/_script.py), the host's
class worked out on the controller (plugin_utils/status/_status_class.py)
and kept as the fact ``nixdeploy_status`` (plugin_utils/status/_status_view.py).
The closure difference is read from the controller's store where it
holds both systems, once for the hosts of the play batch that drifted
(plugin_utils/status/_status_closure.py). A host that gives no answer is
Ansible's unreachable, as the deploy's login probe makes an off host; with
``fail_unless_in_sync`` a host read that is not in sync fails with one line
saying why and the way out, its status still in the result.

With ``from_role_vars`` and no ``desired``, the task evaluates its host
itself, through nix_eval's own action (``_evaluate``): the same batch, cache
and reuse across commits, the deploy role's variables checked as there. One
task a host instead of two: ansible-playbook forks a worker for each task
of each host, which is most of a status run's cost at fleet size. nix_eval's
login probe does not run beside it: the read is the host's first login, and
only a host the read does not reach is probed (each of its addresses, the
off host's words and ``nix_unreachable`` as in a deploy). nix_eval's result
for the host rides in this one's ``eval`` key, where the callbacks read it
as that task's (plugin_utils/status/_status_eval.py).
"""

from ansible.errors import AnsibleConnectionFailure

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _role_vars
from ansible_collections.nixdeploy.fleet.plugins.module_utils._specs import STATUS_SPEC
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._activation_task import (
    script_error)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._programs import (
    status_script)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._ansible_core import other_action
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host import NoAnswer
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._program_fields import (
    dropped_warning)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._store import is_store_path
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import options_of
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.status import (
    _status_class, _status_closure, _status_eval, _status_look, _status_view)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._action import (
    HOST_KEY_MARKERS, NixdeployAction, host_message)


class ActionModule(NixdeployAction):

    ARGUMENT_SPEC = STATUS_SPEC
    PHASE = 'status'
    HOST_KEYS = True
    # whether this host asked its batch for the closure difference
    _asked = False

    def host_result(self, args, result):
        self._asked = False
        try:
            if args['desired'] is None and not self.from_role_vars:
                return self.failed(result, 'desired is required unless from_role_vars is true '
                                   '(then the host is evaluated as nix_eval does)')
            if args['desired'] is not None and not is_store_path(args['desired']):
                return self.failed(result, 'desired must be a store path, got %r'
                                   % args['desired'])
            return self._status(args, result)
        finally:
            if not self._asked:
                # no wave of the batch's closure difference waits for this host
                self.batch_decline(self._closure_work(args, None))

    def _status(self, args, result):
        """Evaluate the host where asked, read it, class it, keep its fact;
        fail it at the gate."""
        evaluation = self._evaluate() if args['desired'] is None else None
        if evaluation is not None and evaluation.result.get('stopped'):
            # its serial batch does not start: nothing is read
            return evaluation.as_result(result)
        look = self._read(args, result, evaluation)
        if evaluation is not None and evaluation.failed() and not result.get('unreachable'):
            # the host answered (or failed at its read): its evaluation's
            # failure comes first, in nix_eval's words
            return evaluation.as_result(result)
        if look is None:
            return result
        if evaluation is not None:
            args['desired'] = evaluation.result['out_path']
            evaluation.keep_in(result)
        name, reasons = _status_class.classify(look, args['desired'])
        change = self._closure_diff(args, look.current()) if args['closure_diff'] else None
        fact = _status_view.status_fact(look, args['platform'], args['desired'], name, reasons,
                                        closure_diff=change)
        result['status'] = fact
        if args['fail_unless_in_sync'] and name != _status_class.IN_SYNC:
            # the status stays in the result (the report, the role's fact)
            return self.failed(result, _status_view.gate_line(self.host, fact))
        result.setdefault('ansible_facts', {})[_status_view.FACT] = fact
        result['msg'] = _status_view.line(self.host, fact)
        return result

    def _evaluate(self):
        """This host's evaluation, by nix_eval's own action on a copy of
        this task (as ansible.builtin.template runs copy's): the batch's
        work is named by the task, so every host of the batch shares one
        evaluation, and nix_eval's checks, messages and hints stay in its
        one class. A ``_status_eval.Evaluation``."""
        task = self._task.copy()
        task.args = {_role_vars.FLAG: True, 'activates': False}
        action = other_action(self, 'nixdeploy.fleet.nix_eval', task)
        # the read below is the host's first login, not a probe beside it
        action.probes = False
        return _status_eval.Evaluation(action, action.run(task_vars=self.task_vars))

    def _read(self, args, result, evaluation=None):
        """The host's ``Look``, or None with ``result`` its unreachable or
        failed result. A host that gives no answer is probed when it was
        evaluated here (``evaluation``): read again at the address the probe
        reaches, else unreachable as a deploy says it."""
        script = status_script(args['platform'], args['profile'])
        try:
            rc, stdout, stderr = self.target.sh(script, sudoable=True, timeout=args['timeout'])
        except (NoAnswer, AnsibleConnectionFailure) as exc:
            if any(marker in str(exc) for marker in HOST_KEY_MARKERS):
                raise  # another key answered: refused, as every action says it
            probed = evaluation.probe() if evaluation is not None else None
            if probed is None:
                # off, or gone since its evaluation: Ansible's unreachable
                result.update(unreachable=True,
                              msg=host_message(self.host, 'unreachable: %s' % exc))
                return None
            if not probed.get('address'):
                # reached at none of its addresses, or refused there
                evaluation.as_result(result)
                return None
            # reached (at another address, or back): read there, once
            return self._read(args, result)
        out = {'rc': rc, 'stdout': script.output(stdout), 'stderr': stderr}
        values, _log = script.parse(out['stdout'])
        dropped = dropped_warning(self.host, values.dropped)
        if dropped:
            result.setdefault('warnings', []).append(dropped)
        if rc != 0 or 'error' in values:
            self.failed(result, 'could not read the host: %s' % script_error(out, values))
            return None
        return _status_look.Look.of(args['platform'], values)

    def _closure_work(self, args, request):
        return _status_closure.closure_work(options_of(args), request, timeout=args['timeout'])

    def _closure_diff(self, args, current):
        """The host's closure difference: known here when it runs the
        desired system (or none), else its play batch's answer (one Nix
        query for every host that drifted)."""
        change = _status_closure.own_answer(current, args['desired'])
        if change is not _status_closure.ASK:
            return change
        self._asked = True
        try:
            entry = self.batch_answer(self._closure_work(
                args, {'current': current, 'desired': args['desired']})).entry
        except NixdeployError:
            # a difference is a help to read, never a reason to fail a read
            return None
        return (entry or {}).get('closure_diff')
