"""A phase that works once for its play batch is one ``BatchWork`` given to
the action base's one entry point, ``batch_answer``
(plugin_utils/task/_batch_work.py). Shown the way a newcomer would add one:
an action plugin of a few lines in a playbook's ``action_plugins`` folder,
run by a real ``ansible-playbook`` over three hosts in parallel workers.
The work is one module-level function, ``serve(context, requests, put)``,
named in the ``BatchWork`` and run by the batch's server; with foresight the first host asks for the whole batch, without it
the hosts that ask together share a wave. Every host gets its own answer,
and the work runs once."""

import json
import os
import subprocess
import textwrap

from tests.collection import BIN, ansible_env

HOSTS = ('web1', 'web2', 'web3')

# the whole new phase: what each host asks, the work, what it reads
PROBE = textwrap.dedent('''\
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task import _batch_serve
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._action import (
        NixdeployAction)
    from ansible_collections.nixdeploy.fleet.plugins.plugin_utils.task._batch_work import (
        BatchWork, serves)

    # a phase of the collection needs no trust: this one is a playbook's own
    _batch_serve.trust(__name__)


    @serves
    def probe(context, requests, put):
        with open(context['log'], 'a') as log:
            log.write(' '.join(sorted(requests)) + '\\n')
        for host in requests:
            put(host, {'seen': sorted(requests)})


    class ActionModule(NixdeployAction):
        _requires_connection = False
        ARGUMENT_SPEC = {'log': {'type': 'path', 'required': True},
                         'foresee': {'type': 'bool', 'default': True}}

        def host_result(self, args, result):
            def foresee(hosts):
                return dict((host, 'probe') for host in hosts)
            got = self.batch_answer(BatchWork('probe', [], 'probe', '%s:probe' % __name__,
                                              context={'log': args['log']},
                                              foresee=foresee if args['foresee'] else None))
            return dict(result, seen=got.entry['seen'], here=got.here)
    ''')

PLAYBOOK = textwrap.dedent('''\
    - name: A phase of the newcomer's own
      hosts: all
      gather_facts: false
      tasks:
        - name: Probe the batch once
          batch_probe:
            log: "{{ playbook_dir }}/probe.log"
            foresee: %s
          register: probed
        - name: Keep what each host read
          ansible.builtin.copy:
            content: "{{ probed | to_json }}"
            dest: "{{ playbook_dir }}/{{ inventory_hostname }}.json"
          delegate_to: localhost
    ''')


def run_probe(folder, foresee, plugin=PROBE):
    os.makedirs(os.path.join(folder, 'action_plugins'))
    with open(os.path.join(folder, 'action_plugins', 'batch_probe.py'), 'w') as handle:
        handle.write(plugin)
    with open(os.path.join(folder, 'hosts'), 'w') as handle:
        handle.write(''.join('%s ansible_connection=local\n' % host for host in HOSTS))
    with open(os.path.join(folder, 'play.yml'), 'w') as handle:
        handle.write(PLAYBOOK % foresee)
    proc = subprocess.run([os.path.join(BIN, 'ansible-playbook'), '-i', 'hosts', '-f', '3',
                           'play.yml'], cwd=folder, env=ansible_env({}, cwd=folder),
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


def test_a_new_phase_computes_once_for_the_batch(tmp_path):
    runs, results = run_probe(str(tmp_path), 'true')
    # computed once, for the three hosts
    assert runs == [' '.join(HOSTS)], runs
    for host in HOSTS:
        assert results[host]['seen'] == list(HOSTS), results
    # in the wave of one of them: the first to ask
    assert sorted(r['here'] for r in results.values()) == [False, False, True], results


def test_a_new_phase_in_waves_answers_every_host(tmp_path):
    runs, results = run_probe(str(tmp_path), 'false')
    # the hosts that asked together share a wave (a loaded machine may
    # split them: never more waves than hosts, every host in one of them)
    asked = [name for run in runs for name in run.split()]
    assert sorted(asked) == list(HOSTS) and len(runs) <= len(HOSTS), runs
    for host in HOSTS:
        assert host in results[host]['seen'], results
