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
"""

from ansible.errors import AnsibleConnectionFailure

from ansible_collections.nixdeploy.fleet.plugins.module_utils._specs import STATUS_SPEC
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._activation_task import (
    script_error)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._programs import (
    status_script)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import NixdeployError
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host import NoAnswer
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._program_fields import (
    dropped_warning)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._store import is_store_path
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import options_of
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.status import (
    _status_class, _status_closure, _status_look, _status_view)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._action import (
    HOST_KEY_MARKERS, NixdeployAction, host_message)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_work import decline


class ActionModule(NixdeployAction):

    ARGUMENT_SPEC = STATUS_SPEC
    PHASE = 'status'
    HOST_KEYS = True
    # whether this host asked its batch for the closure difference
    _asked = False

    def host_result(self, args, result):
        self._asked = False
        try:
            if not is_store_path(args['desired']):
                return self.failed(result, 'desired must be a store path, got %r'
                                   % args['desired'])
            return self._status(args, result)
        finally:
            if not self._asked:
                # no wave of the batch's closure difference waits for this host
                decline(self.place(), self._closure_work(args, None))

    def _status(self, args, result):
        """Read the host, class it, keep its fact; fail it at the gate."""
        look = self._read(args, result)
        if look is None:
            return result
        name, reasons = _status_class.classify(look, args['desired'])
        change = self._closure_diff(args, look.current()) if args['closure_diff'] else None
        fact = _status_view.status_fact(look, args['platform'], args['desired'], name, reasons,
                                        closure_diff=change)
        result['status'] = fact
        if args['fail_unless_in_sync'] and name != _status_class.IN_SYNC:
            # the status stays in the result (the report, the role's fact)
            return self.failed(result, _status_view.gate_line(self.host, fact))
        result.update(ansible_facts={_status_view.FACT: fact},
                      msg=_status_view.line(self.host, fact))
        return result

    def _read(self, args, result):
        """The host's ``Look``, or None with ``result`` its unreachable or
        failed result."""
        script = status_script(args['platform'], args['profile'])
        try:
            rc, stdout, stderr = self.target.sh(script, sudoable=True, timeout=args['timeout'])
        except (NoAnswer, AnsibleConnectionFailure) as exc:
            if any(marker in str(exc) for marker in HOST_KEY_MARKERS):
                raise  # another key answered: refused, as every action says it
            # off, or gone since the evaluation's probe: Ansible's unreachable
            result.update(unreachable=True, msg=host_message(self.host, 'unreachable: %s' % exc))
            return None
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
