# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark 5: wall time of a full deploy against the number of hosts.

A full deploy is ansible-playbook nixdeploy.fleet.deploy of a new version to
the first N hosts (eval, build, copy, activate, confirm), forks N. Sizes that
benchmark 1 already measured on the same fleet are taken from it.
"""

from benchmarks._fleet import full_deploy, load


def run(fleet, sizes, overhead=None, log=print):
    known = dict((row['n'], row['playbook']) for row in (overhead or {}).get('rows', []))
    rows = []
    for size in sizes:
        if size in known:
            cell, source = known[size], 'benchmark 1'
        else:
            fleet.select(size)
            before = load()
            cell, source = full_deploy(fleet, 'playbook', size), 'measured'
            cell['load_before'] = before
            log('  scaling N=%d deploy %.1f s' % (size, cell['deploy']['wall']))
        rows.append({'n': size, 'deploy': cell['deploy'], 'noop': cell['noop'], 'source': source,
                     'per_host': cell['deploy']['wall'] / size})
    return {'rows': rows}


def table(data):
    lines = ['5. Scaling: full deploy (new version) with the playbook, forks = N',
             '%4s %9s %8s %10s %9s  %s' % ('N', 'deploy s', 'cpu s', 's / host', 'no-op s',
                                           'from')]
    lines.append('-' * len(lines[-1]))
    for row in data['rows']:
        lines.append('%4d %9.1f %8.1f %10.2f %9.1f  %s' % (
            row['n'], row['deploy']['wall'], row['deploy']['cpu'], row['per_host'],
            row['noop']['wall'], row['source']))
    return '\n'.join(lines)
