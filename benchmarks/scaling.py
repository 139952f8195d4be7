# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark 5: wall time of a full deploy against the number of hosts.

A full deploy is ansible-playbook nixdeploy.fleet.deploy of a new version to
the first N hosts (eval, build, copy, activate, confirm), forks N, beside the
plain script of benchmark 1 (baseline_deploy.sh) on the same hosts: on a
machine whose cores the hosts share, the script's own time grows with N too,
and the playbook's ratio reads against it. Sizes that benchmark 1 already
measured on the same fleet are taken from it.
"""

from benchmarks._fleet import full_deploy, load


def run(fleet, sizes, overhead=None, log=print):
    known = dict((row['n'], row) for row in (overhead or {}).get('rows', []))
    rows = []
    for size in sizes:
        if size in known:
            cell, script = known[size]['playbook'], known[size]['baseline']
            source = 'benchmark 1'
        else:
            fleet.select(size)
            before = load()
            cell, source = full_deploy(fleet, 'playbook', size), 'measured'
            cell['load_before'] = before
            script = full_deploy(fleet, 'baseline', size)
            log('  scaling N=%d deploy %.1f s, script %.1f s'
                % (size, cell['deploy']['wall'], script['deploy']['wall']))
        rows.append({'n': size, 'deploy': cell['deploy'], 'noop': cell['noop'], 'source': source,
                     'per_host': cell['deploy']['wall'] / size, 'script': script['deploy']})
    return {'rows': rows}


def table(data):
    header = ('N', 'deploy s', 'cpu s', 's / host', 'no-op s', 'script s', 'from')
    lines = ['5. Scaling: full deploy (new version) with the playbook, forks = N',
             '%4s %9s %8s %10s %9s %9s  %s' % header]
    lines.append('-' * len(lines[-1]))
    for row in data['rows']:
        script = row.get('script') or {}
        lines.append('%4d %9.1f %8.1f %10.2f %9.1f %9s  %s' % (
            row['n'], row['deploy']['wall'], row['deploy']['cpu'], row['per_host'],
            row['noop']['wall'], '%.1f' % script['wall'] if script else '-', row['source']))
    rows = data['rows']
    if len(rows) > 1 and rows[0]['deploy']['wall']:
        first, last = rows[0], rows[-1]
        line = 'N=%d against N=%d: playbook %.1fx (goal: at most 3x)' % (
            last['n'], first['n'], last['deploy']['wall'] / first['deploy']['wall'])
        if first.get('script') and last.get('script') and first['script']['wall']:
            line += ', the plain script %.1fx' % (last['script']['wall'] / first['script']['wall'])
        lines.append(line)
    return '\n'.join(lines)
