# Copyright (c) nixdeploy.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark 10's floor: what ansible-core alone spends a host as the fleet grows.

    python -m benchmarks.core_growth [--hosts 250,1000] [--repeat 3] [--payload BYTES]
                                     [--strategies host_pinned,linear] [--output FILE]

The deploy role runs four forked tasks a host (eval, build, copy, activate)
and one ``meta: end_play`` with a ``when``. This plays the same shape with
nothing of the collection in it: four ``ansible.builtin.set_fact`` tasks
(each one a forked worker on the controller, no connection, no module
process) and the ``meta`` task, on N hosts of a static inventory
(``ansible_connection=local``), forks 50, on each strategy asked; with
``--payload``, each task's fact carries that many bytes more of store
paths (ansible-playbook keeps every host's registered results in its heap;
the collection's four hold 1-2 KB each as JSON). What grows a host from
the smallest N to the largest here is ansible-core's own
(its strategy loop, the fork of a worker from a heap that grows with the
inventory, the results it reads back), which any playbook of that many
tasks pays, the collection's too.

Per run: CPU of ansible-playbook's main process (user and system apart)
and of its workers (every child process), from ``getrusage`` in the
process itself (the run is ``ansible-playbook``'s own entry point, started
under a small wrapper). The sizes are run ``--repeat`` times, their order
alternated; the growth is that of the medians (``_scale_growth``). No
root, no lab, no Nix.
"""

import argparse
import json
import os
import resource
import runpy
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

# pylint: disable=wrong-import-position
from benchmarks import _scale_growth  # noqa: E402

SIZES = (250, 1000)
FORKS = 50
PARTS = ('main_user', 'main_sys', 'workers', 'all')
PLAY = '''- name: The deploy role's shape, without the collection
  hosts: fleet
  gather_facts: false
  strategy: %(strategy)s
  tasks:
    - name: Evaluate
      ansible.builtin.set_fact:
        deploy_eval: {stopped: false, drv_path: /nix/store/x.drv, payload: %(payload)s}
    - name: End the play when the previous batch failed too many hosts
      ansible.builtin.meta: end_play
      when: deploy_eval.stopped | default(false)
    - name: Build
      ansible.builtin.set_fact:
        deploy_build: {changed: true, payload: %(payload)s}
    - name: Copy
      ansible.builtin.set_fact:
        deploy_copy: {changed: true, payload: %(payload)s}
    - name: Activate
      ansible.builtin.set_fact:
        deploy_activate: {changed: true, payload: %(payload)s}
'''


def paths(size):
    """About ``size`` bytes of store paths (64 bytes each), as a result's
    lists of paths hold them: many small strings, not one large one."""
    return ['/nix/store/%032d-system-path-%d' % (number, number % 10)
            for number in range(size // 64)]


def write_inventory(path, size):
    with open(path, 'w') as handle:
        handle.write('[fleet]\n')
        for number in range(1, size + 1):
            handle.write('h%d ansible_connection=local\n' % number)


def _measured(argv, out):
    """In the child: run ansible-playbook's own entry point, then write
    this process's and its children's CPU to ``out``."""
    sys.argv = ['ansible-playbook'] + argv
    code = 0
    try:
        runpy.run_path(os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'),
                       run_name='__main__')
    except SystemExit as exc:
        code = exc.code or 0
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out, 'w') as handle:
        json.dump({'rc': code, 'main_user': own.ru_utime, 'main_sys': own.ru_stime,
                   'workers': children.ru_utime + children.ru_stime}, handle)
    return code


def play_once(workdir, size, strategy, forks=FORKS, payload=0):
    """One run: {main_user, main_sys, workers, all} CPU seconds a host."""
    inventory = os.path.join(workdir, 'hosts-%d.ini' % size)
    if not os.path.exists(inventory):
        write_inventory(inventory, size)
    playbook = os.path.join(workdir, 'play-%s.yml' % strategy)
    with open(playbook, 'w') as handle:
        handle.write(PLAY % {'strategy': strategy, 'payload': json.dumps(paths(payload))})
    out = os.path.join(workdir, 'cpu.json')
    env = dict(os.environ, ANSIBLE_FORKS=str(forks), ANSIBLE_HOST_KEY_CHECKING='True',
               ANSIBLE_CONFIG=os.path.join(workdir, 'ansible.cfg'),
               ANSIBLE_LOCAL_TEMP=os.path.join(workdir, 'tmp'))
    with open(env['ANSIBLE_CONFIG'], 'w') as handle:
        handle.write('[defaults]\n')
    proc = subprocess.run([sys.executable, '-m', 'benchmarks.core_growth', '--measure', out,
                           '--', '-i', inventory, playbook], cwd=REPO, env=env, check=False,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          universal_newlines=True)
    with open(out) as handle:
        found = json.load(handle)
    if proc.returncode != 0 or found['rc'] != 0:
        raise RuntimeError('the play of %d hosts (%s) failed: %s' % (
            size, strategy, proc.stderr[-2000:]))
    found['all'] = found['main_user'] + found['main_sys'] + found['workers']
    return dict((part, found[part] / float(size)) for part in PARTS)


def run(sizes, strategies, repeat, payload=0, log=print):
    rows = []
    with tempfile.TemporaryDirectory(prefix='nixdeploy-core-growth-') as workdir:
        for number in range(repeat):
            for size, order in _scale_growth.round_order(sizes, strategies, number):
                row = {'n': size, 'round': number}
                for strategy in order:
                    cpu = play_once(workdir, size, strategy, payload=payload)
                    row[strategy] = dict((part, {'cpu': cpu[part] * size}) for part in PARTS)
                    log('  core N=%d %-11s main %.1f + %.1f ms, workers %.1f ms a host' % (
                        size, strategy, 1000 * cpu['main_user'], 1000 * cpu['main_sys'],
                        1000 * cpu['workers']))
                rows.append(row)
    return {'rows': rows, 'repeat': repeat, 'forks': FORKS, 'payload': payload,
            'growth': _scale_growth.growth(rows, strategies, PARTS)}


def table(data):
    found = data['growth']
    first = next(iter(found.values()))['all']
    low, high = first['low'], first['high']
    lines = ['10a. ansible-core alone: 4 set_fact tasks (%d bytes more each) and a meta a host, '
             'forks %d; CPU a host (ms), median of %s, N=%d -> N=%d; each round\'s growth in '
             'brackets' % (data.get('payload', 0), data['forks'],
                           _scale_growth.rounds_text(data['repeat']), low, high)]
    for strategy, cells in found.items():
        lines.append('  %s' % strategy)
        for part in PARTS:
            cell = cells[part]
            lines.append('    %-9s %6.1f -> %6.1f  %7s  [%s]' % (
                part, 1000 * cell['medians'][low], 1000 * cell['medians'][high],
                _scale_growth.percent(cell['growth']),
                ', '.join(_scale_growth.percent(g) for g in cell['rounds'])))
    return '\n'.join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ['--measure']:
        return _measured(argv[3:], argv[1])
    parser = argparse.ArgumentParser(prog='python -m benchmarks.core_growth', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--hosts', default=','.join(str(s) for s in SIZES),
                        help='comma list of fleet sizes (default 250,1000)')
    parser.add_argument('--repeat', type=int, default=3, help='rounds (default 3)')
    parser.add_argument('--payload', type=int, default=0,
                        help='bytes more in each task\'s fact (default 0)')
    parser.add_argument('--strategies', default='host_pinned,linear',
                        help='comma list of strategies (default %(default)s)')
    parser.add_argument('--output', default=os.path.join(REPO, 'benchmarks', 'results',
                                                         'core_growth.json'))
    args = parser.parse_args(argv)
    sizes = sorted(set(int(s) for s in args.hosts.split(',') if s.strip()))
    if len(sizes) < 2 or args.repeat < 1:
        parser.error('two sizes at least, and at least one round')
    data = run(sizes, [s.strip() for s in args.strategies.split(',') if s.strip()], args.repeat,
               payload=args.payload, log=lambda text: print(text, file=sys.stderr))
    print(table(data))
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, 'w') as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
    print('\nwritten: %s' % os.path.relpath(args.output, os.getcwd()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
