"""The suite's own accounting: the table `make test` ends with.

    python -m tests.suite_cost tests/output/cost-here.json tests/output/cost-current.json

Each FILE is one pytest run's figures (tests/module_cpu.py), or the steps
of `make test` that are not pytest runs (tests/step_cost.py: sanity, lint,
Molecule, the image and the tree), named by what follows ``cost-`` in its
name (`make test`: here, here-checks, faults, faults-checks, current,
here-steps, current-steps). The table has a row per test module, most CPU first, and for each
run the module's CPU seconds (the test process and the children it waited
for), its cgroup's CPU seconds where root could count one (detached
processes too: the labs' sshd and nix-daemon) and its wall seconds; then a
row per run with its totals and the totals of all runs. A FILE that does not
exist (a run that did not get that far) is named and left out.
Standard library only.
"""

import argparse
import json
import os
import sys

OUTSIDE = '(start-up and collection)'


def run_name(path):
    """`cost-here.json` -> `here`."""
    name = os.path.basename(path)
    if name.endswith('.json'):
        name = name[:-len('.json')]
    return name[len('cost-'):] if name.startswith('cost-') else name


def load(paths):
    """[(name, report)] of the files that exist, and the names of those that do not."""
    runs, missing = [], []
    for path in paths:
        if not os.path.isfile(path):
            missing.append(path)
            continue
        with open(path) as f:
            runs.append((run_name(path), json.load(f)))
    return runs, missing


def cpu(row):
    """A row's CPU seconds: the test process's and its waited-for children's."""
    return row.get('cpu', 0.0) + row.get('children', 0.0)


def _short(module):
    """tests.integration.plugins.action.test_nix_eval -> integration/.../test_nix_eval."""
    parts = module.split('.')
    if parts[0] == 'tests':
        parts = parts[1:]
    return '/'.join(parts)


def _cell(row):
    if row is None:
        return '%7s %7s %6s %5s' % ('', '', '', '')
    cgroup = row.get('cgroup')
    runs = row.get('playbooks')
    return '%7.1f %7s %6.0f %5s' % (cpu(row), '' if cgroup is None else '%.1f' % cgroup,
                                    row.get('wall', 0.0), '' if not runs else runs)


def table(runs):
    """The table's lines."""
    modules = {}
    for report in (run[1] for run in runs):
        for module, row in report['modules'].items():
            modules[module] = modules.get(module, 0.0) + cpu(row)
    width = max([len(_short(m)) for m in modules] + [20])
    head = ' ' * width + ''.join('  %-28s' % name for name in (run[0] for run in runs))
    sub = '%-*s' % (width, 'module') + '  %7s %7s %6s %5s' % (
        'CPU s', 'cgroup', 'wall', 'plays') * len(runs)
    lines = [head, sub]
    for module in sorted(modules, key=lambda m: (-modules[m], m)):
        lines.append('%-*s' % (width, _short(module)) + ''.join(
            '  ' + _cell(report['modules'].get(module)) for report in (run[1] for run in runs)))
    lines.append('')
    lines.extend(totals(runs))
    return lines


def totals(runs):
    """A line per run, and one for all of them."""
    lines = []
    all_cpu = all_cgroup = all_wall = 0.0
    tests_all = 0
    for name, report in runs:
        rows = report['modules'].values()
        seconds = sum(cpu(r) for r in rows)
        cgroups = [r['cgroup'] for r in rows if r.get('cgroup') is not None]
        tests = sum(r.get('tests', 0) for r in rows)
        if report.get('steps'):
            what = '%11d steps' % len(rows)
            stack = ''
        else:
            what = '%5d tests in %3d modules, %4d ansible-playbook runs' % (
                tests, sum(1 for r in rows if r.get('tests')),
                sum(r.get('playbooks', 0) for r in rows))
            stack = ' (Python %s, ansible-core %s)' % (report.get('python'),
                                                       report.get('ansible_core'))
        lines.append('%-8s %s: %7.0f CPU s (%.1f CPU min)%s, %6.0f s wall%s' % (
            name, what, seconds, seconds / 60,
            ', cgroups %.0f s' % sum(cgroups) if cgroups else '', report['wall'], stack))
        all_cpu += seconds
        all_cgroup += sum(cgroups)
        all_wall += report['wall']
        tests_all += tests
    lines.append('%-8s %5d tests: %7.0f CPU s (%.1f CPU min)%s; %.0f s of the runs\' wall '
                 'time, added' % ('all', tests_all, all_cpu, all_cpu / 60,
                                  ', cgroups %.0f s' % all_cgroup if all_cgroup else '',
                                  all_wall))
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('files', nargs='+', metavar='FILE')
    args = parser.parse_args(argv)
    runs, missing = load(args.files)
    print('== the suite\'s cost by test module and run (CPU s: the test process and the '
          'programs it ran; cgroup: its detached ones too; wall s; plays: the '
          'ansible-playbook runs it started)')
    for path in missing:
        print('   (no figures: %s)' % path)
    if runs:
        print('\n'.join(table(runs)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
