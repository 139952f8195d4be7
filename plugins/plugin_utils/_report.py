# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy report: per-host records from the results of the collection's
actions, the documented JSON form (docs/report.md, docs/report.schema.json),
and the merge of several reports (AWX job slices, one report per slice).

The callback ``nixdeploy.fleet.report`` feeds task starts and results into a
``Recorder`` and turns it into one report dict at the end of the run. Phases
and outcomes are read from result keys (``phase``, ``rolled_back``,
``connection_lost``, ``phases``), never from task names or message text.

Standard library only, so the merge also runs as a plain script:
``python3 .../plugins/plugin_utils/_report.py merge -o DIR a.json b.json``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import sys
import time

try:
    from ansible_collections.nixdeploy.fleet.plugins.module_utils._data import (
        to_int, write_atomic)
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils._outcome import (
        HostOutcome, action_phase)
except ImportError:
    # run as a plain script (the merge command): the sibling files and module_utils'
    _HERE = os.path.dirname(os.path.abspath(__file__))
    sys.path[:0] = [_HERE, os.path.join(_HERE, '..', 'module_utils')]
    from _outcome import HostOutcome, action_phase  # pylint: disable=import-error
    from _data import to_int, write_atomic  # pylint: disable=import-error

SCHEMA = 'nixdeploy.fleet/report'
# Bumped only for changes a reader must know about (a key removed or its
# meaning changed); new optional keys keep the version.
SCHEMA_VERSION = 1
BASENAME = 'nixdeploy-report'

# every phase a report can name, in deploy order (activate's sub-phases included)
PHASES = ('eval', 'build', 'copy', 'keys', 'activate', 'confirm', 'checks', 'reboot',
          'rollback')
# host statuses, in the order people read them: the hosts that need a look first
STATUSES = ('failed', 'rolled_back', 'incomplete', 'changed', 'unchanged')

COPY_KEYS = ('paths_sent', 'bytes_sent', 'paths_missing', 'bytes_missing', 'closure_paths',
             'closure_bytes', 'copied_from')
MESSAGE_LIMIT = 4000      # characters of an error message kept (Nix's errors can be long)
DIFF_LINES_LIMIT = 300    # lines of `nix store diff-closures` kept per host


class ReportError(Exception):
    """A report file that cannot be read or merged."""


def _num(value):
    """A time as a JSON number with millisecond precision, or None."""
    if value is None:
        return None
    try:
        return round(float(value), 3)
    except (TypeError, ValueError):
        return None


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
        self.phases = []       # [{name, start, end, outcome, task}]
        self.results = {}      # phase -> (status, result) of the latest task of it
        self.failure = None    # (phase, status, result) of the first failure
        self.other = None      # (task name, status, result): a failure outside the deploy tasks
        # the same outcome text as the summary line the nixdeploy.fleet.summary callback prints
        self.outcome = HostOutcome(host)

    def start(self, task_uuid, when):
        self.starts[task_uuid] = when

    def result(self, task_uuid, phase, status, result, when, task_name=None):
        start = self.starts.pop(task_uuid, None)
        if phase is None:
            if status in ('failed', 'unreachable') and self.other is None:
                self.other = (task_name, status, result)
            return
        self.results[phase] = (status, result)
        self.outcome.add(phase, result, status)
        if status in ('failed', 'unreachable') and self.failure is None:
            self.failure = (result.get('phase') or phase, status, result)
        subphases = result.get('phases') if phase == 'activate' else None
        if isinstance(subphases, list) and subphases:
            # the activate task's own steps (activate, confirm, checks, reboot, rollback)
            for sub in subphases:
                if isinstance(sub, dict) and sub.get('name'):
                    self.phases.append({'name': str(sub['name']), 'start': _num(sub.get('start')),
                                        'end': _num(sub.get('end')),
                                        'outcome': str(sub.get('outcome') or 'ok'),
                                        'task': task_name})
            return
        self.phases.append({'name': phase, 'start': _num(start if start is not None else when),
                            'end': _num(when), 'outcome': _task_outcome(status, result),
                            'task': task_name})

    def get(self, phase):
        return (self.results.get(phase) or (None, {}))[1]

    def record(self, run_id, check_mode=False):
        """The host's record as the schema has it."""
        evaluated, activate, copied = self.get('eval'), self.get('activate'), self.get('copy')
        previous = activate.get('previous') or {}
        new = activate.get('new') or {}
        before = {'generation': to_int(previous.get('generation')), 'path': previous.get('path')}
        rec = {
            'host': self.host,
            'run': run_id,
            'platform': activate.get('platform') or evaluated.get('platform'),
            'system': evaluated.get('system'),
            'status': None,
            'failed': False,
            'rolled_back': False,
            'connection_lost': False,
            'failed_phase': None,
            'rollback_reason': None,
            'message': None,
            'summary': self.outcome.record(check_mode).get('outcome') if self.results else None,
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
        }
        if 'evaluated_here' in evaluated:
            rec['eval'] = {'evaluated_here': bool(evaluated.get('evaluated_here')),
                           'nix_processes': to_int(evaluated.get('nix_processes')),
                           'batch_hosts': to_int(evaluated.get('batch_hosts'))}
        if copied and any(key in copied for key in COPY_KEYS):
            rec['copy'] = dict((key, copied.get(key)) for key in COPY_KEYS)
        rec['closure_diff'] = closure_diff(activate.get('closure_diff'))
        self._outcome(rec, activate, new, check_mode)
        phases = sorted(self.phases, key=lambda p: (p['start'] is None, p['start'] or 0))
        rec['phases'] = [dict(p, duration=_num(p['end'] - p['start'])
                              if p['start'] is not None and p['end'] is not None else None)
                         for p in phases]
        starts = [p['start'] for p in phases if p['start'] is not None]
        ends = [p['end'] for p in phases if p['end'] is not None]
        if starts and ends:
            rec['start'], rec['end'] = min(starts), max(ends)
            rec['duration'] = _num(rec['end'] - rec['start'])
        return rec

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
                       connection_lost=bool(result.get('connection_lost'))
                       or status == 'unreachable',
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
        if action_phase(action):
            self.log(host).start(task_uuid, self.clock() if when is None else when)

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

    def build(self, run, check_mode=False):
        """The report of this run. ``run``: the run's metadata (see docs/report.md)."""
        run = dict(run)
        run.setdefault('started', _num(self.started))
        run.setdefault('ended', _num(self.clock()))
        run['duration'] = _num(run['ended'] - run['started'])
        run['check_mode'] = bool(check_mode)
        hosts = {}
        for name in sorted(self.hosts):
            hosts[name] = self.hosts[name].record(run['id'], check_mode)
        run['hosts'] = sorted(hosts)
        run['work'] = work(hosts)
        return assemble([run], hosts)


def flake_record(ref, metadata):
    """What the report keeps of a flake's metadata: ``metadata`` is ``nix
    flake metadata --json`` as ``_nix_output.flake_metadata`` reads it (the
    same keys from every Nix version), or None when unknown."""
    metadata = metadata if isinstance(metadata, dict) else {}
    return {
        'ref': ref,
        'url': metadata.get('url'),
        'revision': metadata.get('revision'),
        # a git flake with uncommitted changes has no revision to name
        'dirty': metadata.get('dirty'),
        'nar_hash': metadata.get('nar_hash'),
        'last_modified': to_int(metadata.get('last_modified')),
    }


def work(hosts):
    """What one run did, summed over its hosts: a merge adds these up per run,
    so a host deployed by two runs counts both times."""
    out = {'nix_evaluations': 0, 'paths_sent': 0, 'bytes_sent': 0}
    for rec in hosts.values():
        copied = rec.get('copy') or {}
        out['paths_sent'] += to_int(copied.get('paths_sent')) or 0
        out['bytes_sent'] += to_int(copied.get('bytes_sent')) or 0
        evaluated = rec.get('eval') or {}
        if evaluated.get('evaluated_here'):
            out['nix_evaluations'] += evaluated.get('nix_processes') or 0
    return out


def totals(hosts, runs):
    """Run-wide figures: host counts by status from the host records, the work
    done from the runs."""
    out = dict((status, 0) for status in STATUSES)
    out.update(hosts=len(hosts), connection_lost=0, nix_evaluations=0, paths_sent=0,
               bytes_sent=0, closure_diff={'added': 0, 'removed': 0, 'changed': 0,
                                           'size_change_bytes': 0})
    for rec in hosts.values():
        out[rec['status']] = out.get(rec['status'], 0) + 1
        out['connection_lost'] += 1 if rec['connection_lost'] else 0
        diff = rec.get('closure_diff') or {}
        for key in ('added', 'removed', 'changed'):
            out['closure_diff'][key] += len(diff.get(key) or [])
        out['closure_diff']['size_change_bytes'] += diff.get('size_change_bytes') or 0
    for run in runs:
        for key, value in (run.get('work') or {}).items():
            out[key] = out.get(key, 0) + (value or 0)
    starts = [r['started'] for r in runs if r.get('started') is not None]
    ends = [r['ended'] for r in runs if r.get('ended') is not None]
    out['duration'] = _num(max(ends) - min(starts)) if starts and ends else None
    return out


def assemble(runs, hosts, duplicates=()):
    """A whole report from its runs and host records."""
    versions = sorted(set(r.get('collection_version') for r in runs if r.get('collection_version')))
    return {
        'schema': SCHEMA,
        'schema_version': SCHEMA_VERSION,
        'generated': _num(time.time()),
        'collection_version': versions[-1] if versions else None,
        'runs': runs,
        'hosts': hosts,
        'duplicates': sorted(duplicates),
        'totals': totals(hosts, runs),
    }


def ordered_hosts(report):
    """The host records, the ones that need a look first (failed, rolled
    back), then by name."""
    rank = dict((status, idx) for idx, status in enumerate(STATUSES))
    return sorted(report['hosts'].values(),
                  key=lambda rec: (rank.get(rec['status'], len(STATUSES)), rec['host']))


def check(report, where='report'):
    """Raise ReportError unless ``report`` is a report this code can read."""
    if not isinstance(report, dict) or report.get('schema') != SCHEMA:
        raise ReportError('%s: not a nixdeploy report (schema %r)'
                          % (where, report.get('schema') if isinstance(report, dict) else None))
    if report.get('schema_version') != SCHEMA_VERSION:
        raise ReportError('%s: report schema version %r, this collection reads %d'
                          % (where, report.get('schema_version'), SCHEMA_VERSION))
    return report


def load(path):
    try:
        with open(path) as handle:
            report = json.load(handle)
    except (OSError, IOError, ValueError) as exc:
        raise ReportError('%s: %s' % (path, exc))
    return check(report, path)


def merge(reports):
    """One report from several (the slices of one AWX job, or runs one
    after another). A host in more than one keeps its latest record and is
    listed in ``duplicates``."""
    if not reports:
        raise ReportError('nothing to merge')
    runs, hosts, duplicates = [], {}, set()
    for report in reports:
        check(report)
        runs.extend(report['runs'])
        for name, rec in report['hosts'].items():
            if name in hosts:
                duplicates.add(name)
                if (rec.get('end') or 0) < (hosts[name].get('end') or 0):
                    continue
            hosts[name] = rec
    runs.sort(key=lambda r: (r.get('started') or 0, r.get('id') or ''))
    duplicates.update(*[r.get('duplicates') or () for r in reports])
    return assemble(runs, dict(sorted(hosts.items())), duplicates)


def write(report, directory, names=(BASENAME,), html=None):
    """Write ``<name>.json`` (and ``<name>.html`` when ``html`` renders one)
    for each name into ``directory``; returns the paths written."""
    if not os.path.isdir(directory):
        os.makedirs(directory)
    text = json.dumps(report, indent=2, sort_keys=True, default=str) + '\n'
    page = html(report) if html is not None else None
    written = []
    for name in names:
        path = os.path.join(directory, name + '.json')
        write_atomic(path, text, 0o644)
        written.append(path)
        if page is not None:
            write_atomic(os.path.join(directory, name + '.html'), page, 0o644)
            written.append(os.path.join(directory, name + '.html'))
    return written


def _renderer():
    try:
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils._report_html import render
    except ImportError:
        from _report_html import render  # pylint: disable=import-error
    return render


def main(argv=None):
    """``merge [-o DIR] [--no-html] REPORT.json...``: write the merged report."""
    import argparse
    parser = argparse.ArgumentParser(prog='_report.py', description='Merge nixdeploy reports.')
    sub = parser.add_subparsers(dest='command')
    merging = sub.add_parser('merge', help='merge reports (e.g. of AWX job slices) into one')
    merging.add_argument('reports', nargs='+', metavar='REPORT.json')
    merging.add_argument('-o', '--out', default='.', help='folder to write %s.json/.html to'
                         % BASENAME)
    merging.add_argument('--no-html', action='store_true', help='write the JSON only')
    args = parser.parse_args(argv)
    if args.command != 'merge':
        parser.print_help()
        return 2
    try:
        merged = merge([load(path) for path in args.reports])
    except ReportError as exc:
        sys.stderr.write('%s\n' % exc)
        return 1
    paths = write(merged, args.out, html=None if args.no_html else _renderer())
    totals_ = merged['totals']
    sys.stdout.write('%s: %d hosts from %d runs, %d failed, %d rolled back, %d duplicates\n'
                     % (paths[0], totals_['hosts'], len(merged['runs']), totals_['failed'],
                        totals_['rolled_back'], len(merged['duplicates'])))
    return 0


if __name__ == '__main__':
    sys.exit(main())
