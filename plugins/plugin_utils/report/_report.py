# -*- coding: utf-8 -*-
# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deploy report as a document: its documented JSON form
(docs/report.md, docs/report.schema.json), its totals, reading and writing
it, and the merge of several reports (AWX job slices, one report per slice).

The host records inside come from ``_report_record.Recorder``, which the
callback ``nixdeploy.fleet.report`` feeds; ``assemble`` makes the one report
dict of a run, and ``merge`` one of several.

Standard library only, so the merge also runs as a plain script:
``python3 .../plugins/plugin_utils/report/_report.py merge -o DIR a.json b.json``.
"""

import json
import os
import sys
import time

try:
    from ansible_collections.nixdeploy.fleet.plugins.module_utils import _phases
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._data import write_atomic
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._errors import (
        NixdeployError)
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.common._redact import (
        data as redacted)
    # STATUSES and ordered_hosts live in _report_order, which the page's
    # module (_report_html) imports too: this module and that one stay apart.
    # ordered_hosts is kept here for the callers that read it from this module.
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.report._report_order import (  # noqa: F401 pylint: disable=unused-import
        STATUSES, ordered_hosts)
except ImportError:
    # run as a plain script (the merge command): the sibling files, common's
    # and the phase table
    _HERE = os.path.dirname(os.path.abspath(__file__))
    sys.path[:0] = [_HERE, os.path.join(_HERE, '..', 'common'),
                    os.path.join(_HERE, '..', '..', 'module_utils')]
    import _phases  # pylint: disable=import-error
    from _data import write_atomic  # pylint: disable=import-error
    from _errors import NixdeployError  # pylint: disable=import-error
    from _redact import data as redacted  # pylint: disable=import-error
    from _report_order import STATUSES, ordered_hosts  # noqa: F401  pylint: disable=import-error,unused-import

SCHEMA = 'nixdeploy.fleet/report'
# Bumped only for changes a reader must know about (a key removed or its
# meaning changed); new optional keys keep the version.
SCHEMA_VERSION = 1
BASENAME = 'nixdeploy-report'

# every phase a report can name, in deploy order (activate's sub-phases included)
PHASES = _phases.NAMES + ('confirm', 'checks', 'reboot', 'rollback')


class ReportError(NixdeployError):
    """A report file that cannot be read or merged."""


def json_time(value):
    """A time as a JSON number with millisecond precision, or None."""
    if value is None:
        return None
    try:
        return round(float(value), 3)
    except (TypeError, ValueError):
        return None


def totals(hosts, runs):
    """Run-wide figures: host counts by status from the host records (a
    host Ansible could not reach under ``unreachable`` only, as the PLAY
    RECAP has it), the work done from the runs."""
    out = dict((status, 0) for status in STATUSES)
    out.update(hosts=len(hosts), failed_total=0, unreachable=0, connection_lost=0,
               host_key_unchecked=0, nix_evaluations=0,
               evaluations_from_cache=0, evaluations_reused=0, paths_sent=0, bytes_sent=0,
               closure_diff={'added': 0, 'removed': 0, 'changed': 0, 'size_change_bytes': 0})
    for rec in hosts.values():
        out['connection_lost'] += 1 if rec['connection_lost'] else 0
        # as the PLAY RECAP counts them: a host Ansible could not reach is
        # unreachable (and not also failed), every other failed host failed
        # (a rolled-back one too)
        if rec.get('unreachable'):
            out['unreachable'] += 1
        else:
            out[rec['status']] = out.get(rec['status'], 0) + 1
            out['failed_total'] += 1 if rec.get('failed') else 0
        out['host_key_unchecked'] += 1 if rec.get('host_key_unchecked') else 0
        diff = rec.get('closure_diff') or {}
        for key in ('added', 'removed', 'changed'):
            out['closure_diff'][key] += len(diff.get(key) or [])
        out['closure_diff']['size_change_bytes'] += diff.get('size_change_bytes') or 0
    # an interrupted run: its hosts by what they had reached, as the
    # console's closing line counts them (None: no host was interrupted)
    reached = {}
    for rec in hosts.values():
        state = (rec.get('interrupted') or {}).get('state')
        if state:
            reached[state] = reached.get(state, 0) + 1
    out['interrupted'] = reached or None
    for run in runs:
        for key, value in (run.get('work') or {}).items():
            out[key] = out.get(key, 0) + (value or 0)
    starts = [r['started'] for r in runs if r.get('started') is not None]
    ends = [r['ended'] for r in runs if r.get('ended') is not None]
    out['duration'] = json_time(max(ends) - min(starts)) if starts and ends else None
    return out


def assemble(runs, hosts, duplicates=()):
    """A whole report from its runs and host records, with the credentials
    of every URL in them masked (flake references, cache URIs, Nix's
    messages; ``_redact``): a report is read by more people than the job."""
    runs, hosts = redacted(runs), redacted(hosts)
    versions = sorted(set(r.get('collection_version') for r in runs if r.get('collection_version')))
    return {
        'schema': SCHEMA,
        'schema_version': SCHEMA_VERSION,
        'generated': json_time(time.time()),
        'collection_version': versions[-1] if versions else None,
        'runs': runs,
        'hosts': hosts,
        'duplicates': sorted(duplicates),
        'totals': totals(hosts, runs),
    }


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


def report_names(run_id, keep=True):
    """The names a run's report is written under: its own
    (``nixdeploy-report-<run id>``, when ``keep``) and the latest
    (``nixdeploy-report``), written last so it is the newest file."""
    return (['%s-%s' % (BASENAME, run_id)] if keep else []) + [BASENAME]


def latest_first(paths):
    """The paths ``write`` wrote, the latest names first (what a person
    opens), then the run's own."""
    latest = [p for p in paths if os.path.basename(p).startswith(BASENAME + '.')]
    return latest + [p for p in paths if p not in latest]


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
    """The page's render function; ReportError where this Python cannot
    render it (no jinja2)."""
    try:
        from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.report import (
            _report_html as html)
    except ImportError:
        import _report_html as html  # pylint: disable=import-error
    if html.MISSING:
        raise ReportError(html.MISSING)
    return html.render


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
    renderer = None
    if not args.no_html:
        try:
            renderer = _renderer()
        except ReportError as exc:
            # the page is rendered by jinja2; a bare python3 without it still merges the JSON
            sys.stderr.write('%s; wrote the JSON only\n' % exc)
    paths = write(merged, args.out, html=renderer)
    totals_ = merged['totals']
    sys.stdout.write('%s: %d hosts from %d runs, %d failed (%d rolled back), %d unreachable, '
                     '%d duplicates\n'
                     % (paths[0], totals_['hosts'], len(merged['runs']), totals_['failed_total'],
                        totals_['rolled_back'], totals_['unreachable'], len(merged['duplicates'])))
    return 0


if __name__ == '__main__':
    sys.exit(main())
