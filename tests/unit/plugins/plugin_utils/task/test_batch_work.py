"""A phase that works once for its play batch is one ``BatchWork`` given to
the action base's one entry point, ``batch_answer``
(plugin_utils/task/_batch_work.py). Shown the way a newcomer would add one:
an action plugin of a few lines in a playbook's ``action_plugins`` folder,
run by a real ``ansible-playbook`` over three hosts in parallel workers.
Each of the three ways a work is done (ONCE, STREAM, WAVES) is one word of
that work; every host gets its own answer, and the work runs once."""

import json
import os
import subprocess
import textwrap

import pytest

from tests.collection import BIN, ansible_env

HOSTS = ('web1', 'web2', 'web3')

# the whole new phase: what each host asks, who computes, what it reads
PROBE = textwrap.dedent('''\
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._action import (
        NixdeployAction)
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_work import (
        BatchWork)


    class ActionModule(NixdeployAction):
        _requires_connection = False
        ARGUMENT_SPEC = {'log': {'type': 'path', 'required': True},
                         'how': {'type': 'str', 'default': 'once'}}

        def host_result(self, args, result):
            def probe(hosts, put=None):
                with open(args['log'], 'a') as log:
                    log.write(' '.join(sorted(hosts)) + '\\n')
                entries = dict((h, {'request': 'probe', 'seen': sorted(hosts)}) for h in hosts)
                for host, entry in entries.items() if put else ():
                    put(host, entry)
                return {} if put else {'hosts': entries}
            got = self.batch_answer(BatchWork('probe', [], 'probe', probe, how=args['how']))
            return dict(result, seen=got.entry['seen'], here=got.here)
    ''')

# the same phase done in waves: the work is given the requests that came
WAVES_PROBE = PROBE.replace('''            def probe(hosts, put=None):''', '''            def probe(requests, put):
                hosts = list(requests)''')

PLAYBOOK = textwrap.dedent('''\
    - name: A phase of the newcomer's own
      hosts: all
      gather_facts: false
      tasks:
        - name: Probe the batch once
          batch_probe:
            log: "{{ playbook_dir }}/probe.log"
            how: %s
          register: probed
        - name: Keep what each host read
          ansible.builtin.copy:
            content: "{{ probed | to_json }}"
            dest: "{{ playbook_dir }}/{{ inventory_hostname }}.json"
          delegate_to: localhost
    ''')


def run_probe(folder, how, plugin=PROBE):
    os.makedirs(os.path.join(folder, 'action_plugins'))
    with open(os.path.join(folder, 'action_plugins', 'batch_probe.py'), 'w') as handle:
        handle.write(plugin)
    with open(os.path.join(folder, 'hosts'), 'w') as handle:
        handle.write(''.join('%s ansible_connection=local\n' % host for host in HOSTS))
    with open(os.path.join(folder, 'play.yml'), 'w') as handle:
        handle.write(PLAYBOOK % how)
    proc = subprocess.run([os.path.join(BIN, 'ansible-playbook'), '-i', 'hosts', '-f', '3',
                           'play.yml'], cwd=folder, env=ansible_env({}),
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stdout
    with open(os.path.join(folder, 'probe.log')) as handle:
        runs = handle.read().splitlines()
    results = {}
    for host in HOSTS:
        with open(os.path.join(folder, '%s.json' % host)) as handle:
            results[host] = json.load(handle)
    return runs, results


@pytest.mark.parametrize('how', ['once', 'stream'])
def test_a_new_phase_computes_once_for_the_batch(tmp_path, how):
    runs, results = run_probe(str(tmp_path), how)
    # computed once, for the three hosts
    assert runs == [' '.join(HOSTS)], runs
    for host in HOSTS:
        assert results[host]['seen'] == list(HOSTS), results
    # by one of them: the first to ask
    assert sorted(r['here'] for r in results.values()) == [False, False, True], results


def test_a_new_phase_in_waves_answers_every_host(tmp_path):
    runs, results = run_probe(str(tmp_path), 'waves', WAVES_PROBE)
    # the hosts that asked together share a wave (a loaded machine may
    # split them: never more waves than hosts, every host in one of them)
    asked = [name for run in runs for name in run.split()]
    assert sorted(asked) == list(HOSTS) and len(runs) <= len(HOSTS), runs
    for host in HOSTS:
        assert host in results[host]['seen'], results
