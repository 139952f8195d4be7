# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy report's host records, from the results of the collection's actions.

The callback ``nixdeploy.fleet.report`` feeds task starts and results into a
``Recorder`` (one ``HostLog`` per host) and turns it into one report dict at
the end of the run (``_report.assemble``). Phases and outcomes are read from
result keys (``phase``, ``rolled_back``, ``connection_lost``, ``phases``),
never from task names or message text.
"""

import time

from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import to_int
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.report import _interrupted
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.report._report import (
    assemble, json_time)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.report._report_outcome import (
    ROLLBACK_MARK, outcome_record)
# read as _report_record.mark_rollback and rolls_back by the callbacks
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.report._report_outcome import (  # noqa: F401 pylint: disable=unused-import
    mark_rollback, rolls_back)
from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._outcome import (
    HostOutcome, action_phase, known_before)

COPY_KEYS = ('paths_sent', 'bytes_sent', 'paths_missing', 'bytes_missing', 'closure_paths',
             'closure_bytes', 'copied_from')
MESSAGE_LIMIT = 4000      # characters of an error message kept (Nix's errors can be long)
DIFF_LINES_LIMIT = 300    # lines of `nix store diff-closures` kept per host


def _text(value, limit=MESSAGE_LIMIT):
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        value = '\n'.join(u'%s' % v for v in value)
    text = u'%s' % (value,)
    return text if len(text) <= limit else text[:limit] + u'\n[... %d characters cut]' % (
        len(text) - limit)


def _strip_host(message, host):
    """Every action puts ``host: `` in front of its messages; the report
    names the host already."""
    if message and message.startswith(host + ': '):
        return message[len(host) + 2:]
    return message


def _task_outcome(status, result):
    if status == 'failed':
        return 'rolled_back' if result.get('rolled_back') else 'failed'
    if status in ('unreachable', 'skipped'):
        return status
    return 'changed' if result.get('changed') else 'ok'


class HostLog:
    """What one host did, as its tasks start and their results arrive."""

    def __init__(self, host):
        self.host = host
        self.starts = {}       # task uuid -> start time
        self.running = None    # (phase, start time) of its task under way
        self.phases = []       # [{name, start, end, outcome, task}]
        self.results = {}      # phase -> (status, result) of the latest task of it
        self.failure = None    # (phase, status, result) of the first failure
        self.other = None      # (task name, status, result): a failure outside the deploy tasks
        # deployed with host key checking explicitly turned off (copy, activate)
        self.host_key_unchecked = False
        # the same outcome text as the summary line the nixdeploy.fleet.summary callback prints
        self.outcome = HostOutcome(host)

    def start(self, task_uuid, when, phase=None):
        self.starts[task_uuid] = when
        self.running = (phase, when) if phase else None

    def result(self, task_uuid, phase, status, result, when, task_name=None):
        start = self.starts.pop(task_uuid, None)
        if phase is not None:
            self.running = None
        if phase is None:
            if status in ('failed', 'unreachable') and self.other is None:
                self.other = (task_name, status, result)
            return
        self.results[phase] = (status, result)
        self.outcome.add(phase, result, status)
        self.host_key_unchecked = self.host_key_unchecked or result.get('host_key_unchecked') is True
        if status in ('failed', 'unreachable') and self.failure is None:
            self.failure = (result.get('phase') or phase, status, result)
        subphases = result.get('phases') if phase == 'activate' else None
        if isinstance(subphases, list) and subphases:
            # the activate task's own steps (activate, confirm, checks, reboot, rollback)
            for sub in subphases:
                if isinstance(sub, dict) and sub.get('name'):
                    self.phases.append({'name': str(sub['name']), 'start': json_time(sub.get('start')),
                                        'end': json_time(sub.get('end')),
                                        'outcome': str(sub.get('outcome') or 'ok'),
                                        'task': task_name})
            return
        self.phases.append({'name': phase, 'start': json_time(start if start is not None else when),
                            'end': json_time(when), 'outcome': _task_outcome(status, result),
                            'task': task_name})

    def get(self, phase):
        return (self.results.get(phase) or (None, {}))[1]

    def record(self, run_id, check_mode=False, interrupted=None):
        """The host's record as the schema has it; ``interrupted`` (the
        run was: {at, base_dir}) adds what the host had reached then."""
        evaluated, activate, copied = self.get('eval'), self.get('activate'), self.get('copy')
        previous = activate.get('previous') or {}
        new = activate.get('new') or {}
        # the activation's word, else the generation the login probe read
        before = {'generation': to_int(known_before(activate, evaluated)),
                  'path': previous.get('path')}
        rec = {
            'host': self.host,
            'run': run_id,
            'platform': activate.get('platform') or evaluated.get('platform'),
            'system': evaluated.get('system'),
            'status': None,
            'failed': False,
            'rolled_back': False,
            'connection_lost': False,
            'unreachable': False,
            'host_key_unchecked': self.host_key_unchecked,
            'failed_phase': None,
            'rollback_reason': None,
            'message': None,
            'summary': outcome_record(self.outcome, check_mode).get('outcome')
            if self.results else None,
            'store_path': evaluated.get('out_path') or self.get('build').get('out_path')
            or new.get('path'),
            'drv_path': evaluated.get('drv_path'),
            'flake': evaluated.get('flake'),
            'eval': None,
            'generation': {'before': before, 'after': dict(before), 'attempted': None},
            'copy': None,
            'closure_diff': None,
            'phases': [],
            'start': None,
            'end': None,
            'duration': None,
            'interrupted': None,
        }
        if interrupted is not None:
            reached = _interrupted.host_record(self.host, self.outcome, self.running,
                                               interrupted.get('base_dir'), check_mode,
                                               interrupted['at'])
            rec.update(summary=reached['outcome'], interrupted=reached['interrupted'])
        rec['eval'] = _eval_part(evaluated)
        rec['copy'] = _copy_part(copied, check_mode)
        rec['closure_diff'] = closure_diff(activate.get('closure_diff'))
        self._outcome(rec, activate, new, check_mode)
        rec.update(self._timeline())
        return rec

    def _timeline(self):
        """The record's ``phases`` (each with its duration), in the order
        they started, and the host's ``start``, ``end`` and ``duration``."""
        phases = sorted(self.phases, key=lambda p: (p['start'] is None, p['start'] or 0))
        found = {'phases': [dict(p, duration=json_time(p['end'] - p['start'])
                                 if p['start'] is not None and p['end'] is not None else None)
                            for p in phases]}
        starts = [p['start'] for p in phases if p['start'] is not None]
        ends = [p['end'] for p in phases if p['end'] is not None]
        if starts and ends:
            found['start'], found['end'] = min(starts), max(ends)
            found['duration'] = json_time(found['end'] - found['start'])
        return found

    def _outcome(self, rec, activate, new, check_mode):
        failure = self.failure
        if failure is None and self.other is not None:
            _task, status, result = self.other
            failure = (None, status, result)
        if failure is not None:
            phase, status, result = failure
            rolled_back = bool(result.get('rolled_back'))
            rec.update(status='rolled_back' if rolled_back else 'failed', failed=True,
                       rolled_back=rolled_back, failed_phase=phase,
                       # a host the login probe never reached lost no connection
                       connection_lost=bool(result.get('connection_lost'))
                       or (status == 'unreachable' and not result.get('unreachable_at')),
                       # Ansible's own unreachable (the recap's column), not
                       # a failed result that says it lost the connection
                       unreachable=status == 'unreachable',
                       rollback_reason=result.get('rollback_reason') if rolled_back else None,
                       message=_strip_host(_text(result.get('msg')), self.host))
            if rolled_back:
                rec['generation']['attempted'] = {'generation': to_int(new.get('generation')),
                                                  'path': new.get('path')}
            elif phase in ('activate', 'confirm', 'checks', 'reboot') and new.get('path'):
                # not rolled back: the host may well run the new system now
                rec['generation']['after'] = {'generation': to_int(new.get('generation')),
                                              'path': new.get('path')}
            return
        if not activate:
            rec['status'] = 'incomplete'
            return
        changed = bool(activate.get('changed'))
        rec['status'] = 'changed' if changed else 'unchanged'
        if changed and not check_mode and new.get('path'):
            rec['generation']['after'] = {'generation': to_int(new.get('generation')),
                                          'path': new.get('path')}


def closure_diff(diff):
    """The closure difference as the schema has it, or None."""
    if not isinstance(diff, dict):
        return None
    lines = [u'%s' % line for line in (diff.get('lines') or [])]
    out = {
        'added': sorted(u'%s' % p for p in (diff.get('added') or [])),
        'removed': sorted(u'%s' % p for p in (diff.get('removed') or [])),
        'changed': sorted(u'%s' % p for p in (diff.get('changed') or [])),
        'size_change_bytes': to_int(diff.get('size_change_bytes')),
        'lines': lines[:DIFF_LINES_LIMIT],
    }
    if len(lines) > DIFF_LINES_LIMIT:
        out['lines'].append(u'[... %d lines cut]' % (len(lines) - DIFF_LINES_LIMIT))
    return out


class Recorder:
    """Every host of one run. ``clock`` is injectable for tests."""

    def __init__(self, clock=time.time):
        self.clock = clock
        self.started = clock()
        self.hosts = {}

    def log(self, host):
        if host not in self.hosts:
            self.hosts[host] = HostLog(host)
        return self.hosts[host]

    def task_start(self, host, task_uuid, action, when=None):
        phase = action_phase(action)
        if phase:
            self.log(host).start(task_uuid, self.clock() if when is None else when, phase)

    def task_result(self, host, task_uuid, action, status, result, task_name=None, when=None):
        phase = action_phase(action)
        if phase is None and status not in ('failed', 'unreachable'):
            return
        if (result or {}).get('stopped'):
            # its batch never started (nix_max_fail_percentage): not deployed,
            # not in the report unless an earlier run of it is
            if host in self.hosts and not self.hosts[host].results:
                del self.hosts[host]
            return
        when = self.clock() if when is None else when
        self.log(host).result(task_uuid, phase, status, dict(result or {}), when, task_name)

    def deployed(self):
        """Whether any task of the collection ran: a play without one (the
        callback enabled for every playbook of a project) gets no report."""
        return any(log.results for log in self.hosts.values())

    def rollback(self):
        """Whether this run rolled hosts back (the rollback role's nix_activate)."""
        return any(log.get('activate').get(ROLLBACK_MARK) for log in self.hosts.values())

    def _run(self, run, check_mode, state):
        run = dict(run)
        run.setdefault('started', json_time(self.started))
        run.setdefault('ended', json_time(self.clock()))
        run['duration'] = json_time(max(run['ended'] - run['started'], 0))
        run['check_mode'] = bool(check_mode)
        run['mode'] = run_mode(self.rollback(), check_mode)
        run['state'] = state
        return run

    def empty(self, run, state, check_mode=False):
        """The report of a run with no host to show: ``state`` ``running`` (written
        when it starts, so the latest report never looks like an older run's
        result) or ``no_hosts`` (it ended without deploying any host)."""
        run = self._run(run, check_mode, state)
        run['hosts'] = []
        run['work'] = work({})
        return assemble([run], {})

    def build(self, run, check_mode=False, interrupted=None):
        """The report of this run. ``run``: the run's metadata (see
        docs/report.md); ``interrupted``: {signal, at, base_dir} of a run
        stopped by a signal (its state ``interrupted``, each host's record
        saying what it had reached)."""
        run = self._run(run, check_mode, 'interrupted' if interrupted else 'done')
        run['interrupted_by'] = interrupted['signal'] if interrupted else None
        hosts = {}
        for name in sorted(self.hosts):
            hosts[name] = self.hosts[name].record(run['id'], check_mode, interrupted)
        run['hosts'] = sorted(hosts)
        run['work'] = work(hosts)
        return assemble([run], hosts)


def run_mode(rollback, check_mode):
    """What a run was: ``deploy``, ``check`` (a deploy in check mode),
    ``rollback`` or ``rollback-check``."""
    if rollback:
        return 'rollback-check' if check_mode else 'rollback'
    return 'check' if check_mode else 'deploy'


def _eval_part(evaluated):
    """The record's ``eval`` from nix_eval's result (None: it said nothing
    of its batch)."""
    if 'evaluated_here' not in evaluated:
        return None
    return {'evaluated_here': bool(evaluated.get('evaluated_here')),
            'nix_processes': to_int(evaluated.get('nix_processes')),
            'batch_hosts': to_int(evaluated.get('batch_hosts')),
            # answered by the evaluation cache, not by Nix
            'from_cache': evaluated.get('from_cache') is True,
            'answered': evaluated.get('answered')
            if evaluated.get('answered') in ANSWERED else None,
            'reused_from': reused_from(evaluated.get('reused'))}


def _copy_part(copied, check_mode):
    """The record's ``copy`` from nix_copy_closure's result (None: no copy
    figures)."""
    if not copied or not any(key in copied for key in COPY_KEYS):
        return None
    part = dict((key, copied.get(key)) for key in COPY_KEYS)
    if check_mode:
        # nothing was sent: what a real run would send is what is missing
        part.update(paths_sent=0, bytes_sent=0)
    return part


def flake_record(ref, metadata):
    """What the report keeps of a flake: ``metadata`` is the provenance its
    evaluation pinned (``flake/_source``), or ``nix flake metadata --json`` as
    ``_nix_output.flake_metadata`` reads it (the same keys), or None."""
    metadata = metadata if isinstance(metadata, dict) else {}
    return {
        'ref': ref,
        'url': metadata.get('url'),
        'revision': metadata.get('revision'),
        # a git flake with uncommitted changes has no revision to name
        'dirty': metadata.get('dirty'),
        'nar_hash': metadata.get('nar_hash'),
        'last_modified': to_int(metadata.get('last_modified')),
        # Nix 2.18+: the commit a dirty tree's changes are on
        'dirty_revision': metadata.get('dirty_revision'),
        # the pinned reference the run evaluated (a dirty tree's snapshot)
        'evaluated': metadata.get('evaluated'),
    }


# how a host's evaluation was answered (nix_eval's ``answered``)
ANSWERED = ('evaluated', 'cached', 'reused')


def reused_from(reused):
    """The content a reused answer was evaluated from, as the report keeps
    it ({revision, dirty, nar_hash, last_modified, checked}), or None."""
    if not isinstance(reused, dict) or not isinstance(reused.get('from'), dict):
        return None
    origin = reused['from']
    text = dict((key, origin.get(key) if isinstance(origin.get(key), str) else None)
                for key in ('revision', 'nar_hash'))
    text['dirty'] = origin.get('dirty') is True
    text['last_modified'] = to_int(origin.get('last_modified'))
    text['checked'] = to_int(reused.get('checked'))
    return text


def work(hosts):
    """What one run did, summed over its hosts: a merge adds these up per run,
    so a host deployed by two runs counts both times."""
    out = {'nix_evaluations': 0, 'paths_sent': 0, 'bytes_sent': 0, 'evaluations_from_cache': 0,
           'evaluations_reused': 0}
    for rec in hosts.values():
        copied = rec.get('copy') or {}
        out['paths_sent'] += to_int(copied.get('paths_sent')) or 0
        out['bytes_sent'] += to_int(copied.get('bytes_sent')) or 0
        evaluated = rec.get('eval') or {}
        if evaluated.get('evaluated_here'):
            out['nix_evaluations'] += evaluated.get('nix_processes') or 0
        # as the summary's closing line counts them: a reused answer is
        # reused, not also cached (both come from the evaluation cache)
        answered = evaluated.get('answered')
        if answered == 'cached' or (answered is None and evaluated.get('from_cache')):
            out['evaluations_from_cache'] += 1
        if evaluated.get('answered') == 'reused':
            out['evaluations_reused'] += 1
    return out
