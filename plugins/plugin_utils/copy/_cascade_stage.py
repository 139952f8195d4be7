# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One host's part of a cascade copy (nix_copy_closure in a batch-wide copy
mode: module_utils/_copy_modes.py, copy_mode=cascade).

The batch's server runs the whole batch's cascade (_peer.py, planned by
_cascade.py), the first host of the play batch to get here foreseeing every
host's request; every host then answers for itself from its entry. A host the cascade did not cover
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
    _cascade, _cascade_peer, _copy_send, _peer)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _host_key_judge, _reached
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host import (
    CONNECTION_VARS, SSH_CONNECTIONS, AddressError, Host)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._store import (
    StorePathError, store_path_of)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix._nix import NixOptions, options_of
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._action import host_message
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._run import (
    BatchError, facts_in_flight, play_batch, vars_of, with_facts)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_work import (
    BatchWork, serves)

# The options that may differ per host in cascade mode (the option table's
# per-host rows of nix_copy_closure: module_utils/_role_vars.py)
PER_HOST = _role_vars.per_host(_role_vars.COPY)
# Connection vars of another host, and the Host field each one fills
# (plugin_utils/host/_host.py's one list, but the address); a field no host
# var sets comes from this task's own connection (ansible.cfg, play
# keywords), as Ansible would use it for that host too.
_CONNECTION_VARS = tuple(row for row in CONNECTION_VARS if row[0] != 'address')
# Seconds a host waits for the batch's cascade from its server: the
# cascade's own bound (_peer.CASCADE_TIMEOUT) and ten minutes for the work
# around it (each host's arguments and ssh -G, one file a host). Past it the
# host gets the controller's push, as a host the cascade left out does.
CASCADE_ANSWER_WAIT = _peer.CASCADE_TIMEOUT + 600


class CascadeStage:
    """The cascade part of ``stage`` (the task's CopyStage: its host,
    arguments, connection, options, batch, and its push for a host the
    cascade did not cover)."""

    def __init__(self, stage):
        self.stage = stage
        # {host: peer_data} of the hosts foreseen that the cascade covers
        self._peers = {}

    def run(self):
        """This host's part of the batch's cascade (run by the batch's
        server, the first host to get here foreseeing every host's request);
        a host the cascade did not cover (its arguments templated
        differently, its system not yet built when the cascade ran) is
        pushed to from the controller, as in push mode."""
        stage = self.stage
        args, host = stage.args, stage.host
        shared = stage.filled.shared(args)
        request = CascadeRequest.for_host(args)
        try:
            host_entry = stage.batch_answer(BatchWork(
                'copy', [dict((k, v) for k, v in args.items() if k not in PER_HOST),
                         [shared.get(k) for k in PER_HOST], bool(stage.diff)],
                request.data(), SERVE, context=self._context, foresee=self._foresee,
                answer_wait=CASCADE_ANSWER_WAIT)).entry
        except BatchError as exc:
            # the cascade is stuck past its own bound, or its server died
            stage.warnings.append(
                '%s: got no answer from the play batch\'s cascade (one process runs it for '
                'the batch) and got the controller\'s push instead (%s); if this repeats, '
                'look for a cascade hop that does not end, or use copy_mode push' % (host, exc))
            host_entry = None
        if not host_entry or not ('result' in host_entry or 'error' in host_entry):
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

    def _foresee(self, hosts):
        """{host: request} of every host of the batch the cascade may cover:
        each host's request from its variables. Its peer (its connection,
        its key judged) goes to the server in the context (``_context``):
        a host foreseen without one gets the controller's push."""
        peers = _Peers(self, hosts)
        requests = {}
        for name in hosts:
            request = peers.request_of(name)
            if request is None:
                continue
            requests[name] = request.data()
            peer = peers.peer_of(name, request)
            if peer is not None:
                self._peers[name] = dict(peer_data(peer), request=requests[name])
        return requests

    def _context(self):
        """What the batch's server runs the cascade with (``serve_cascade``):
        the task's options and copy settings, whether it diffs, and the
        peers this host foresaw."""
        args = self.stage.args
        return {'options': options_of(args),
                'settings': list(self.stage.settings),
                'diff': bool(self.stage.diff), 'peers': self._peers}

    def target_of(self, name, hostvars, own_target):
        target = Host.from_hostvars(hostvars, templar=None, name=name)
        for field, names in _CONNECTION_VARS:
            if not any(hostvars.get(n) not in (None, '') for n in names) and not any(
                    self.stage.task_vars.get(n) not in (None, '') for n in names):
                setattr(target, field, getattr(own_target, field))
        return target


class _Peers:
    """Who of ``hosts`` the cascade of ``cascade`` (a CascadeStage) covers,
    and how: each host's request and ``Peer``, from its variables and the
    facts in flight, as the host that asked first sees them."""

    def __init__(self, cascade, hosts):
        stage = cascade.stage
        self.cascade = cascade
        self.this_host = stage.task_vars.get('inventory_hostname')
        # raises for a non-ssh connection: this host's task fails saying so
        self.this_target = stage.target.require_ssh()
        self.in_flight = facts_in_flight(C.DEFAULT_LOCAL_TMP, hosts)
        # a host that failed before this task (its evaluation, its build)
        # is in no hop: its store gets nothing of the batch's
        self.active = set(play_batch(stage.task_vars))
        # with the login probe on (this host was probed), a host the probe
        # has not reached yet is left to its own task, which pushes: its
        # address may be another of its nix_target_hosts, or none
        self.probed = _reached.reached(C.DEFAULT_LOCAL_TMP, self.this_host) is not None

    def request_of(self, name):
        """The ``CascadeRequest`` of ``name`` from its variables, or None when
        the cascade leaves it to its own task (no ssh, no key judged here)."""
        stage, this_host = self.cascade.stage, self.this_host
        if name != this_host and name not in self.active:
            return None
        if self.probed and name != this_host and _reached.reached(
                C.DEFAULT_LOCAL_TMP, name) is None:
            return None
        hostvars = self._hostvars(name)
        return _peer_request(stage.filled.for_host(stage.args, _role_vars.COPY, hostvars),
                             hostvars)

    def _hostvars(self, name):
        return with_facts(vars_of(self.cascade.stage.task_vars, name), self.in_flight.get(name))

    def peer_of(self, name, request):
        """The ``Peer`` of ``name`` (``request``: its ``request_of``), or None
        when the cascade does not cover it."""
        stage, this_host = self.cascade.stage, self.this_host
        hostvars = self._hostvars(name)
        try:
            target = self.this_target if name == this_host else self.cascade.target_of(
                name, hostvars, self.this_target)
        except AddressError:
            return None  # its own task reports the bad connection vars
        # a hop only to a host whose key is checked: any other is refused by
        # its own task, or (its opt-out) gets a push from it
        checked = not stage.unchecked if name == this_host else _host_key_judge.peer_checked(
            stage.connection, hostvars, target)
        if not checked:
            return None
        return _cascade_peer.Peer(
            name, target, request.path, site=_cascade.site_of(hostvars, name),
            peer_host=hostvars.get('nix_peer_host') or None,
            remote_nix_dir=request.remote_nix_dir)


# the fields of a peer's ``Host`` its cascade reads (its plain ssh: ``Host.ssh_options``)
_TARGET_FIELDS = ('address', 'port', 'user', 'private_key_file', 'become', 'become_user',
                  'become_method', 'name')


def peer_data(peer):
    """A cascade's ``Peer`` before its cascade, as JSON data (``of_data``
    reads it back in the batch's server): its host's ssh fields, its key
    judged (``host_key_unchecked`` as it stands now), no connection."""
    target = peer.target.require_ssh()
    known = dict((field, getattr(target, field)) for field in _TARGET_FIELDS)
    known.update(common_args=target.common_args, extra_args=target.extra_args,
                 host_key_unchecked=target.host_key_unchecked, key_alias=target.key_alias)
    return {'target': known, 'path': peer.path, 'site': peer.site,
            'peer_host': peer.peer_host, 'remote_nix_dir': peer.remote_nix_dir}


def of_data(name, data):
    """The ``Peer`` ``peer_data`` gave for ``name`` (its host checked again,
    as any ``Host``)."""
    known = data['target']
    target = Host(ssh_common_args=known['common_args'], ssh_extra_args=known['extra_args'],
                  host_key_unchecked=known['host_key_unchecked'],
                  **dict((field, known[field]) for field in _TARGET_FIELDS))
    target.key_alias = known['key_alias']
    return _cascade_peer.Peer(name, target, data['path'], site=data['site'],
                              peer_host=data['peer_host'], remote_nix_dir=data['remote_nix_dir'])


@serves
def serve_cascade(context, requests, put):
    """The batch's cascade (``SERVE``), in its server: one cascade for the
    hosts of ``requests`` it covers (a peer foreseen for them, their
    request the one foreseen); each other host gets an empty entry, and the
    controller's push. ``context``: ``CascadeStage._context``."""
    peers, asked = [], {}
    for name, data in requests.items():
        known = context['peers'].get(name)
        if known is None or known['request'] != data:
            put(name, {})
            continue
        asked[name] = data
        peers.append(of_data(name, known))
    if not peers:
        return
    driver = _peer.CascadeDriver(NixOptions.from_params(context['options']), peers,
                                 _copy_send.CopySettings(*context['settings']))
    entries = driver.run()
    for name in asked:
        # none for a host whose system the controller does not hold
        # (not built when the cascade ran): the controller's push
        host_entry = entries.get(name) or {}
        if host_entry:
            host_entry['request'] = asked[name]
        if host_entry and context['diff']:
            host_entry['result']['missing'] = [p['path'] for p in driver.by_name[name].missing]
        put(name, host_entry)


# the name the cascade's BatchWork gives its serve function
SERVE = '%s:serve_cascade' % __name__


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
    if not batch_wide or on_target or connection not in SSH_CONNECTIONS:
        return None
    try:
        return CascadeRequest.for_host(args)
    except StorePathError:
        return None


@dataclasses.dataclass(frozen=True)
class CascadeRequest:
    """What one host asks the batch's cascade, built by ``for_host``;
    ``data()`` is the form in the batch file (the entry's ``request``,
    compared with ``==`` to the one foreseen for this host by ``_batch_server``).

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
