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
holds both systems (plugin_utils/status/_status_closure.py). A host that
gives no answer is Ansible's unreachable, as the deploy's login probe makes
an off host.
"""

from ansible.errors import AnsibleConnectionFailure

from ansible_collections.nixdeploy.fleet.plugins.module_utils._specs import STATUS_SPEC
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._activation_task import (
    script_error)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.activation._programs import (
    status_script)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host import NoAnswer
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._program_fields import (
    dropped_warning)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._store import is_store_path
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixOptions
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.status import (
    _status_class, _status_closure, _status_look, _status_view)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._action import (
    HOST_KEY_MARKERS, NixdeployAction, host_message)


class ActionModule(NixdeployAction):

    ARGUMENT_SPEC = STATUS_SPEC
    PHASE = 'status'
    HOST_KEYS = True

    def host_result(self, args, result):
        if not is_store_path(args['desired']):
            return self.failed(result, 'desired must be a store path, got %r' % args['desired'])
        script = status_script(args['platform'], args['profile'])
        try:
            rc, stdout, stderr = self.target.sh(script, sudoable=True, timeout=args['timeout'])
        except (NoAnswer, AnsibleConnectionFailure) as exc:
            if any(marker in str(exc) for marker in HOST_KEY_MARKERS):
                raise  # another key answered: refused, as every action says it
            # off, or gone since the evaluation's probe: Ansible's unreachable
            result.update(unreachable=True, msg=host_message(self.host, 'unreachable: %s' % exc))
            return result
        out = {'rc': rc, 'stdout': script.output(stdout), 'stderr': stderr}
        values, _log = script.parse(out['stdout'])
        dropped = dropped_warning(self.host, values.dropped)
        if dropped:
            result.setdefault('warnings', []).append(dropped)
        if rc != 0 or 'error' in values:
            return self.failed(result, 'could not read the host: %s' % script_error(out, values))
        look = _status_look.Look.of(args['platform'], values)
        name, reasons = _status_class.classify(look, args['desired'])
        change = None
        if args['closure_diff']:
            change = _status_closure.closure_change(
                NixOptions.from_params(args), look.current(), args['desired'],
                timeout=args['timeout'])
        fact = _status_view.status_fact(look, args['platform'], args['desired'], name, reasons,
                                        closure_diff=change)
        result.update(status=fact, ansible_facts={_status_view.FACT: fact},
                      msg=_status_view.line(self.host, fact))
        return result
