# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller side of nixdeploy.fleet.nix_copy_closure (see the module docs).

Thin: one probe over the Ansible connection (nix location, trust facts, the
validity query), then module_utils/_copy.py does the sending.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible.plugins.action import ActionBase

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _copy, _nix
from ansible_collections.nixdeploy.fleet.plugins.module_utils._platforms import KNOWN_NIX_DIRS
from ansible_collections.nixdeploy.fleet.plugins.module_utils._store import (
    StoreError, Target, store_path_of)

NIX_FRAGMENT_SPEC = dict(
    nix_bin=dict(type='str', default='nix'),
    nix_args=dict(type='list', elements='str', default=[]),
    nix_options=dict(type='dict', default={}),
    impure=dict(type='bool', default=False),
    show_trace=dict(type='bool', default=False),
    override_inputs=dict(type='dict', default={}),
)

ARGUMENT_SPEC = dict(
    path=dict(type='str', required=True),
    mode=dict(type='str', default='push', choices=['push', 'substitute', 'cache']),
    caches=dict(type='list', elements='str', default=[]),
    compress=dict(type='bool', default=False),
    signing_key=dict(type='path', no_log=True),
    check_sigs=dict(type='str', default='auto', choices=['auto', 'true', 'false']),
    remote_nix_dir=dict(type='str'),
    **NIX_FRAGMENT_SPEC
)


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(ARGUMENT_SPEC)

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        del tmp
        started = time.time()
        _validation, args = self.validate_argument_spec(
            argument_spec=ARGUMENT_SPEC,
            required_if=[('mode', 'cache', ('caches',))])
        host = (task_vars or {}).get('inventory_hostname', 'target')
        try:
            result.update(self._copy(host, args, task_vars or {}))
        except (StoreError, _copy.CopyError, _nix.NixError) as exc:
            result.update(failed=True, msg=_message(host, exc))
            if getattr(exc, 'stderr', ''):
                result['stderr'] = exc.stderr
        result['seconds'] = round(time.time() - started, 3)
        return result

    def _copy(self, host, args, task_vars):
        path = store_path_of(args['path'])
        mode = args['mode']
        opts = _nix.NixOptions.from_params(args)
        target = Target.from_connection(self._connection, task_vars)
        ssh_env = target.nix_env()  # refuses unusable ssh options before anything runs
        closure = self._closure(opts, path, mode, args['caches'])

        facts = self._probe(host, args['remote_nix_dir'], [p['path'] for p in closure])
        invalid = set(facts['invalid'])
        missing = [p for p in closure if p['path'] in invalid]
        no_check_sigs, via_sudo, trust = _copy.plan_trust(
            facts, args['check_sigs'], args['signing_key'], target.become,
            target.become_method, target.become_user)
        uri = target.store_uri(
            remote_program=_copy.remote_program(facts['nix_dir'], via_sudo, target.become_user),
            compress=args['compress'])
        out = dict(path=path, mode=mode, store_uri=uri, remote_nix_dir=facts['nix_dir'],
                   trust=trust if mode != 'cache' else 'cache',
                   closure_paths=len(closure),
                   closure_bytes=sum(p['narSize'] for p in closure),
                   paths_missing=len(missing),
                   bytes_missing=sum(p['narSize'] for p in missing),
                   paths_sent=0, bytes_sent=0, changed=bool(missing))
        if self._task.diff and missing:
            out['diff'] = {'before': '', 'after': ''.join(p['path'] + '\n' for p in missing),
                           'after_header': '%s: paths to copy' % host}
        if not missing or self._task.check_mode:
            if mode != 'cache':
                # check mode: what a real run would send
                out.update(paths_sent=len(missing), bytes_sent=out['bytes_missing'])
                if missing and trust == 'unsigned':
                    out['warnings'] = ['%s: %s is not a trusted user there and no signing_key is '
                                       'given: the target may refuse unsigned paths'
                                       % (host, facts.get('user') or target.user)]
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
            why = _copy.ssh_problem(exc.stderr)
            raise _copy.CopyError('%s: copying %s to %s failed%s: %s' % (
                host, path, uri, ': ' + why if why else '', exc.nix_message() or exc.message),
                exc.stderr)
        if sent is None:  # Nix did not say: everything missing went over
            sent = [p['path'] for p in missing]
        sizes = dict((p['path'], p['narSize']) for p in closure)
        out.update(paths_sent=len(sent), bytes_sent=sum(sizes.get(p, 0) for p in sent))
        return out

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
                                  'the caches %s: %s' % (path, ', '.join(caches),
                                                         local_error.nix_message()))
        raise _copy.CopyError('%s is not valid in the controller\'s store (build it first): %s'
                              % (path, local_error.nix_message()))

    def _probe(self, host, remote_nix_dir, paths):
        res = self._low_level_execute_command(
            _copy.probe_script(remote_nix_dir), sudoable=False,
            in_data='\n'.join(paths) + '\n')
        facts = _copy.parse_probe(res.get('stdout', ''))
        if facts is None:
            where = remote_nix_dir or 'PATH and the known locations (%s)' % ', '.join(
                KNOWN_NIX_DIRS)
            raise _copy.CopyError('%s: no nix-store found on the target in %s; set '
                                  'remote_nix_dir to the folder holding nix' % (host, where))
        if res.get('rc') != 0 or not facts.get('complete'):
            raise _copy.CopyError('%s: querying the target\'s store failed (rc %s): %s' % (
                host, res.get('rc'), (res.get('stderr') or res.get('stdout') or '').strip()[-2000:]),
                res.get('stderr', ''))
        return facts

    def _fetch(self, host, nix_dir, path, caches):
        res = self._low_level_execute_command(
            _copy.fetch_script(nix_dir, path, caches), sudoable=False)
        if res.get('rc') != 0:
            err = (res.get('stderr') or '') + (res.get('stdout') or '')
            hint = ''
            if _copy.looks_unsigned(err):
                hint = (' (the target does not trust the key the cache is signed with: add '
                        'it to the target\'s trusted-public-keys)')
            raise _copy.CopyError('%s: fetching %s from %s on the target failed%s: %s' % (
                host, path, ', '.join(caches), hint, err.strip()[-2000:]), err)


def _message(host, exc):
    text = getattr(exc, 'message', None) or str(exc)
    if isinstance(exc, _nix.NixError):
        text = str(exc)
    return text if text.startswith(host + ':') else '%s: %s' % (host, text)
