# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of nixdeploy.fleet.nix_copy_closure (see the module docs).

Thin: one probe over the Ansible connection (nix location, trust facts, the
validity query), then plugin_utils/copy/_copy.py does the sending. In cascade
mode the first host of the play batch to get here runs the whole batch's
cascade (plugin_utils/copy/_peer.py, planned by _cascade.py) under the batch
lock; every host then answers for itself from the shared result.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import time

from ansible import constants as C
from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _role_vars, _specs
from ansible_collections.nixdeploy.fleet.plugins.module_utils._platforms import KNOWN_NIX_DIRS
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.build import _builders, _closure
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _redact
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.copy import _cascade, _copy, _peer
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _ssh, _store, _trouble
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._ssh import ssh_master
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._store import (
    StoreError, Target, split_ssh_args, store_path_of)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._target_data import (
    dropped_warning)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.run._action import (
    NixdeployAction, host_message)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.run._batch import (
    facts_in_flight, vars_of, with_facts)

# The options that may differ per host in cascade mode (the option table's
# per-host rows of nix_copy_closure: module_utils/_role_vars.py)
PER_HOST = _role_vars.per_host(_role_vars.COPY)
# Connection vars of another host, and the Target field each one fills; a
# field no host var sets comes from this task's own connection (ansible.cfg,
# play keywords), as Ansible would use it for that host too.
_CONNECTION_VARS = (
    ('user', ('ansible_user', 'ansible_ssh_user', 'ansible_remote_user')),
    ('port', ('ansible_port', 'ansible_ssh_port')),
    ('private_key_file', ('ansible_ssh_private_key_file', 'ansible_private_key_file')),
    ('common_args', ('ansible_ssh_common_args',)),
    ('extra_args', ('ansible_ssh_extra_args',)),
)
_SSH_CONNECTIONS = ('ssh', 'paramiko', 'paramiko_ssh')
# module level: inside the class, _copy is the method of that name (one name
# per assignment: ansible-doc warns about a tuple assignment in a plugin file)
ARGUMENT_SPEC = _specs.COPY_SPEC
VALIDATION = _specs.COPY_VALIDATION
ERRORS = (StoreError, _copy.CopyError, _nix.NixError)


class ActionModule(NixdeployAction):

    ARGUMENT_SPEC = ARGUMENT_SPEC
    ROLE_VARS = _role_vars.COPY
    VALIDATION = VALIDATION
    PHASE = 'copy'
    # the host's key is judged before anything runs (plugin_utils/run/_action.py):
    # a cascade and nix copy reach the host outside target_sh
    HOST_KEYS = True
    ERRORS = ERRORS
    # the deprecated option names too (Ansible refuses any other argument)
    _VALID_ARGS = frozenset(ARGUMENT_SPEC) | frozenset(_role_vars.aliases(_role_vars.COPY))

    def run(self, tmp=None, task_vars=None):
        started = time.time()
        if self._built_on_target(task_vars or {}):
            return {'skipped': True, 'changed': False,
                    'skip_reason': 'nix_build_on is target: the host builds its system itself, '
                                   'nothing to copy'}
        result = super(ActionModule, self).run(tmp, task_vars)
        result['seconds'] = round(time.time() - started, 3)
        # every text a target or Nix said that became a key (stderr, a hop's
        # error, a warning), not only msg, with any credential masked
        return _redact.data(result)

    def _built_on_target(self, task_vars):
        """With from_role_vars (the deploy role), a host whose nix_build_on is
        ``target`` is skipped: its build task built the system there. Said
        here rather than as the role task's ``when``: a condition costs every
        host a Jinja compilation in its own worker (docs/scale.md)."""
        if not boolean(self._task.args.get(_role_vars.FLAG, False), strict=False):
            return False
        value = task_vars.get('nix_build_on')
        if value is None:
            return False
        try:
            return _builders.parse_build_on(self._templar.template(value)) == _builders.TARGET
        except _builders.BuildOnError:
            return False

    def run_host(self, args, result):
        if args['copy_mode'] == 'cascade' and not self._task.check_mode:
            result.update(self._cascade(self.host, args, self.task_vars))
        else:
            result.update(self._copy(self.host, args, self.task_vars))
        return result

    def failure_details(self, error):
        stderr = getattr(error, 'stderr', '') or ''
        details = {'connection_lost': _connection_lost(stderr)}
        if stderr:
            # the target's own words: masked as the message is (a cache's login
            # in a URL Nix echoes), since AWX keeps every key of a result
            details['stderr'] = _redact.text(stderr)
        return details

    # ------------------------------------------------------------ cascade
    def _cascade(self, host, args, task_vars):
        """This host's part of the batch's cascade (computed by the first host
        of the batch to get here); a host the cascade did not cover (its
        arguments templated differently, its system not yet built when the
        cascade ran) is pushed to from the controller, as in push mode."""
        shared = self.filled.shared(args)
        own = _request(args['path'], 'cascade', args['remote_nix_dir'])

        def compute(hosts):
            return {'hosts': self._run_cascade(hosts, args, task_vars)}

        entry, _data, _here = self.from_batch(
            'copy', [dict((k, v) for k, v in args.items() if k not in PER_HOST),
                     [shared.get(k) for k in PER_HOST], bool(self._task.diff)], compute, own)
        if entry is None:
            out = self._copy(host, dict(args, copy_mode='push'), task_vars)
            out.update(mode='cascade', copied_from='controller' if out['paths_sent'] else None,
                       sent_to=[], hop_errors=[])
            return out
        out = dict(entry.get('result') or {})
        missing = out.pop('missing', None)
        if entry.get('error'):
            # a cascade hop's error carries the target's words: through the one message rule
            out.update(failed=True, msg=host_message(host, entry['error']), phase='copy',
                       connection_lost=bool(entry.get('connection_lost')))
            return out
        if out.get('hop_errors'):
            out['warnings'] = (out.get('warnings') or []) + [
                '%s: cascade hop %s; got the closure from %s instead'
                % (host, err, out.get('copied_from')) for err in out['hop_errors']]
        if self._task.diff and missing:
            out['diff'] = {'before': '', 'after': ''.join(p + '\n' for p in missing),
                           'after_header': '%s: paths to copy' % host}
        return out

    def _run_cascade(self, hosts, args, task_vars):
        """{host: entry} for the batch: every host copying its system in
        cascade mode, whose system the controller holds."""
        own_name = task_vars.get('inventory_hostname')
        # raises for a non-ssh connection: this host's task fails saying so
        own_target = Target.from_connection(self._connection, task_vars)
        peers, requests = [], {}
        in_flight = facts_in_flight(C.DEFAULT_LOCAL_TMP, hosts)
        for name in hosts:
            hostvars = with_facts(vars_of(task_vars, name), in_flight.get(name))
            request = self._peer_request(self.filled.for_host(args, self.ROLE_VARS, hostvars),
                                         hostvars)
            if request is None:
                continue
            try:
                target = own_target if name == own_name else self._target_of(
                    name, hostvars, task_vars, own_target)
            except StoreError:
                continue  # its own task reports the bad connection vars
            # a hop only to a host whose key is checked: any other is refused by
            # its own task, or (its opt-out) gets a push from it
            checked = not self._unchecked if name == own_name else _ssh.peer_checked(
                self._connection, hostvars, target)
            if not checked:
                continue
            requests[name] = request
            peers.append(_peer.Peer(
                name, target, request['path'], site=_cascade.site_of(hostvars, name),
                peer_host=hostvars.get('nix_peer_host') or None,
                remote_nix_dir=request['remote_nix_dir']))
        run = _peer.CascadeRun(_nix.NixOptions.from_params(args), peers,
                               check_sigs=args['check_sigs'], signing_key=args['signing_key'],
                               compress=args['compress'],
                               free_space_margin=args['free_space_margin'])
        entries = run.run()
        for name, entry in entries.items():
            entry['request'] = requests[name]
            if self._task.diff:
                entry['result']['missing'] = [p['path'] for p in run.by_name[name].missing]
        return entries

    @staticmethod
    def _peer_request(args, hostvars):
        """What the host's own task would ask for (``args``: the host's, as
        _role_vars.Filled.for_host makes them), or None when it is not a
        cascade copy of a system the batch knows."""
        mode = args['copy_mode']
        connection = str(hostvars.get('ansible_connection') or 'ssh').rsplit('.', 1)[-1]
        try:
            on_target = _builders.parse_build_on(
                _role_vars.host_value('build_on', hostvars)) == 'target'
        except _builders.BuildOnError:
            on_target = False  # its build task fails saying why
        if mode != 'cascade' or on_target or connection not in _SSH_CONNECTIONS:
            return None
        try:
            return _request(args['path'], mode, args['remote_nix_dir'])
        except StoreError:
            return None

    def _target_of(self, name, hostvars, task_vars, own_target):
        target = Target.from_hostvars(hostvars, templar=None, name=name)
        for field, names in _CONNECTION_VARS:
            if not any(hostvars.get(n) not in (None, '') for n in names) and not any(
                    task_vars.get(n) not in (None, '') for n in names):
                setattr(target, field, getattr(own_target, field))
        return target

    def _copy(self, host, args, task_vars):
        path = store_path_of(args['path'])
        mode = args['copy_mode']
        opts = _nix.NixOptions.from_params(args)
        if mode == 'cache':
            # a cache address whose login cannot be kept out of argv fails
            # the host before anything runs
            _copy.cache_uris(args['caches'])
        target = Target.from_connection(self._connection, task_vars,
                                        host_key_unchecked=bool(self._unchecked))
        ssh_env = target.nix_env()  # refuses unusable ssh options before anything runs
        try:
            closure = self._batch_closure(args, path, task_vars) or self._closure(
                opts, path, mode, args['caches'])
        except _copy.CopyError:
            if not self._task.check_mode:
                raise
            # check mode built nothing: say whether the host lacks the system
            return self._unbuilt(host, path, mode, args['remote_nix_dir'])

        # the probe plants the copy's GC root first (not in check mode)
        facts = self._probe(host, args['remote_nix_dir'], [p['path'] for p in closure],
                            root_path=None if self._task.check_mode else path)
        invalid = set(facts['invalid'])
        missing = [p for p in closure if p['path'] in invalid]
        # before anything is sent: room for it (check mode says so too)
        problem = _copy.space_problem(host, facts, missing, args['free_space_margin'])
        if problem:
            raise _copy.CopyError(problem)
        no_check_sigs, via_sudo, trust = _copy.plan_trust(
            facts, args['check_sigs'], args['signing_key'], target.become,
            target.become_method, target.become_user)
        uri = target.store_uri(
            remote_program=_store.remote_program(facts['nix_dir'], via_sudo, target.become_user),
            compress=args['compress'])
        # the probe just used Ansible's connection: nix copy rides its master,
        # when that compresses as asked (compression is the master's: Ansible's
        # default ssh_args have -C, which zlib costs more than it saves on a LAN)
        master = ssh_master(self._connection)
        if master and _ssh_compresses(self._connection) != bool(args['compress']):
            master = None
        ssh_env = target.nix_env(master=master)
        out = dict(path=path, mode=mode, store_uri=uri, remote_nix_dir=facts['nix_dir'],
                   trust=trust if mode != 'cache' else 'cache',
                   closure_paths=len(closure),
                   closure_bytes=sum(p['narSize'] for p in closure),
                   paths_missing=len(missing),
                   bytes_missing=sum(p['narSize'] for p in missing),
                   paths_sent=0, bytes_sent=0, changed=bool(missing),
                   free_bytes=None if facts['free_kb'] is None else facts['free_kb'] * 1024,
                   gc_root=facts['gc_root'])
        dropped = dropped_warning(host, facts['dropped'])
        if dropped:
            out.setdefault('warnings', []).append(dropped)
        if facts['gc_root_error']:
            out.setdefault('warnings', []).append(
                '%s: the copied system is not protected from a garbage collection on the host '
                'before its activation: %s' % (host, facts['gc_root_error']))
        if self._task.diff and missing:
            out['diff'] = {'before': '', 'after': ''.join(p['path'] + '\n' for p in missing),
                           'after_header': '%s: paths to copy' % host}
        if not missing or self._task.check_mode:
            if mode != 'cache':
                # check mode: what a real run would send
                out.update(paths_sent=len(missing), bytes_sent=out['bytes_missing'])
                if missing and trust == 'unsigned':
                    out.setdefault('warnings', []).append(
                        '%s: %s is not a trusted user there and no signing_key is given: the '
                        'target may refuse unsigned paths' % (host, facts.get('user') or target.user))
            return out

        if mode == 'cache':
            self._fetch(host, facts['nix_dir'], path, args['caches'])
            out['paths_fetched'] = len(missing)
            return out

        if args['signing_key'] and trust == 'signed':
            _copy.sign(opts, path, args['signing_key'])
        try:
            sent = _copy.push(opts, path, uri, ssh_env, no_check_sigs=no_check_sigs,
                              substitute=(mode == 'substitute'))
        except _nix.NixError as exc:
            if _copy.looks_unsigned(exc.stderr):
                raise _copy.CopyError(_copy.unsigned_message(
                    host, facts.get('user') or target.user, exc.stderr), exc.stderr)
            fault = _trouble.fault_message(
                host, exc.stderr, 'during the copy', facts.get('store_mount'))
            if fault:
                raise _copy.CopyError(fault, exc.stderr)
            why = _trouble.ssh_problem(exc.stderr)
            if why.startswith('sudo ') or why.startswith('the become_user'):
                # the cause first: the store URI and Nix's "unexpected end-of-file" follow
                raise _copy.CopyError('%s: %s; nothing was copied (Nix: %s)' % (
                    host, why, exc.nix_message() or exc.message), exc.stderr)
            raise _copy.CopyError('%s: copying %s to %s failed%s: %s' % (
                host, path, uri, ': ' + why if why else '', exc.nix_message() or exc.message),
                exc.stderr)
        if sent is None:  # Nix did not say: everything missing went over
            sent = [p['path'] for p in missing]
        sizes = dict((p['path'], p['narSize']) for p in closure)
        out.update(paths_sent=len(sent), bytes_sent=sum(sizes.get(p, 0) for p in sent))
        return out

    def _unbuilt(self, host, path, mode, remote_nix_dir):
        """Check mode, for a system the controller has not built (check mode
        builds nothing without --diff): whether the host already holds it."""
        facts = self._probe(host, remote_nix_dir, [path])
        missing = path in set(facts['invalid'])
        return dict(path=path, mode=mode, remote_nix_dir=facts['nix_dir'], changed=missing,
                    closure_paths=None, closure_bytes=None, paths_missing=None,
                    bytes_missing=None, paths_sent=0, bytes_sent=0,
                    msg='would copy %s (not built yet: its closure size is unknown)' % path
                    if missing else '%s is already in the target\'s store' % path)

    def _batch_closure(self, args, path, task_vars):
        """This host's closure from ONE ``nix path-info -r`` of every system of
        the play batch (the first host to get here asks for all), or None
        when the batch's answer does not hold it (then the host asks alone)."""
        def compute(hosts):
            wanted = {}
            in_flight = facts_in_flight(C.DEFAULT_LOCAL_TMP, hosts)
            for name in hosts:
                hostvars = with_facts(vars_of(task_vars, name), in_flight.get(name))
                try:
                    wanted[name] = store_path_of(
                        self.filled.for_host(args, self.ROLE_VARS, hostvars)['path'])
                except StoreError:
                    continue
            infos = _copy.batch_infos(_nix.NixOptions.from_params(args), sorted(set(
                wanted.values())))
            # each host's own listing: a host reads its entry, not the batch's
            # closures (megabytes at 1,000 hosts, read by every host)
            return {'hosts': dict((n, {'request': {'path': p},
                                       'listing': _closure.listing(infos, p)})
                                  for n, p in wanted.items() if infos.get(p))}

        entry, _data, _here = self.from_batch(
            'closure', [_nix.options_of(args), self.filled.shared(args).get('path')], compute,
            {'path': path})
        if entry is None:
            return None
        return entry['listing']

    def _closure(self, opts, path, mode, caches):
        try:
            return _copy.closure(opts, path)
        except _nix.NixError as exc:
            local_error = exc
        if mode == 'cache':
            # the controller need not hold the path: ask the caches for its closure
            for cache in caches:
                try:
                    return _copy.closure(opts, path, store=cache)
                except _nix.NixError:
                    continue
            raise _copy.CopyError('%s is neither in the controller\'s store nor in any of '
                                  'the caches %s: %s' % (path, ', '.join(_copy.cache_uris(caches)),
                                                         local_error.nix_message()))
        raise _copy.CopyError('%s is not valid in the controller\'s store (build it first): %s'
                              % (path, local_error.nix_message()))

    def _probe(self, host, remote_nix_dir, paths, root_path=None):
        # this host only receives: no cascade sender's facts
        probe = _copy.probe_script(remote_nix_dir, peer_facts=False,
                                   root_key=host if root_path else None, root_path=root_path)
        rc, out, err = self.target_sh(probe, in_data='\n'.join(paths) + '\n')
        facts = _copy.parse_probe(out, probe)
        if facts is None:
            where = remote_nix_dir or 'PATH and the known locations (%s)' % ', '.join(
                KNOWN_NIX_DIRS)
            raise _copy.CopyError('%s: no nix-store found on the target in %s; set '
                                  'remote_nix_dir to the folder holding nix' % (host, where))
        if any(note.startswith('invalid:') for note in facts['dropped']):
            # what the host lacks is unknown: copying nothing would pass for a no-op
            raise _copy.CopyError('%s: the target\'s list of the paths it lacks is not a list of '
                                  'store paths (%s)' % (host, '; '.join(facts['dropped'])))
        if rc != 0 or not facts.get('complete'):
            said = (err or out or '').strip()[-2000:]
            raise _copy.CopyError(_trouble.fault_message(
                host, said, 'when asked what it lacks', facts.get('store_mount')) or
                '%s: querying the target\'s store failed (rc %s): %s' % (host, rc, said), err)
        return facts

    def _fetch(self, host, nix_dir, path, caches):
        # the caches' logins go on stdin only (the program is ssh's argv)
        program, netrc = _copy.fetch_script(nix_dir, path, caches)
        rc, out, err = self.target_sh(program, in_data=netrc or None)
        if rc != 0:
            err = _redact.text((err or '') + (out or ''))
            names = ', '.join(_copy.cache_uris(caches))
            hint = ''
            if _copy.looks_unsigned(err):
                hint = (' (the target does not trust the key the cache is signed with: add '
                        'it to the target\'s trusted-public-keys)')
            elif netrc and any(words in err for words in _REFUSED_LOGIN):
                hint = (' (a cache that asks for a login says so: check the user name and '
                        'password in its address)')
            raise _copy.CopyError(_trouble.fault_message(
                host, err, 'while fetching from %s' % names) or
                '%s: fetching %s from %s on the target failed%s: %s' % (
                    host, path, names, hint, err.strip()[-2000:]), err)


# Nix's words for a cache that refused the login: 2.8 takes a refused
# nix-cache-info for no cache at all, later versions name the HTTP status
_REFUSED_LOGIN = ('HTTP error 401', 'HTTP error 403', 'does not appear to be a binary cache')


def _request(path, mode, remote_nix_dir):
    return {'path': store_path_of(path), 'mode': mode, 'remote_nix_dir': remote_nix_dir or None}


# ssh's single-letter flags that take no argument (-C may be among them: -4C)
_SSH_FLAGS = re.compile(r'^-[46AaCfGgKkMNnqsTtVvXxYy]+$')


def _ssh_compresses(connection):
    """Whether Ansible's ssh connection asks for compression (-C or
    Compression=yes in ssh_args, ssh_common_args or ssh_extra_args)."""
    words = []
    for option in ('ssh_args', 'ssh_common_args', 'ssh_extra_args'):
        try:
            words += split_ssh_args(connection.get_option(option) or '')
        except (KeyError, ValueError):
            continue
    for index, word in enumerate(words):
        if _SSH_FLAGS.match(word) and 'C' in word:
            return True
        setting = word[2:] if word.startswith('-o') and len(word) > 2 else (
            words[index + 1] if word == '-o' and index + 1 < len(words) else '')
        if setting.replace(' ', '').lower() in ('compression=yes', 'compression=true'):
            return True
    return False


def _connection_lost(stderr):
    """Whether ssh failed to reach the host (not a host key or sudo refusal)."""
    problem = _trouble.ssh_problem(stderr)
    return bool(problem) and 'host key' not in problem and 'sudo' not in problem
