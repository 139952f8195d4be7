# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""One nix_copy_closure task on one host: the work behind the action.

The host's own copy (every mode in check mode, every mode but a batch-wide
one otherwise): the host's closure (from the play batch's one ``nix
path-info -r``), one probe over the Ansible connection (nix location, trust
facts, the validity query, free space, the copy's GC root), then ``nix
copy`` of what is missing (_copy.py), or the target fetches it from the
caches. What differs by mode is read from the mode's row
(module_utils/_copy_modes.py); the batch-wide cascade is _cascade_stage.py.
"""

import re

from ansible import constants as C

from ansible_collections.nixdeploy.fleet.plugins.module_utils import _role_vars
from ansible_collections.nixdeploy.fleet.plugins.module_utils._copy_modes import mode_row
from ansible_collections.nixdeploy.fleet.plugins.module_utils._platforms import KNOWN_NIX_DIRS
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.builds import _closure
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common import _redact
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.copy import _copy, _copy_send
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.copy._cascade_stage import (
    CascadeStage)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host import _diagnosis
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host_key_judge import ssh_master
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._host import split_ssh_args
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._store import (
    StorePathError, store_path_of)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.host._program_fields import (
    dropped_warning)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.nix import _nix
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._run import (
    BatchError, batch_folder, facts_in_flight, vars_of, with_facts)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_work import (
    BatchWork, serves)

# the time limit of the target's own fetch from the caches (a whole closure
# downloaded there); the controller's push has _copy_send.COPY_TIMEOUT, every
# other program of the copy the host's (Host.sh)
FETCH_TIMEOUT = 3600
# Seconds a host waits for the batch's closure listing from its server: the
# listing's own bound (_copy_send.batch_infos: CLOSURE_TIMEOUT) and a minute
# for the rest of its work (the server's start, one small file a host). Past
# it the host lists its own closure (_closure), as a host the batch left out
# does.
CLOSURE_ANSWER_WAIT = _copy_send.CLOSURE_TIMEOUT + 60
# Nix's words for a cache that refused the login: 2.8 takes a refused
# nix-cache-info for no cache at all, later versions name the HTTP status
_REFUSED_LOGIN = ('HTTP error 401', 'HTTP error 403', 'does not appear to be a binary cache')
# ssh's single-letter flags that take no argument (-C may be among them: -4C)
_SSH_FLAGS = re.compile(r'^-[46AaCfGgKkMNnqsTtVvXxYy]+\Z')


@serves
def list_closures(context, requests, put):
    """The batch's closure listing (``LIST_CLOSURES``): ONE ``nix path-info
    -r`` of the systems ``requests`` ({host: {'path'}}), each host put its
    own closure's listing. ``context``: {options (``options_of``)}."""
    paths = dict((name, found['path']) for name, found in requests.items())
    infos = _copy_send.batch_infos(_nix.NixOptions.from_params(context['options']),
                                   sorted(set(paths.values())))
    # each host's own listing: a host reads its entry, not the batch's
    # closures (megabytes at 1,000 hosts, read by every host)
    for name, found in paths.items():
        put(name, {'listing': _closure.listing(infos, found) if infos.get(found) else None})


# the name the closure listing's BatchWork gives its serve function
LIST_CLOSURES = '%s:list_closures' % __name__


class CopyStage:
    """nix_copy_closure for ``host`` (its validated ``args``, ``task_vars``).

    What it needs of the action comes as arguments: the task's ``target``
    (plugin_utils/host/_host.py ``Host``: its programs over Ansible's
    connection, its store, its ``connection``), ``check_mode`` and ``diff``,
    ``unchecked`` (ssh does not check the host's key and its opt-out let it
    through), ``filled`` (the arguments as filled from the variables:
    _role_vars.Filled) and ``batch_answer(work)``, the action's one entry
    point to work done once for the play batch (plugin_utils/task/_batch_work.py)."""

    def __init__(self, host, args, task_vars, target, check_mode=False, diff=False,
                 unchecked=False, filled=None, batch_answer=None):
        self.host, self.args, self.task_vars = host, args, task_vars
        self.settings = _copy_send.CopySettings.of(args)
        # the task's copy mode (module_utils/_copy_modes.py): what differs by mode
        self.copy_mode = mode_row(args['copy_mode'])
        self.target = target
        self.connection = target.connection
        self.check_mode, self.diff, self.unchecked = check_mode, diff, unchecked
        self.filled = filled
        self.batch_answer = batch_answer
        self._opts = None
        # what this host's result warns of before its copy's own (a bound hit)
        self.warnings = []

    @property
    def opts(self):
        """The task's NixOptions, built once, where a copy first needs them
        (a bad path is said before bad nix_options)."""
        if self._opts is None:
            self._opts = _nix.NixOptions.from_params(self.args)
        return self._opts

    def run(self):
        """This host's result keys."""
        if self.copy_mode.batch_wide and not self.check_mode:
            return CascadeStage(self).run()
        return self.copy()

    # ------------------------------------------------------------ copy
    def copy(self):
        """This host's own copy in the task's mode (also a host a batch-wide
        copy left out): its result keys."""
        args, copy_mode = self.args, self.copy_mode
        path = store_path_of(args['path'])
        opts = self.opts
        if copy_mode.from_caches:
            # a cache address whose login cannot be kept out of argv fails
            # the host before anything runs
            _copy_send.cache_uris(args['caches'])
        # raises for a connection the controller's ssh cannot take; the
        # action judged the host by now: its Host reads that judgement
        target = self.target.require_ssh()
        target.nix_env()  # refuses unusable ssh options before anything runs
        try:
            closure = (_closure.kept_listing(batch_folder(C.DEFAULT_LOCAL_TMP),
                                             _nix.options_of(self.args), path)
                       or self._batch_closure(path) or self._closure(path))
        except _copy.CopyError:
            if not self.check_mode:
                raise
            # check mode built nothing: say whether the host lacks the system
            return self._unbuilt(path)

        # the probe plants the copy's GC root first (not in check mode)
        facts = self.probe([p['path'] for p in closure],
                           root_path=None if self.check_mode else path)
        invalid = set(facts['invalid'])
        missing = [p for p in closure if p['path'] in invalid]
        self._check_space(facts, missing)
        no_check_sigs, via_sudo, trust = self.settings.trust(facts, target)
        uri = _copy_send.store_address(target, facts['nix_dir'], via_sudo, self.settings.compress)
        ssh_env = self._ssh_env(target)
        out = self._result(path, uri, trust, facts, closure, missing)
        if not missing or self.check_mode:
            return self._nothing_sent(out, facts, missing, trust, target)
        if copy_mode.from_caches:
            self._fetch(facts['nix_dir'], path)
            out['paths_fetched'] = len(missing)
            return out
        sent = self._push(opts, path, uri, ssh_env, no_check_sigs, trust, facts, target)
        if sent is None:  # Nix did not say: everything missing went over
            sent = [p['path'] for p in missing]
        sizes = dict((p['path'], p['narSize']) for p in closure)
        out.update(paths_sent=len(sent), bytes_sent=sum(sizes.get(p, 0) for p in sent))
        return out

    def _nothing_sent(self, out, facts, missing, trust, target):
        """The result when nothing is sent (nothing missing, or check mode)."""
        if self.copy_mode.controller_sends:
            # check mode: what a real run would send
            out.update(paths_sent=len(missing), bytes_sent=out['bytes_missing'])
            if missing and trust == 'unsigned':
                out.setdefault('warnings', []).append(
                    '%s: %s is not a trusted user there and no signing_key is given: the '
                    'target may refuse unsigned paths'
                    % (self.host, facts.get('user') or target.user))
        return out

    def _push(self, opts, path, uri, ssh_env, no_check_sigs, trust, facts, target):
        """Sign (when the trust plan says so) and send what the host lacks:
        the paths Nix said it sent, None when it did not say."""
        if self.settings.signing_key and trust == 'signed':
            _copy_send.sign(opts, path, self.settings.signing_key)
        try:
            return _copy_send.push(opts, path, uri, ssh_env, self.settings.nix_copy_flags(),
                                   no_check_sigs=no_check_sigs,
                                   substitute=self.copy_mode.substitutes)
        except _copy.CopyTimeout as exc:
            raise _copy.CopyError(_copy.timeout_message(
                self.host, exc.message, exc.seconds, _copy.COPY_STUCK_FIX), exc.stderr)
        except _nix.NixError as exc:
            raise self._push_error(exc, path, uri, facts, target)

    def _check_space(self, facts, missing):
        # before anything is sent: room for it (check mode says so too)
        problem = _copy.space_problem(self.host, facts, missing,
                                      self.settings.free_space_margin)
        if problem:
            raise _copy.CopyError(problem)

    def _ssh_env(self, target):
        # the probe just used Ansible's connection: nix copy rides its master,
        # when that compresses as asked (compression is the master's: Ansible's
        # default ssh_args have -C, which zlib costs more than it saves on a LAN)
        master = ssh_master(self.connection)
        if master and _ssh_compresses(self.connection) != self.settings.compress:
            master = None
        return target.nix_env(master=master)

    def _result(self, path, uri, trust, facts, closure, missing):
        """The result keys before anything is sent, with the probe's warnings."""
        host = self.host
        # what passes the target's signature check: the trust plan's word for
        # what the controller sends, else the caches' own signatures
        out = dict(path=path, mode=self.copy_mode.name, store_uri=uri,
                   remote_nix_dir=facts['nix_dir'],
                   trust=trust if self.copy_mode.controller_sends else 'cache',
                   closure_paths=len(closure),
                   closure_bytes=sum(p['narSize'] for p in closure),
                   paths_missing=len(missing),
                   bytes_missing=sum(p['narSize'] for p in missing),
                   paths_sent=0, bytes_sent=0, changed=bool(missing),
                   free_bytes=None if facts['free_kb'] is None else facts['free_kb'] * 1024,
                   gc_root=facts['gc_root'])
        if self.warnings:
            out['warnings'] = list(self.warnings)
        dropped = dropped_warning(host, facts['dropped'])
        if dropped:
            out.setdefault('warnings', []).append(dropped)
        if facts['gc_root_error']:
            out.setdefault('warnings', []).append(
                '%s: the copied system is not protected from a garbage collection on the host '
                'before its activation: %s' % (host, facts['gc_root_error']))
        if self.diff and missing:
            out['diff'] = {'before': '', 'after': ''.join(p['path'] + '\n' for p in missing),
                           'after_header': '%s: paths to copy' % host}
        return out

    def _push_error(self, exc, path, uri, facts, target):
        """The CopyError for nix copy's NixError ``exc``: the cause first."""
        host = self.host
        if _copy_send.looks_unsigned(exc.stderr):
            return _copy.CopyError(_copy_send.unsigned_message(
                host, facts.get('user') or target.user, exc.stderr), exc.stderr)
        fault = _diagnosis.fault_message(
            host, exc.stderr, 'during the copy', facts.get('store_mount'))
        if fault:
            return _copy.CopyError(fault, exc.stderr)
        why = _diagnosis.ssh_problem(exc.stderr)
        if why.startswith('sudo ') or why.startswith('the become_user'):
            # the cause first: the store URI and Nix's "unexpected end-of-file" follow
            return _copy.CopyError('%s: %s; nothing was copied (Nix: %s)' % (
                host, why, exc.nix_message() or exc.message), exc.stderr)
        return _copy.CopyError('%s: copying %s to %s failed%s: %s' % (
            host, path, uri, ': ' + why if why else '', exc.nix_message() or exc.message),
            exc.stderr)

    def _unbuilt(self, path):
        """Check mode, for a system the controller has not built (check mode
        builds nothing without --diff): whether the host already holds it."""
        facts = self.probe([path])
        missing = path in set(facts['invalid'])
        return dict(path=path, mode=self.copy_mode.name, remote_nix_dir=facts['nix_dir'],
                    changed=missing,
                    closure_paths=None, closure_bytes=None, paths_missing=None,
                    bytes_missing=None, paths_sent=0, bytes_sent=0,
                    msg='would copy %s (not built yet: its closure size is unknown)' % path
                    if missing else '%s is already in the target\'s store' % path)

    # ------------------------------------------------------------ closure
    def _batch_closure(self, path):
        """This host's closure from ONE ``nix path-info -r`` of every system of
        the play batch (the first host to get here foresees them all), or
        None when the batch's answer does not hold it (then the host lists
        its own)."""
        args = self.args

        def foresee(hosts):
            wanted = {}
            in_flight = facts_in_flight(C.DEFAULT_LOCAL_TMP, hosts)
            for name in hosts:
                hostvars = with_facts(vars_of(self.task_vars, name), in_flight.get(name))
                try:
                    wanted[name] = {'path': store_path_of(
                        self.filled.for_host(args, _role_vars.COPY, hostvars)['path'])}
                except StorePathError:
                    continue
            return wanted

        try:
            host_entry = self.batch_answer(BatchWork(
                'closure', [_nix.options_of(args), self.filled.shared(args).get('path')],
                {'path': path}, LIST_CLOSURES, context={'options': _nix.options_of(args)},
                foresee=foresee, answer_wait=CLOSURE_ANSWER_WAIT)).entry
        except BatchError as exc:
            # the batch's listing is stuck past its own bound, or its server
            # died: list alone
            self.warnings.append(
                '%s: got no answer from the play batch\'s closure listing (one process lists '
                'every closure of the batch) and listed its own instead (%s); if this repeats, '
                'look for a nix path-info on the controller that does not end (its store\'s '
                'database locked by another process)' % (self.host, exc))
            return None
        # None, too, when the listing failed as a whole (its entry's error)
        return host_entry.get('listing')

    def _closure(self, path):
        caches = self.args['caches']
        try:
            return _copy_send.closure(self.opts, path)
        except _nix.NixError as exc:
            local_error = exc
        if self.copy_mode.from_caches:
            # the controller need not hold the path: ask the caches for its closure
            for cache in caches:
                try:
                    return _copy_send.closure(self.opts, path, store=cache)
                except _nix.NixError:
                    continue
            raise _copy.CopyError('%s is neither in the controller\'s store nor in any of '
                                  'the caches %s: %s' % (path, ', '.join(_copy_send.cache_uris(caches)),
                                                         local_error.nix_message()))
        raise _copy.CopyError('%s is not valid in the controller\'s store (build it first): %s'
                              % (path, local_error.nix_message()))

    # ------------------------------------------------------------ target
    def probe(self, paths, root_path=None):
        """The probe's facts for ``paths`` (copy-probe.sh over the Ansible
        connection); ``root_path``: plant the copy's GC root of it first."""
        host, remote_nix_dir = self.host, self.args['remote_nix_dir']
        # this host only receives: no cascade sender's facts
        rc, out, err, facts = _copy.probe_target(self.target, paths, remote_nix_dir,
                                                 root_key=host if root_path else None,
                                                 root_path=root_path)
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
            raise _copy.CopyError(_diagnosis.fault_message(
                host, said, 'when asked what it lacks', facts.get('store_mount')) or
                '%s: querying the target\'s store failed (rc %s): %s' % (host, rc, said), err)
        return facts

    def _fetch(self, nix_dir, path):
        host, caches = self.host, self.args['caches']
        # the caches' logins go on stdin only (the program is ssh's argv)
        program, netrc = _copy_send.fetch_script(nix_dir, path, caches,
                                                 self.settings.nix_copy_flags())
        rc, out, err = self.target.sh(program, in_data=netrc or None, timeout=FETCH_TIMEOUT)
        if rc != 0:
            err = _redact.text((err or '') + (out or ''))
            names = ', '.join(_copy_send.cache_uris(caches))
            hint = ''
            if _copy_send.looks_unsigned(err):
                hint = (' (the target does not trust the key the cache is signed with: add '
                        'it to the target\'s trusted-public-keys)')
            elif netrc and any(words in err for words in _REFUSED_LOGIN):
                hint = (' (a cache that asks for a login says so: check the user name and '
                        'password in its address)')
            raise _copy.CopyError(_diagnosis.fault_message(
                host, err, 'while fetching from %s' % names) or
                '%s: fetching %s from %s on the target failed%s: %s' % (
                    host, path, names, hint, err.strip()[-2000:]), err)


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
