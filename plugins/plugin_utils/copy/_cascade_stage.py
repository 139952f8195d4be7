# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One host's part of a cascade copy (nix_copy_closure in a batch-wide copy
mode: module_utils/_copy_modes.py, copy_mode=cascade).

The first host of the play batch to get here runs the whole batch's cascade
(_peer.py, planned by _cascade.py) under the batch lock; every host then
answers for itself from the shared result. A host the cascade did not cover
is pushed to from the controller by its CopyStage (_copy_stage.py), whose
task this is.
"""

import dataclasses
import typing

from ansible import constants as C

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _role_vars
from ansible_collections.nixdeploy.fleet.plugins.module_utils._copy_modes import mode_row
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.builds import _builders
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.copy import (
    _cascade, _cascade_peer, _peer)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _host_key_judge, _reached
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host import (
    CONNECTION_VARS, AddressError, Host)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._store import (
    StorePathError, store_path_of)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._action import host_message
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch import (
    LockWaitTimeout, facts_in_flight, play_batch, vars_of, with_facts)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_work import BatchWork

# The options that may differ per host in cascade mode (the option table's
# per-host rows of nix_copy_closure: module_utils/_role_vars.py)
PER_HOST = _role_vars.per_host(_role_vars.COPY)
# Connection vars of another host, and the Host field each one fills
# (plugin_utils/host/_host.py's one list, but the address); a field no host
# var sets comes from this task's own connection (ansible.cfg, play
# keywords), as Ansible would use it for that host too.
_CONNECTION_VARS = tuple(row for row in CONNECTION_VARS if row[0] != 'address')
_SSH_CONNECTIONS = ('ssh', 'paramiko', 'paramiko_ssh')
# Seconds a host waits for the batch's cascade while another host of the
# batch runs it (the batch lock): the cascade's own bound
# (_peer.CASCADE_TIMEOUT) and ten minutes for the work around it (each
# host's arguments and ssh -G, one file a host). Past it the host gets the
# controller's push, as a host the cascade left out does.
CASCADE_LOCK_WAIT = _peer.CASCADE_TIMEOUT + 600


class CascadeStage:
    """The cascade part of ``stage`` (the task's CopyStage: its host,
    arguments, connection, options, batch, and its push for a host the
    cascade did not cover)."""

    def __init__(self, stage):
        self.stage = stage

    def run(self):
        """This host's part of the batch's cascade (computed by the first host
        of the batch to get here); a host the cascade did not cover (its
        arguments templated differently, its system not yet built when the
        cascade ran) is pushed to from the controller, as in push mode."""
        stage = self.stage
        args, host = stage.args, stage.host
        shared = stage.filled.shared(args)
        request = CascadeRequest.for_host(args)

        def compute(hosts):
            return {'hosts': self._run_cascade(hosts)}

        try:
            host_entry = stage.batch_answer(BatchWork(
                'copy', [dict((k, v) for k, v in args.items() if k not in PER_HOST),
                         [shared.get(k) for k in PER_HOST], bool(stage.diff)],
                request.data(), compute, lock_wait=CASCADE_LOCK_WAIT)).entry
        except LockWaitTimeout as exc:
            # the host running it is stuck past the cascade's own bound
            stage.warnings.append(
                '%s: waited %ss for the play batch\'s cascade (one host of the batch runs it '
                'for all, under the batch\'s lock) and got the controller\'s push instead; '
                'if this repeats, look for the host whose copy task did not end, or use '
                'copy_mode push' % (host, exc.seconds))
            host_entry = None
        if host_entry is None:
            out = stage.copy()
            out.update(copied_from='controller' if out['paths_sent'] else None,
                       sent_to=[], hop_errors=[])
            return out
        # the driver's result, in this task's mode
        out = dict(host_entry.get('result') or {}, mode=args['copy_mode'])
        missing = out.pop('missing', None)
        if host_entry.get('error'):
            # a cascade hop's error carries the target's words: through the one message rule
            out.update(failed=True, msg=host_message(host, host_entry['error']), phase='copy',
                       connection_lost=bool(host_entry.get('connection_lost')))
            return out
        if out.get('hop_errors'):
            out['warnings'] = (out.get('warnings') or []) + [
                '%s: cascade hop %s; got the closure from %s instead'
                % (host, err, out.get('copied_from')) for err in out['hop_errors']]
        if stage.diff and missing:
            out['diff'] = {'before': '', 'after': ''.join(p + '\n' for p in missing),
                           'after_header': '%s: paths to copy' % host}
        return out

    def _run_cascade(self, hosts):
        """{host: entry} for the batch: every host copying its system in
        cascade mode, whose system the controller holds."""
        stage = self.stage
        args, task_vars = stage.args, stage.task_vars
        this_host = task_vars.get('inventory_hostname')
        # raises for a non-ssh connection: this host's task fails saying so
        this_target = stage.target.require_ssh()
        peers, requests = [], {}
        in_flight = facts_in_flight(C.DEFAULT_LOCAL_TMP, hosts)
        # a host that failed before this task (its evaluation, its build)
        # is in no hop: its store gets nothing of the batch's
        active = set(play_batch(task_vars))
        # with the login probe on (this host was probed), a host the probe
        # has not reached yet is left to its own task, which pushes: its
        # address may be another of its nix_target_hosts, or none
        probed = _reached.reached(C.DEFAULT_LOCAL_TMP, this_host) is not None
        for name in hosts:
            if name != this_host and name not in active:
                continue
            if probed and name != this_host and _reached.reached(C.DEFAULT_LOCAL_TMP, name) is None:
                continue
            hostvars = with_facts(vars_of(task_vars, name), in_flight.get(name))
            request = _peer_request(stage.filled.for_host(args, _role_vars.COPY, hostvars),
                                    hostvars)
            if request is None:
                continue
            try:
                target = this_target if name == this_host else self._target_of(
                    name, hostvars, this_target)
            except AddressError:
                continue  # its own task reports the bad connection vars
            # a hop only to a host whose key is checked: any other is refused by
            # its own task, or (its opt-out) gets a push from it
            checked = not stage.unchecked if name == this_host else _host_key_judge.peer_checked(
                stage.connection, hostvars, target)
            if not checked:
                continue
            requests[name] = request
            peers.append(_cascade_peer.Peer(
                name, target, request.path, site=_cascade.site_of(hostvars, name),
                peer_host=hostvars.get('nix_peer_host') or None,
                remote_nix_dir=request.remote_nix_dir))
        driver = _peer.CascadeDriver(stage.opts, peers, stage.settings)
        entries = driver.run()
        for name, host_entry in entries.items():
            host_entry['request'] = requests[name].data()
            if stage.diff:
                host_entry['result']['missing'] = [p['path'] for p in driver.by_name[name].missing]
        return entries

    def _target_of(self, name, hostvars, own_target):
        target = Host.from_hostvars(hostvars, templar=None, name=name)
        for field, names in _CONNECTION_VARS:
            if not any(hostvars.get(n) not in (None, '') for n in names) and not any(
                    self.stage.task_vars.get(n) not in (None, '') for n in names):
                setattr(target, field, getattr(own_target, field))
        return target


def _peer_request(args, hostvars):
    """The ``CascadeRequest`` the host's own task would make (``args``: the
    host's, as _role_vars.Filled.for_host makes them), or None when it is
    not a cascade copy of a system the batch knows."""
    try:
        batch_wide = mode_row(args['copy_mode']).batch_wide
    except ValueError:
        batch_wide = False  # its own task refuses the mode
    connection = str(hostvars.get('ansible_connection') or 'ssh').rsplit('.', 1)[-1]
    try:
        on_target = _builders.parse_build_on(
            _role_vars.host_value('build_on', hostvars)) == 'target'
    except _builders.BuildOnError:
        on_target = False  # its build task fails saying why
    if not batch_wide or on_target or connection not in _SSH_CONNECTIONS:
        return None
    try:
        return CascadeRequest.for_host(args)
    except StorePathError:
        return None


@dataclasses.dataclass(frozen=True)
class CascadeRequest:
    """What one host asks the batch's cascade, built by ``for_host``;
    ``data()`` is the form in the batch file (the entry's ``request``,
    compared with ``!=`` to this host's own by ``_batch_work.answer``).

    ``path``: the system's store path (its top folder in the store, checked);
    ``mode``: the copy mode (a batch-wide row of module_utils/_copy_modes.py);
    ``remote_nix_dir``: the folder of the target's Nix, None for its PATH."""

    path: str
    mode: str
    remote_nix_dir: typing.Optional[str]

    @classmethod
    def for_host(cls, args):
        """The request of a host whose arguments are ``args`` (its own task's,
        or another host's as _role_vars.Filled.for_host makes them).
        StorePathError when ``path`` is not in the store."""
        return cls(path=store_path_of(args['path']), mode=args['copy_mode'],
                   remote_nix_dir=args['remote_nix_dir'] or None)

    def data(self):
        """{path, mode, remote_nix_dir}: the keys and values a run before this
        type wrote."""
        return {'path': self.path, 'mode': self.mode, 'remote_nix_dir': self.remote_nix_dir}
